"""The incident API: auth, 422s naming the field, zones downwind, reports, live wind, cache."""

from __future__ import annotations

import io
import json
import math
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient

AT = "2024-06-21T10:00:00+00:00"


@pytest.fixture
def client(settings, helsinki_engine):
    from citytwin.api import create_app

    with TestClient(create_app(settings, engine=helsinki_engine)) as c:
        yield c


@pytest.fixture
def analyst(client, make_token):
    return make_token(client, "incident-analyst", "analyst")


@pytest.fixture(scope="module")
def centre(helsinki_engine) -> tuple[float, float]:
    from citytwin.city.service import resolve_city

    with helsinki_engine.connect() as conn:
        c = resolve_city(conn, "Helsinki")
    return ((c["minx"] + c["maxx"]) / 2, (c["miny"] + c["maxy"]) / 2)


@pytest.fixture(scope="module")
def school(helsinki_engine) -> dict:
    """A vulnerable building of the demo city (the Helsinki centre has a few)."""
    from citytwin.city.service import buildings_frame

    with helsinki_engine.connect() as conn:
        gdf = buildings_frame(conn, city_id=1)
    v = gdf[gdf["safety_class"] == "vulnerable"].iloc[0]
    return {"id": int(v["id"]), "lon": float(v["lon"]), "lat": float(v["lat"])}


def chlorine(lon: float, lat: float, **kw) -> dict:
    body = {
        "lon": lon,
        "lat": lat,
        "substance": "chlorine",
        "rate_g_s": 500.0,
        "duration_min": 20,
        "wind_speed_m_s": 4.0,
        "wind_from_deg": 270.0,
        "at": AT,
    }
    body.update(kw)
    return {k: v for k, v in body.items() if v is not None}


def west_of(p: dict, metres: float) -> tuple[float, float]:
    return p["lon"] - metres / (111_320 * math.cos(math.radians(p["lat"]))), p["lat"]


# --------------------------------------------------------------------------- auth
def test_running_needs_an_analyst_listing_a_viewer(client, make_token, centre):
    body = chlorine(*centre)
    assert client.post("/api/incident/assess", json=body).status_code == 401
    assert client.get("/api/incident/substances").status_code == 401
    viewer = make_token(client, "incident-viewer", "viewer")
    assert client.post("/api/incident/assess", json=body, headers=viewer).status_code == 403
    assert client.post("/api/incident/report.xlsx", json=body, headers=viewer).status_code == 403
    r = client.get("/api/incident/substances", headers=viewer)
    assert r.status_code == 200
    subs = {s["key"]: s for s in r.json()}
    assert "fire" in subs and len(subs) >= 26
    cl = next(s for s in r.json() if s["name"].lower() == "chlorine")
    assert cl["molar_mass_g_mol"] == pytest.approx(70.9, abs=0.1)
    assert cl["levels"] and cl["sources"]


# --------------------------------------------------------------------------- 422s
@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"rate_g_s": -5.0}, "rate_g_s"),
        ({"rate_g_s": None}, "rate_g_s"),
        ({"rate_g_s": "lots"}, "rate_g_s"),
        ({"substance": "chlorin"}, "substance"),
        ({"lon": 26.5}, "lon/lat"),
        ({"wind_speed_m_s": 0.0}, "wind_speed_m_s"),
        ({"wind_speed_m_s": -3.0}, "wind_speed_m_s"),
        ({"wind_speed_m_s": None, "wind_from_deg": None}, "wind_speed_m_s"),
        ({"wind_from_deg": None}, "wind_from_deg"),
        ({"duration_min": 90}, "duration_min"),
        ({"lat": None}, "lat"),
        ({"city": "Atlantis"}, "city"),
        ({"rate": 5}, "rate"),
        ({"substance": "fire", "rate_g_s": None}, "heat_mw"),
    ],
)
def test_bad_input_is_a_422_naming_the_field(client, analyst, centre, change, field):
    body = chlorine(*centre)
    body.update(change)
    body = {k: v for k, v in body.items() if v is not None}
    for path in ("/api/incident/assess", "/api/incident/report.xlsx"):
        r = client.post(path, json=body, headers=analyst)
        assert r.status_code == 422, r.text
        detail = r.json()["detail"]
        assert detail["field"] == field, detail
        assert detail["message"]
        assert "content-disposition" not in r.headers  # no partial report


def test_unknown_substance_suggests_names(client, analyst, centre):
    r = client.post(
        "/api/incident/assess", json=chlorine(*centre, substance="chlorin"), headers=analyst
    )
    assert "chlorine" in r.json()["detail"]["suggestions"]


# --------------------------------------------------------------------------- the plume
def test_westerly_wind_puts_affected_buildings_east_of_the_source(client, analyst, centre):
    lon0, lat0 = centre[0] - 0.004, centre[1]
    r = client.post("/api/incident/assess", json=chlorine(lon0, lat0), headers=analyst)
    assert r.status_code == 200, r.text
    res = r.json()
    assert res["affected_total"] > 0
    for b in res["affected"]:
        assert b["lon"] > lon0
        assert 0 < b["bearing_deg"] < 180
    zone = [f for f in res["zones"]["features"] if f["properties"]["kind"] == "zone"]
    assert {f["properties"]["level"] for f in zone} <= {1, 2, 3} and zone
    assert res["wind"]["source"] == "manual" and res["wind"]["stale"] is False
    assert res["weather"]["wind_from_deg"] == 270
    assert res["model"]["name"] and res["limitations"]
    assert res["counts"]["total"]["total"]["buildings"] == res["affected_total"]


def test_vulnerable_buildings_come_first(client, analyst, school):
    lon0, lat0 = west_of(school, 150)
    r = client.post("/api/incident/assess", json=chlorine(lon0, lat0), headers=analyst)
    aff = r.json()["affected"]
    assert school["id"] in [b["id"] for b in aff]
    ranks = [{"vulnerable": 0, "hazardous": 1}.get(b["safety_class"], 2) for b in aff]
    assert ranks == sorted(ranks)
    assert aff[0]["safety_class"] == "vulnerable"
    assert {
        "name",
        "address",
        "occupants",
        "peak_outdoor_mg_m3",
        "peak_indoor_mg_m3",
        "arrival_min",
        "distance_m",
        "direction",
        "advice",
    } <= set(aff[0])


def test_warehouse_fire(client, analyst, centre):
    body = {
        "lon": centre[0] - 0.004,
        "lat": centre[1],
        "substance": "fire",
        "heat_mw": 20,
        "wind_speed_m_s": 3,
        "wind_from_deg": 250,
        "at": AT,
    }
    r = client.post("/api/incident/assess", json=body, headers=analyst)
    assert r.status_code == 200, r.text
    assert r.json()["incident"]["substance"] == "fire"
    assert r.json()["model"]["parameters"]["buoyancy_flux_m4_s3"] > 0


# --------------------------------------------------------------------------- reports
def test_excel_report_has_three_sheets_vulnerable_first(client, analyst, school):
    from openpyxl import load_workbook

    lon0, lat0 = west_of(school, 150)
    r = client.post("/api/incident/report.xlsx", json=chlorine(lon0, lat0), headers=analyst)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/vnd.openxmlformats")
    cd = r.headers["content-disposition"]
    assert cd.startswith("attachment;") and ".xlsx" in cd
    wb = load_workbook(io.BytesIO(r.content), read_only=True)
    assert wb.sheetnames == ["Summary", "Affected buildings", "Zones"]
    rows = list(wb["Affected buildings"].iter_rows(values_only=True))
    head = list(rows[0])
    ids = [row[head.index("id")] for row in rows[1:]]
    assert school["id"] in ids
    # by advice, then vulnerable before others within the same advice
    adv = {"consider_evacuation": 0, "shelter": 1, "inform": 2}
    keys = [
        (adv[row[head.index("advice")]], row[head.index("safety_class")] != "vulnerable")
        for row in rows[1:]
    ]
    assert keys == sorted(keys)
    summary = " ".join(
        str(c) for row in wb["Summary"].iter_rows(values_only=True) for c in row if c
    )
    assert "Chlorine" in summary and "manual" in summary
    assert len(list(wb["Zones"].iter_rows())) > 1


def test_geojson_and_kml_downloads(client, analyst, centre):
    body = chlorine(centre[0] - 0.004, centre[1])
    r = client.post("/api/incident/zones.geojson", json=body, headers=analyst)
    assert r.status_code == 200 and "attachment" in r.headers["content-disposition"]
    fc = json.loads(r.content)
    kinds = {f["properties"]["kind"] for f in fc["features"]}
    assert {"source", "zone", "possibly_affected"} <= kinds
    r = client.post("/api/incident/zones.geojson?buildings=true", json=body, headers=analyst)
    assert any(f["properties"]["kind"] == "building" for f in json.loads(r.content)["features"])
    r = client.post("/api/incident/zones.kml", json=body, headers=analyst)
    assert r.status_code == 200 and r.text.startswith("<?xml") and "<Polygon" in r.text
    assert ".kml" in r.headers["content-disposition"]


def test_threat_at_a_building_and_a_point(client, analyst, school):
    lon0, lat0 = west_of(school, 150)
    body = {"incident": chlorine(lon0, lat0), "building_id": school["id"]}
    r = client.post("/api/incident/threat", json=body, headers=analyst)
    assert r.status_code == 200, r.text
    t = r.json()
    assert len(t["t_min"]) == len(t["outdoor_mg_m3"]) == len(t["indoor_mg_m3"])
    assert t["peak_outdoor_mg_m3"] > t["peak_indoor_sheltered_mg_m3"] > 0
    assert t["building"]["safety_class"] == "vulnerable"
    r = client.post(
        "/api/incident/threat",
        json={"incident": chlorine(lon0, lat0), "lon": school["lon"], "lat": school["lat"]},
        headers=analyst,
    )
    assert r.status_code == 200 and r.json()["peak_outdoor_mg_m3"] > 0
    r = client.post(
        "/api/incident/threat", json={"incident": chlorine(lon0, lat0)}, headers=analyst
    )
    assert r.status_code == 422 and r.json()["detail"]["field"] == "building_id"
    r = client.post(
        "/api/incident/threat",
        json={"incident": chlorine(lon0, lat0), "building_id": -1},
        headers=analyst,
    )
    assert r.status_code == 422 and r.json()["detail"]["field"] == "building_id"


def test_request_is_fast_with_the_cached_buildings(client, analyst, centre):
    import time

    body = chlorine(*centre)
    client.post("/api/incident/assess", json=body, headers=analyst)  # fills the cache
    t0 = time.perf_counter()
    r = client.post("/api/incident/assess", json=body, headers=analyst)
    assert r.status_code == 200
    assert time.perf_counter() - t0 < 1.0


def test_building_cache_follows_imported_at(helsinki_engine):
    from citytwin.api.routers.hazard import BuildingCache
    from citytwin.city.service import resolve_city

    cache = BuildingCache()
    with helsinki_engine.connect() as conn:
        city = resolve_city(conn, None)
        a = cache.get(conn, city)
        assert cache.get(conn, city) is a
        b = cache.get(conn, city | {"imported_at": city["imported_at"] + timedelta(seconds=1)})
        assert b is not a and b.arrays.n == a.arrays.n > 0


def test_no_weather_stream(client, analyst):
    r = client.get("/api/incident/wind", headers=analyst)
    assert r.status_code == 200
    assert r.json()["available"] is False


# --------------------------------------------------------------------------- live wind
@pytest.fixture
def weather_twin(tmp_path):
    """A two-building city and a (simulated) weather station, in a fresh SQLite database."""
    sensors = pytest.importorskip("citytwin.sensors.schema")
    from citytwin.city import service
    from citytwin.store import make_engine, migrate

    engine = make_engine(f"sqlite:///{tmp_path / 'w.sqlite'}")
    migrate(engine)
    sq = [[[4.30, 52.08], [4.3005, 52.08], [4.3005, 52.0803], [4.30, 52.0803], [4.30, 52.08]]]
    fc = {
        "type": "FeatureCollection",
        "features": [
            {
                "type": "Feature",
                "properties": {"building": "school", "name": "De Klimop"},
                "geometry": {"type": "Polygon", "coordinates": sq},
            },
            {
                "type": "Feature",
                "properties": {"building": "house"},
                "geometry": {"type": "Polygon", "coordinates": [[[x + 0.01, y] for x, y in sq[0]]]},
            },
        ],
    }
    path = tmp_path / "b.geojson"
    path.write_text(json.dumps(fc))
    service.import_buildings_geojson(engine, path=path, name="Weather town")

    def add_station(*, observed_at: datetime, simulated: bool = True):
        s = sensors
        with engine.begin() as conn:
            thing = conn.execute(
                s.sta_things.insert().values(name="KNMI-like station", description="weather")
            ).inserted_primary_key[0]
            sensor = conn.execute(
                s.sta_sensors.insert().values(
                    name="weather generator (simulated)" if simulated else "anemometer",
                    description="d",
                    encoding_type="text/plain",
                    metadata="-",
                    properties={"simulated": simulated},
                )
            ).inserted_primary_key[0]
            for prop, unit, value in (
                ("Wind speed", "m/s", 6.0),
                ("Wind direction", "°", 270.0),
                ("Wind direction standard deviation", "°", 8.0),
                ("Cloud cover", "%", 50.0),
            ):
                op = conn.execute(
                    s.sta_observed_properties.insert().values(
                        name=prop,
                        definition=f"https://example.org/{prop.replace(' ', '')}",
                        description=prop,
                    )
                ).inserted_primary_key[0]
                ds = conn.execute(
                    s.sta_datastreams.insert().values(
                        name=f"station {prop}",
                        description=prop,
                        observation_type="OM_Measurement",
                        unit_of_measurement={"name": unit, "symbol": unit, "definition": ""},
                        thing_id=thing,
                        sensor_id=sensor,
                        observed_property_id=op,
                    )
                ).inserted_primary_key[0]
                for dt in (timedelta(minutes=30), timedelta(0)):
                    conn.execute(
                        s.sta_observations.insert().values(
                            datastream_id=ds,
                            phenomenon_time=observed_at - dt,
                            result_kind=0,
                            result_number=value + (0.0 if dt else 0.5 * (prop == "Wind speed")),
                        )
                    )

    yield engine, add_station
    engine.dispose()


def test_latest_wind_reads_the_newest_observations(weather_twin):
    from citytwin.hazard.weather import latest_wind, wind_inputs

    engine, add_station = weather_twin
    with engine.connect() as conn:
        assert latest_wind(conn) is None
    now = datetime.now(UTC)
    add_station(observed_at=now - timedelta(minutes=5))
    with engine.connect() as conn:
        w = latest_wind(conn, city_id=1, now=now)
        assert w["wind_speed_m_s"] == pytest.approx(6.5)
        assert w["wind_from_deg"] == 270.0
        assert w["sigma_theta_deg"] == 8.0
        assert w["cloud_cover_octas"] == pytest.approx(4.0)
        assert w["age_s"] == pytest.approx(300, abs=1) and w["stale"] is False
        assert w["simulated"] is True and "simulated" in w["source"]
        assert w["values"]["wind_speed"]["unit"] == "m/s"
        stale = latest_wind(conn, now=now + timedelta(hours=1))
        assert stale["stale"] is True
        kw, wind = wind_inputs(conn, city_id=1, wind_speed_m_s=3, wind_from_deg=90)
        assert wind["source"] == "manual" and kw["wind_speed_m_s"] == 3


def test_assess_uses_the_live_wind_and_flags_it_stale(weather_twin, settings):
    from citytwin import security
    from citytwin.api import create_app

    engine, add_station = weather_twin
    with engine.begin() as conn:
        security.create_user(
            conn, name="wx-analyst", password="wx-analyst-password", role="analyst"
        )
    body = {
        "lon": 4.298,
        "lat": 52.0801,
        "substance": "ammonia",
        "rate_g_s": 2000,
        "duration_min": 10,
    }
    with TestClient(create_app(settings, engine=engine)) as client:
        tok = client.post(
            "/api/auth/token", data={"username": "wx-analyst", "password": "wx-analyst-password"}
        )
        h = {"Authorization": f"Bearer {tok.json()['access_token']}"}
        r = client.post("/api/incident/assess", json=body, headers=h)
        assert r.status_code == 422 and r.json()["detail"]["field"] == "wind_speed_m_s"
        add_station(observed_at=datetime.now(UTC) - timedelta(hours=2))
        w = client.get("/api/incident/wind", headers=h).json()
        assert w["available"] is True and w["stale"] is True and w["age_s"] > 7000
        r = client.post("/api/incident/assess", json=body, headers=h)
        assert r.status_code == 200, r.text
        res = r.json()
        assert res["wind"]["source"] == "live" and res["wind"]["stale"] is True
        assert res["weather"]["stale"] is True
        assert res["weather"]["wind_from_deg"] == 270.0
        assert res["warnings"][0].startswith("Live wind is stale")
        assert any("SIMULATED" in w for w in res["warnings"])
        # the override wins over the live stream
        r = client.post(
            "/api/incident/assess",
            json=body | {"wind_speed_m_s": 2, "wind_from_deg": 90},
            headers=h,
        )
        assert r.json()["wind"]["source"] == "manual" and r.json()["weather"]["stale"] is False
