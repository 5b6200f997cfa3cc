"""Conformance class 3: $filter (comparison, logical, arithmetic, string, date, geospatial), $orderby, $top, $skip, $count."""

from __future__ import annotations

import pytest

from citytwin.sensors.odata import QueryError, parse_filter
from tests.sensors.conftest import STA, create, thing_body, token


@pytest.fixture(scope="module")
def client(mclient):
    return mclient


@pytest.fixture(scope="module")
def op(client):
    return {"Authorization": f"Bearer {token(client, 'operator')}"}


@pytest.fixture(scope="module")
def viewer(client):
    return {"Authorization": f"Bearer {token(client, 'viewer')}"}


@pytest.fixture(scope="module")
def data(client, op, viewer):
    places = {"Dam": [4.8930, 52.3731], "Museumplein": [4.8800, 52.3570], "Rotterdam": [4.4777, 51.9244]}
    tids = {}
    for name, xy in places.items():
        body = thing_body(f"cam {name}")
        body["Locations"][0].update(name=name, location={"type": "Point", "coordinates": xy})
        body["properties"] = {"city": "Rotterdam" if name == "Rotterdam" else "Amsterdam", "lanes": len(name)}
        tids[name] = create(client, op, "Things", body)
    did = client.get(f"{STA}/Things({tids['Dam']})/Datastreams", headers=viewer).json()["value"][0]["@iot.id"]
    for i, v in enumerate([1, 5, 10, 20, 40]):
        create(client, op, "Observations", {"result": v, "phenomenonTime": f"202{i}-0{i + 1}-0{i + 1}T0{i}:30:00Z",
                                            "Datastream": {"@iot.id": did}, "parameters": {"marker": f"m{i}"}})
    return tids, did


def ids(client, viewer, query, es="Observations", key="result"):
    r = client.get(f"{STA}/{es}", params={"$filter": query} if query else {}, headers=viewer)
    assert r.status_code == 200, (query, r.text)
    return [e[key] for e in r.json()["value"]]


CASES = [
    ("result gt 5", [10, 20, 40]),
    ("result ge 5 and result le 10", [5, 10]),
    ("result eq 1 or result eq 40", [1, 40]),
    ("not (result lt 20)", [20, 40]),
    ("result ne 5", [1, 10, 20, 40]),
    ("result add 5 eq 15", [10]),
    ("result sub 1 eq 0", [1]),
    ("result mul 2 eq 40", [20]),
    ("result div 2 eq 10", [20]),
    ("result mod 3 eq 1", [1, 10, 40]),
    ("(result add 1) mul 2 gt 42", [40]),
    ("phenomenonTime lt 2021-06-01T00:00:00Z", [1, 5]),
    ("phenomenonTime ge 2022-03-03T02:30:00+00:00", [10, 20, 40]),
    ("year(phenomenonTime) eq 2022", [10]),
    ("month(phenomenonTime) eq 4", [20]),
    ("day(phenomenonTime) eq 5", [40]),
    ("hour(phenomenonTime) eq 3", [20]),
    ("minute(phenomenonTime) eq 30", [1, 5, 10, 20, 40]),
    ("second(phenomenonTime) eq 0", [1, 5, 10, 20, 40]),
    ("phenomenonTime lt now()", [1, 5, 10, 20, 40]),
    ("parameters/marker eq 'm2'", [10]),
    ("Datastream/Thing/name eq 'cam Dam'", [1, 5, 10, 20, 40]),
    ("Datastream/Thing/name eq 'cam Rotterdam'", []),
    ("FeatureOfInterest/name eq 'Dam'", [1, 5, 10, 20, 40]),
]


@pytest.mark.parametrize(("query", "expected"), CASES)
def test_filter_observations(client, viewer, data, query, expected):
    assert ids(client, viewer, query) == expected


STRING_CASES = [
    ("substringof('Rotter', name)", ["cam Rotterdam"]),
    ("startswith(name, 'cam M')", ["cam Museumplein"]),
    ("endswith(name, 'Dam')", ["cam Dam"]),
    ("contains(name, 'seum')", ["cam Museumplein"]),
    ("length(name) eq 7", ["cam Dam"]),
    ("tolower(name) eq 'cam dam'", ["cam Dam"]),
    ("toupper(name) eq 'CAM DAM'", ["cam Dam"]),
    ("trim(concat(' ', name)) eq 'cam Dam'", ["cam Dam"]),
    ("concat(name, '!') eq 'cam Dam!'", ["cam Dam"]),
    ("indexof(name, 'Dam') eq 4", ["cam Dam"]),
    ("substring(name, 4) eq 'Dam'", ["cam Dam"]),
    ("substring(name, 4, 2) eq 'Mu'", ["cam Museumplein"]),
    ("properties/city eq 'Amsterdam'", ["cam Dam", "cam Museumplein"]),
    ("properties/lanes gt 5", ["cam Museumplein", "cam Rotterdam"]),
    ("Datastreams/name eq 'cam Dam stream 0'", ["cam Dam"]),
    ("Locations/name eq 'Rotterdam'", ["cam Rotterdam"]),
    ("name eq 'it''s'", []),
    ("name eq null", []),
    ("properties/missing eq null", ["cam Dam", "cam Museumplein", "cam Rotterdam"]),
]


@pytest.mark.parametrize(("query", "expected"), STRING_CASES)
def test_filter_things_strings_json_navigation(client, viewer, data, query, expected):
    assert ids(client, viewer, query, "Things", "name") == expected


AMSTERDAM = "POLYGON((4.7 52.2, 5.1 52.2, 5.1 52.5, 4.7 52.5, 4.7 52.2))"
GEO_CASES = [
    (f"st_within(location, geography'{AMSTERDAM}')", ["Dam", "Museumplein"]),
    (f"st_intersects(location, geography'{AMSTERDAM}')", ["Dam", "Museumplein"]),
    (f"geo.intersects(location, geography'{AMSTERDAM}')", ["Dam", "Museumplein"]),
    (f"st_disjoint(location, geography'{AMSTERDAM}')", ["Rotterdam"]),
    (f"st_contains(geography'{AMSTERDAM}', location)", ["Dam", "Museumplein"]),
    ("st_equals(location, geography'POINT(4.893 52.3731)')", ["Dam"]),
    ("st_distance(location, geography'POINT(4.893 52.3731)') lt 0.1", ["Dam", "Museumplein"]),
    ("geo.distance(location, geography'POINT(4.4777 51.9244)') lt 0.01", ["Rotterdam"]),
    ("st_touches(location, geography'LINESTRING(4.893 52.3731, 5 53)')", ["Dam"]),
    ("st_crosses(geography'LINESTRING(4 52, 5 52)', geography'LINESTRING(4.5 51, 4.5 53)') and name eq 'Dam'", ["Dam"]),
    ("st_overlaps(location, geography'POINT(0 0)')", []),
    ("geo.length(geography'LINESTRING(0 0, 3 4)') eq 5 and startswith(name, 'Rot')", ["Rotterdam"]),
    (f"st_within(location, geography'{AMSTERDAM}') and name ne 'Dam'", ["Museumplein"]),
]


@pytest.mark.parametrize(("query", "expected"), GEO_CASES)
def test_filter_geospatial(client, viewer, data, query, expected):
    assert ids(client, viewer, query, "Locations", "name") == expected


def test_geospatial_with_paging_and_count(client, viewer, data):
    r = client.get(f"{STA}/Locations", params={"$filter": f"st_within(location, geography'{AMSTERDAM}')", "$top": "1", "$count": "true"},
                   headers=viewer).json()
    assert r["@iot.count"] == 2 and len(r["value"]) == 1 and "@iot.nextLink" in r


def test_orderby_top_skip_count_select(client, viewer, data):
    r = client.get(f"{STA}/Observations?$orderby=result desc&$top=2&$skip=1&$count=true&$select=result", headers=viewer).json()
    assert r["@iot.count"] == 5
    assert r["value"] == [{"result": 20}, {"result": 10}]
    r = client.get(f"{STA}/Observations?$orderby=phenomenonTime%20desc&$top=1", headers=viewer).json()
    assert r["value"][0]["result"] == 40
    # '+' in query strings is a space
    r = client.get(f"{STA}/Observations?$filter=result+gt+10&$orderby=result+asc", headers=viewer).json()
    assert [o["result"] for o in r["value"]] == [20, 40]
    r = client.get(f"{STA}/Things?$orderby=properties/city desc,name", headers=viewer).json()
    assert [t["name"] for t in r["value"]] == ["cam Rotterdam", "cam Dam", "cam Museumplein"]


@pytest.mark.parametrize("bad", ["result gt", "result eq 'x", "foo(1)", "nosuch eq 1", "result gt 1 1", "((result)", "",
                                 "st_within(location)", "geography'POINT(1)'"])
def test_bad_filter_is_400_with_message(client, viewer, data, bad):
    r = client.get(f"{STA}/Observations", params={"$filter": bad}, headers=viewer)
    assert r.status_code == 400, bad
    assert r.json()["message"]


def test_parser_rejects_unknown_functions():
    with pytest.raises(QueryError, match="unknown function"):
        parse_filter("frobnicate(name)")
