"""The feeds API: registering sources, posting payloads (all or nothing), read views, access."""

from __future__ import annotations

import time

import sqlalchemy as sa

from citytwin.sensors import keys
from tests.sensors import _feeds
from tests.sensors._feeds import auth

feeds_template = _feeds.feeds_template  # fixture
city_engine = _feeds.city_engine  # fixture
city_client = _feeds.city_client  # fixture


NOW = int(time.time())


def n_obs(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.text("SELECT count(*) FROM sta_observations")).scalar_one()


def register(client, headers, **spec) -> dict:
    r = client.post("/api/feeds/sources", json=spec, headers=headers)
    assert r.status_code == 201, r.text
    return r.json()


def test_register_needs_operator_and_is_idempotent(city_client):
    op, viewer = auth(city_client, "operator"), auth(city_client, "viewer")
    spec = {"kind": "parking", "name": "Garage A", "lon": 24.9432, "lat": 60.1650, "capacity": 400, "retention_days": 7}
    assert city_client.post("/api/feeds/sources", json=spec, headers=viewer).status_code == 403
    a = register(city_client, op, **spec)
    b = register(city_client, op, **spec)
    assert a["thing_id"] == b["thing_id"] and a["datastreams"] == b["datastreams"]
    assert a["properties"]["capacity"] == 400 and a["properties"]["retention_days"] == 7
    ds = city_client.get(f"/sta/v1.1/Datastreams({a['datastreams']['occupancy']})?$expand=Sensor,ObservedProperty,Thing/Locations",
                         headers=viewer).json()
    assert ds["unitOfMeasurement"]["symbol"] == "{count}" and ds["properties"]["expectedInterval_s"] == 300
    assert ds["ObservedProperty"]["name"] == "parking occupancy" and ds["Sensor"]["metadata"]
    assert ds["Thing"]["Locations"][0]["location"]["coordinates"] == [24.9432, 60.165]
    r = city_client.post("/api/feeds/sources", json={**spec, "name": "Garage B2", "capacity": -3}, headers=op)
    assert r.status_code == 422 and r.json()["fields"] == ["capacity"]
    r = city_client.post("/api/feeds/sources", json={"kind": "teleporter", "name": "x"}, headers=op)
    assert r.status_code == 422 and "kind" in r.json()["detail"]


def test_parking_history_and_over_capacity(city_client, city_engine):
    op = auth(city_client, "operator")
    g = register(city_client, op, kind="parking", name="Garage B", lon=24.94, lat=60.17, capacity=100)
    hour_ago = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(NOW - 3600))
    for body in ({"occupied": 40, "time": hour_ago}, {"free": 10}, {"occupied": 120}):
        r = city_client.post(f"/api/feeds/parking/{g['thing_id']}", json=body, headers=op)
        assert r.status_code == 201, r.text
    view = city_client.get("/api/feeds/parking", params={"hours": 2}, headers=op).json()["garages"]
    [garage] = [x for x in view if x["thing_id"] == g["thing_id"]]
    assert garage["occupied"] == 120 and garage["free"] == -20 and garage["over_capacity"]
    assert [h[1] for h in garage["history"]] == [40, 90, 120] and garage["age_s"] < 60
    sensors = city_client.get("/api/feeds/sensors", headers=op).json()["things"]
    [thing] = [t for t in sensors if t["thing_id"] == g["thing_id"]]
    assert "impossible" in thing["flags"] and thing["origin"] == "real"
    assert thing["datastreams"][0]["quality"]["impossible"] == 1  # flagged, not dropped: 3 stored
    assert thing["datastreams"][0]["quality"]["n"] == 3


def test_traffic_segments_as_geojson(city_client):
    op = auth(city_client, "operator")
    with city_client.app.state.engine.connect() as conn:
        edge = conn.execute(sa.text("SELECT id, maxspeed_kmh FROM network_edges WHERE network='drive' AND highway='primary' "
                                    "AND maxspeed_kmh IS NOT NULL ORDER BY id LIMIT 1")).first()
    s = register(city_client, op, kind="traffic", name="detector 1", segment_id=edge.id)
    assert s["properties"]["free_flow_kmh"] == edge.maxspeed_kmh
    r = city_client.post(f"/api/feeds/traffic/{s['thing_id']}", json={"speed_kmh": 0.3 * edge.maxspeed_kmh, "flow_veh_h": 1500},
                         headers=op)
    assert r.status_code == 201
    fc = city_client.get("/api/feeds/traffic", headers=op).json()
    [f] = fc["features"]
    assert f["id"] == edge.id and f["geometry"]["type"] == "LineString"
    assert f["properties"]["level"] == "jammed" and f["properties"]["age_s"] < 60 and f["properties"]["stale"] is False
    r = city_client.post("/api/feeds/sources", json={"kind": "traffic", "name": "nowhere", "segment_id": 10**9}, headers=op)
    assert r.status_code == 404


def test_gbfs_counts_per_zone_and_positions_without_ids(city_client, city_engine):
    op = auth(city_client, "operator")
    s = register(city_client, op, kind="gbfs", name="bikes", lon=24.94, lat=60.17)
    with city_engine.connect() as conn:  # a point inside zone 34 (Rautatientori)
        z = conn.execute(sa.text("SELECT id, minx, miny, maxx, maxy FROM zones WHERE name='Rautatientori'")).first()
    from citytwin.sensors.feeds._city import ZoneIndex

    with city_engine.connect() as conn:
        lon, lat = ZoneIndex.load(conn, 1).centroid(z.id)
    bikes = [{"bike_id": f"secret-{i}", "lat": lat, "lon": lon, "is_reserved": i == 2, "is_disabled": False,
              "last_reported": NOW} for i in range(3)]
    doc = {"last_updated": NOW, "ttl": 60, "version": "2.3", "data": {"bikes": bikes}}
    r = city_client.post(f"/api/feeds/gbfs?source={s['thing_id']}", json=doc, headers=op)
    assert r.status_code == 201, r.text
    assert r.json()["available"] == 2 and r.json()["zones"] == {str(z.id): 2}
    fc = city_client.get("/api/feeds/vehicles", headers=op).json()
    assert len(fc["features"]) == 2 and "secret" not in str(fc)
    with city_engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM sta_observations WHERE result_json LIKE '%secret%'")).scalar() == 0
    # v3.0 with a missing field: 422 listing it, nothing stored
    before = n_obs(city_engine)
    bad = {"last_updated": "2025-06-01T10:00:00Z", "ttl": 0, "version": "3.0",
           "data": {"vehicles": [{"vehicle_id": "a", "lat": lat, "lon": lon, "is_reserved": False, "last_reported": "2025-06-01T10:00:00Z"}]}}
    r = city_client.post(f"/api/feeds/gbfs?source={s['thing_id']}", json=bad, headers=op)
    assert r.status_code == 422 and r.json()["fields"] == ["data.vehicles[0].is_disabled"]
    assert n_obs(city_engine) == before
    r = city_client.post(f"/api/feeds/gbfs?source={s['thing_id']}", content=b"{not json", headers=op)
    assert r.status_code == 400 and n_obs(city_engine) == before


def test_appgps_suppression_and_raw_positions_refused(city_client, city_engine):
    op = auth(city_client, "operator")
    s = register(city_client, op, kind="appgps", name="panel", lon=24.94, lat=60.17)
    assert s["properties"]["k"] == 15
    body = {"aggregates": [{"zone_id": 34, "hour": "2025-06-01T14:00:00Z", "count": 14},
                           {"zone_id": 35, "hour": "2025-06-01T14:00:00Z", "count": 15}]}
    r = city_client.post(f"/api/feeds/appgps?source={s['thing_id']}", json=body, headers=op)
    assert r.status_code == 201 and r.json() == {"source": s["thing_id"], "stored": 2, "suppressed": 1, "k": 15}
    with city_engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT result_kind, result_number, result_quality, parameters FROM sta_observations "
                                    "ORDER BY id")).all()
    assert rows[0].result_number is None and '"suppressed": true' in rows[0].result_quality
    assert '"suppressed": true' in rows[0].parameters and "14" not in rows[0].parameters.replace('"k": 15', "")
    assert rows[1].result_number == 15 and rows[1].result_quality in (None, "null")
    before = n_obs(city_engine)
    raw = {"aggregates": [{"zone_id": 34, "hour": "2025-06-01T15:00:00Z", "count": 40}],
           "pings": [{"device_id": "d1", "lat": 60.17, "lon": 24.94}]}
    r = city_client.post(f"/api/feeds/appgps?source={s['thing_id']}", json=raw, headers=op)
    assert r.status_code == 422 and "raw positions are refused" in r.json()["detail"]
    assert "pings[0].device_id" in r.json()["fields"] and n_obs(city_engine) == before
    r = city_client.post(f"/api/feeds/appgps?source={s['thing_id']}",
                         json={"aggregates": [{"zone_id": 999999, "hour": "2025-06-01T15:00:00Z", "count": 40}]}, headers=op)
    assert r.status_code == 422 and n_obs(city_engine) == before
    k = register(city_client, op, kind="appgps", name="panel k5", lon=24.94, lat=60.17, k=5)
    r = city_client.post(f"/api/feeds/appgps?source={k['thing_id']}", json=body, headers=op)
    assert r.json()["suppressed"] == 0


def test_api_key_scope_per_source(city_client, city_engine):
    op = auth(city_client, "operator")
    cam = register(city_client, op, kind="camera", name="cam 1", lon=24.94, lat=60.17, zone_id=34, counting="line",
                   effective_width_m=6.5)
    assert cam["properties"]["effective_width_m"] == 6.5 and cam["properties"]["zone_id"] == 34
    garage = register(city_client, op, kind="parking", name="Garage C", lon=24.94, lat=60.17, capacity=50)
    with city_engine.begin() as conn:
        _, token = keys.create_key(conn, name="cam-1", datastreams=[cam["datastreams"]["count"]])
    kh = {"Authorization": f"Bearer {token}"}
    r = city_client.post(f"/api/feeds/camera/{cam['thing_id']}", json={"counts": [
        {"start": "2025-06-01T10:00:00Z", "end": "2025-06-01T10:01:00Z", "count": 12}]}, headers=kh)
    assert r.status_code == 201, r.text
    before = n_obs(city_engine)
    assert city_client.post(f"/api/feeds/parking/{garage['thing_id']}", json={"occupied": 3}, headers=kh).status_code == 403
    assert city_client.post(f"/api/feeds/parking/{garage['thing_id']}", json={"occupied": 3},
                            headers=auth(city_client, "viewer")).status_code == 403
    assert city_client.post(f"/api/feeds/parking/{cam['thing_id']}", json={"occupied": 3}, headers=op).status_code == 404
    r = city_client.post(f"/api/feeds/camera/{cam['thing_id']}", json={"counts": [{"start": "2999-01-01T00:00:00Z", "count": 1}]},
                         headers=kh)
    assert r.status_code == 400 and "future" in r.json()["detail"]
    assert n_obs(city_engine) == before
    r = city_client.post("/api/feeds/sources", json={"kind": "camera", "name": "cam 2", "lon": 24.94, "lat": 60.17, "counting": "line"},
                         headers=op)
    assert r.status_code == 422 and r.json()["fields"] == ["effective_width_m"]


def test_sensors_overview_reports_origin_age_and_staleness(city_client):
    op = auth(city_client, "operator")
    w = register(city_client, op, kind="weather", name="roof station", lon=24.94, lat=60.17, origin="simulated", interval_s=60)
    r = city_client.post(f"/api/feeds/weather/{w['thing_id']}",
                         json={"wind_speed_m_s": 76.0, "wind_from_deg": 90, "time": "2025-01-01T00:00:00Z"}, headers=op)
    assert r.status_code == 201
    data = city_client.get("/api/feeds/sensors", headers=op).json()
    [t] = [t for t in data["things"] if t["thing_id"] == w["thing_id"]]
    assert t["origin"] == "simulated" and data["origins"]["simulated"] >= 1 and t["stale"]
    ws = next(d for d in t["datastreams"] if d["stream"] == "wind_speed")
    assert ws["value"] == 76.0 and ws["stale"] and ws["age_s"] > 3600 and "impossible" in ws["flags"]
    assert ws["unit"] == "m/s" and ws["expected_interval_s"] == 60
    assert city_client.get("/api/feeds/sensors").status_code == 401


def test_weather_forecast_source_takes_hourly_issues_all_or_nothing(city_client, city_engine):
    op = auth(city_client, "operator")
    f = register(city_client, op, kind="weather", name="met forecast", lon=24.94, lat=60.17,
                 origin="simulated", forecast=True)
    assert set(f["datastreams"]) == {"temperature", "precipitation"}
    assert f["properties"]["kind"] == "weather_forecast"
    hours = [{"time": f"2025-01-01T{h:02d}:00:00Z", "temperature_c": 1.5, "precipitation_mm_h": 0.2}
             for h in range(3)]
    before = n_obs(city_engine)
    r = city_client.post(f"/api/feeds/weather/{f['thing_id']}", json=hours, headers=op)
    assert r.status_code == 201 and r.json()["stored"] == 6 and n_obs(city_engine) == before + 6
    r = city_client.post(f"/api/feeds/weather/{f['thing_id']}",
                         json=[*hours, {"time": "2025-01-01T04:00:00Z", "wind_speed_m_s": 3}], headers=op)
    assert r.status_code == 422 and r.json()["fields"] == ["[3].wind_speed_m_s"]
    assert n_obs(city_engine) == before + 6
    r = city_client.post("/api/feeds/sources", json={"kind": "weather", "name": "bad forecast", "lon": 24.94,
                                                     "lat": 60.17, "forecast": "yes"}, headers=op)
    assert r.status_code == 422 and r.json()["fields"] == ["forecast"]
