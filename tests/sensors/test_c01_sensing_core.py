"""Conformance class 1: sensing core — entities, relations, navigation links, reading."""

from __future__ import annotations

from tests.sensors.conftest import STA, create, thing_body

ENTITY_SETS = ["Things", "Locations", "HistoricalLocations", "Datastreams", "Sensors",
               "ObservedProperties", "Observations", "FeaturesOfInterest"]


def test_service_root_lists_entity_sets_and_conformance(client, viewer):
    r = client.get(STA, headers=viewer)
    assert r.status_code == 200
    names = [v["name"] for v in r.json()["value"]]
    assert names == ENTITY_SETS
    assert all(v["url"].endswith(v["name"]) for v in r.json()["value"])
    assert any("datamodel" in c for c in r.json()["serverSettings"]["conformance"])


def test_every_route_needs_credentials(client):
    for path in ["", "/", "/Things", "/Things(1)", "/Observations", "/CreateObservations", "/$batch"]:
        assert client.get(STA + path).status_code == 401, path
    assert client.post(f"{STA}/Things", json={}).status_code == 401


def test_entities_have_ids_self_and_navigation_links(client, op, viewer):
    tid = create(client, op, "Things", thing_body())
    t = client.get(f"{STA}/Things({tid})", headers=viewer).json()
    assert t["@iot.id"] == tid
    assert t["@iot.selfLink"].endswith(f"/sta/v1.1/Things({tid})")
    for nav in ("Locations", "HistoricalLocations", "Datastreams"):
        assert t[f"{nav}@iot.navigationLink"] == t["@iot.selfLink"] + f"/{nav}"
    ds = client.get(f"{STA}/Things({tid})/Datastreams", headers=viewer).json()["value"]
    assert len(ds) == 1
    d = ds[0]
    for nav in ("Thing", "Sensor", "ObservedProperty", "Observations"):
        assert f"{nav}@iot.navigationLink" in d
    # every entity set is readable and each entity's links resolve
    for es in ENTITY_SETS:
        page = client.get(f"{STA}/{es}", headers=viewer).json()
        for e in page["value"]:
            for k, v in e.items():
                if k.endswith("@iot.navigationLink"):
                    path = v.split("/sta/v1.1", 1)[1]
                    assert client.get(STA + path, headers=viewer).status_code == 200, v


def test_deep_insert_creates_historical_location_and_links(client, op, viewer):
    tid = create(client, op, "Things", thing_body())
    hls = client.get(f"{STA}/Things({tid})/HistoricalLocations?$expand=Locations", headers=viewer).json()["value"]
    assert len(hls) == 1 and hls[0]["Locations"][0]["name"] == "Dam"
    locs = client.get(f"{STA}/Things({tid})/Locations", headers=viewer).json()["value"]
    assert locs[0]["location"]["type"] == "Point"
    thing = client.get(f"{STA}/Locations({locs[0]['@iot.id']})/Things", headers=viewer).json()["value"]
    assert [t["@iot.id"] for t in thing] == [tid]


def test_navigation_to_one_property_value_and_ref(client, op, viewer):
    tid = create(client, op, "Things", thing_body())
    did = client.get(f"{STA}/Things({tid})/Datastreams", headers=viewer).json()["value"][0]["@iot.id"]
    assert client.get(f"{STA}/Datastreams({did})/Thing", headers=viewer).json()["@iot.id"] == tid
    assert client.get(f"{STA}/Datastreams({did})/Sensor/name", headers=viewer).json() == {"name": "cam"}
    r = client.get(f"{STA}/Datastreams({did})/Sensor/name/$value", headers=viewer)
    assert r.text == "cam" and r.headers["content-type"].startswith("text/plain")
    refs = client.get(f"{STA}/Things({tid})/Datastreams/$ref", headers=viewer).json()["value"]
    assert refs == [{"@iot.selfLink": f"http://testserver/sta/v1.1/Datastreams({did})"}]


def test_observation_without_feature_gets_one_from_the_location(client, op, viewer):
    tid = create(client, op, "Things", thing_body())
    did = client.get(f"{STA}/Things({tid})/Datastreams", headers=viewer).json()["value"][0]["@iot.id"]
    o1 = create(client, op, "Observations", {"result": 3, "phenomenonTime": "2024-05-01T10:00:00Z", "Datastream": {"@iot.id": did}})
    o2 = create(client, op, f"Datastreams({did})/Observations", {"result": 4.5})
    f1 = client.get(f"{STA}/Observations({o1})/FeatureOfInterest", headers=viewer).json()
    f2 = client.get(f"{STA}/Observations({o2})/FeatureOfInterest", headers=viewer).json()
    assert f1["@iot.id"] == f2["@iot.id"] and f1["feature"]["type"] == "Point"
    obs = client.get(f"{STA}/Observations({o1})", headers=viewer).json()
    assert obs["result"] == 3 and obs["phenomenonTime"] == "2024-05-01T10:00:00Z"
    ds = client.get(f"{STA}/Datastreams({did})", headers=viewer).json()
    assert ds["phenomenonTime"].startswith("2024-05-01T10:00:00Z/")


def test_missing_entity_is_404(client, viewer):
    r = client.get(f"{STA}/Things(999)", headers=viewer)
    assert r.status_code == 404 and "999" in r.json()["message"]
    assert client.get(f"{STA}/Nothings", headers=viewer).status_code == 404
    assert client.get(f"{STA}/Things(999)/Datastreams", headers=viewer).status_code == 404


def test_expand_select_nested(client, op, viewer):
    tid = create(client, op, "Things", thing_body(n_streams=3))
    r = client.get(f"{STA}/Things({tid})?$select=id,name&$expand=Datastreams($select=id,name;$top=2;$orderby=id desc;$expand=Sensor($select=name))",
                   headers=viewer).json()
    assert set(r) == {"@iot.id", "name", "Datastreams", "Datastreams@iot.nextLink"}
    assert len(r["Datastreams"]) == 2
    assert r["Datastreams"][0]["@iot.id"] > r["Datastreams"][1]["@iot.id"]
    assert r["Datastreams"][0]["Sensor"] == {"name": "cam"}
    r = client.get(f"{STA}/Datastreams?$expand=Thing/Locations,ObservedProperty", headers=viewer).json()
    assert r["value"][0]["Thing"]["Locations"][0]["name"] == "Dam"
    assert "ObservedProperty" in r["value"][0]


def test_paging_with_next_link_and_count(client, op, viewer):
    tid = create(client, op, "Things", thing_body())
    did = client.get(f"{STA}/Things({tid})/Datastreams", headers=viewer).json()["value"][0]["@iot.id"]
    for i in range(7):
        create(client, op, "Observations", {"result": i, "phenomenonTime": f"2024-05-01T10:0{i}:00Z", "Datastream": {"@iot.id": did}})
    url = f"{STA}/Observations?$top=3&$count=true"
    seen = []
    while url:
        page = client.get(url, headers=viewer).json()
        assert page["@iot.count"] == 7
        seen += [o["result"] for o in page["value"]]
        nxt = page.get("@iot.nextLink")
        url = nxt.split("testserver", 1)[1] if nxt else None
    assert seen == list(range(7))
    assert client.get(f"{STA}/Observations?$top=x", headers=viewer).status_code == 400
