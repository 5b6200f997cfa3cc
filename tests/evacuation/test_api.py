"""The evacuation API: auth, 422s naming the field, network evacuation in WGS84, venue jobs
with progress and results, what-if, validation, venues from the twin."""

from __future__ import annotations

import time

import pytest
from fastapi.testclient import TestClient

SENATE = {
    "type": "Polygon",
    "coordinates": [[[24.9497, 60.1686], [24.9533, 60.1686], [24.9533, 60.1704],
                     [24.9497, 60.1704], [24.9497, 60.1686]]],
}
AT = "2024-06-21T12:00:00+03:00"
TINY = {
    "schema_version": 1,
    "name": "tiny room",
    "origin": [24.951, 60.169],
    "walkable_area": [[0, 0], [12, 0], [12, 10], [0, 10]],
    "exits": [{"name": "door", "door": [[12, 4], [12, 6]]}],
    "agents": [{"count": 10, "spawn": [[1, 1], [6, 1], [6, 9], [1, 9]]}],
    "simulation": {"seeds": [1], "max_time_s": 60, "dt_s": 0.02},
}


@pytest.fixture
def client(settings, helsinki_engine):
    from citytwin.api import create_app

    with TestClient(create_app(settings, engine=helsinki_engine)) as c:
        yield c


@pytest.fixture
def analyst(client, make_token):
    return make_token(client, "evac-analyst", "analyst")


def wait_job(client, headers, job_id, timeout_s=60) -> dict:
    deadline = time.monotonic() + timeout_s
    seen = []
    while time.monotonic() < deadline:
        r = client.get(f"/api/evacuation/venue/jobs/{job_id}", headers=headers)
        assert r.status_code == 200, r.text
        snap = r.json()
        seen.append(snap["progress"])
        if snap["status"] in ("done", "failed", "cancelled"):
            snap["seen_progress"] = seen
            return snap
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} did not finish: {snap}")


# --------------------------------------------------------------------------- auth
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("post", "/api/evacuation/network"),
        ("post", "/api/evacuation/venue/jobs"),
        ("post", "/api/evacuation/venue/validate"),
        ("post", "/api/evacuation/venue/compare"),
        ("post", "/api/evacuation/venue/from-zone"),
        ("get", "/api/evacuation/venue/jobs/abc"),
    ],
)
def test_needs_a_token_and_the_analyst_role(client, make_token, method, path):
    r = getattr(client, method)(path, **({"json": {}} if method == "post" else {}))
    assert r.status_code == 401
    viewer = make_token(client, "evac-viewer", "viewer")
    r = getattr(client, method)(path, headers=viewer, **({"json": {}} if method == "post" else {}))
    assert r.status_code == 403


# --------------------------------------------------------------------------- network
def test_network_walk(client, analyst):
    r = client.post("/api/evacuation/network", headers=analyst,
                    json={"area": {"type": "Feature", "properties": {}, "geometry": SENATE},
                          "mode": "walk", "at": AT})
    assert r.status_code == 200, r.text
    out = r.json()
    assert 0 < out["clearance_90_s"] <= out["clearance_100_s"]
    assert out["crs"] == "EPSG:4326"
    lon, lat = out["routes_geojson"]["features"][0]["geometry"]["coordinates"][0]
    assert 24.9 < lon < 25.0 and 60.1 < lat < 60.2
    assert out["destinations"]["features"] and out["bottlenecks"]
    assert out["shortest_path"]["clearance_100_s"] is not None
    assert out["occupancy"]["period"] == "day"
    busiest = out["bottlenecks"][0]["edge_id"]
    r2 = client.post("/api/evacuation/network", headers=analyst,
                     json={"area": SENATE, "mode": "walk", "at": AT,
                           "closed_edges": [busiest]})
    assert r2.status_code == 200, r2.text
    assert busiest not in {b["edge_id"] for b in r2.json()["bottlenecks"]}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"area": SENATE, "mode": "fly"}, "mode"),
        ({"area": {"type": "Point", "coordinates": [24.95, 60.17]}}, "area"),
        ({"area": {"type": "Polygon", "coordinates": [[[24.9, 60.1], [24.901, 60.1],
                                                       [24.901, 60.101], [24.9, 60.1]]]}},
         "area"),
        ({"area": SENATE, "assembly_points": [[24.951, 60.1695]]}, "assembly_points"),
        ({"area": SENATE, "closed_edges": [-1]}, "closed_edges"),
        ({"area": SENATE, "margin_m": "far"}, "margin_m"),
        ({"area": SENATE, "city": "Atlantis"}, "city"),
        ({"mode": "walk"}, "area"),
        ({"area": SENATE, "colour": "red"}, "colour"),
    ],
)
def test_network_422_names_the_field(client, analyst, body, field):
    r = client.post("/api/evacuation/network", headers=analyst, json={"at": AT} | body)
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert detail["field"] == field and detail["message"]


# --------------------------------------------------------------------------- venues
def test_venue_job_progress_and_result(client, analyst):
    r = client.post("/api/evacuation/venue/jobs", headers=analyst, json={"scenario": TINY})
    assert r.status_code == 202, r.text
    job = r.json()
    assert job["status"] in ("queued", "running", "done")
    snap = wait_job(client, analyst, job["id"])
    assert snap["status"] == "done", snap
    assert snap["progress"] == 1.0
    res = snap["result"]
    s = res["summary"]
    assert s["persons"] == 10 and s["p95_evacuation_time_s"] > 0
    assert s["exits"][0]["name"] == "door" and s["exits"][0]["flow_p_per_s"] > 0
    assert res["run"]["nt"]["persons"][-1] == 10
    assert {"density_mean_p_per_m2", "rset_s", "speed_mean_m_per_s"} <= set(res["run"]["maps"])
    geo = res["geo"]
    assert geo["playback"]["positions"] and geo["density"]["features"]
    assert client.get("/api/evacuation/venue/jobs/nope", headers=analyst).status_code == 404
    listed = client.get("/api/evacuation/venue/jobs", headers=analyst).json()
    assert job["id"] in {j["id"] for j in listed}


def test_venue_scenario_given_directly(client, analyst):
    r = client.post("/api/evacuation/venue/jobs", headers=analyst, json=TINY)
    assert r.status_code == 202
    assert wait_job(client, analyst, r.json()["id"])["status"] == "done"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"exits": [{"name": "x", "door": [[20, 4], [20, 6]]}]}, "exits[0].door"),
        ({"schema_version": 7}, "schema_version"),
        ({"origin": [500, 0]}, "origin"),
        ({"walkable_area": {"dxf": "/etc/passwd", "layer": "0"}}, "walkable_area.dxf"),
        ({"agents": [{"count": 100000, "spawn": [[1, 1], [6, 1], [6, 9], [1, 9]]}]},
         "agents[0].count"),
        ({"obstacles": [{"name": "wall", "geometry": {"type": "LineString",
                                                       "coordinates": [[6, 0], [6, 10]]},
                         "thickness_m": 0.3}]}, "obstacles"),
    ],
)
def test_bad_scenarios_are_422_before_anything_runs(client, analyst, change, field):
    bad = TINY | change
    r = client.post("/api/evacuation/venue/jobs", headers=analyst, json={"scenario": bad})
    assert r.status_code == 422, r.text
    assert r.json()["detail"]["field"].startswith("scenario." + field), r.json()
    r = client.post("/api/evacuation/venue/validate", headers=analyst, json=bad)
    assert r.status_code == 422 and r.json()["detail"]["field"].startswith(field)
    assert client.get("/api/evacuation/venue/jobs", headers=analyst).json() == []


def test_validate_and_run_options(client, analyst):
    r = client.post("/api/evacuation/venue/validate", headers=analyst, json=TINY)
    assert r.status_code == 200 and r.json()["valid"] and r.json()["agents"] == 10
    for opts, field in (({"seeds": []}, "seeds"), ({"processes": 99}, "processes")):
        r = client.post("/api/evacuation/venue/jobs", headers=analyst,
                        json={"scenario": TINY} | opts)
        assert r.status_code == 422 and r.json()["detail"]["field"] == field


def test_compare_is_a_job(client, analyst):
    wide = TINY | {"exits": [{"name": "door", "door": [[12, 3], [12, 7]]}]}
    r = client.post("/api/evacuation/venue/compare", headers=analyst,
                    json={"a": TINY, "b": wide, "seeds": [1]})
    assert r.status_code == 202, r.text
    snap = wait_job(client, analyst, r.json()["id"])
    assert snap["status"] == "done", snap
    res = snap["result"]
    assert {"a", "b", "delta"} <= set(res)
    assert res["delta"]["p95_evacuation_time_s"] == pytest.approx(
        res["b"]["p95_evacuation_time_s"] - res["a"]["p95_evacuation_time_s"], abs=0.02)
    r = client.post("/api/evacuation/venue/compare", headers=analyst, json={"a": TINY})
    assert r.status_code == 422 and r.json()["detail"]["field"] == "b"
    r = client.post("/api/evacuation/venue/compare", headers=analyst,
                    json={"a": TINY, "b": TINY | {"schema_version": 2}})
    assert r.status_code == 422 and r.json()["detail"]["field"] == "b.schema_version"


def test_venue_from_zone(client, analyst, helsinki_engine):
    with helsinki_engine.connect() as conn:
        zid = conn.exec_driver_sql("SELECT id FROM zones WHERE name = 'Senaatintori'").scalar()
    r = client.post("/api/evacuation/venue/from-zone", headers=analyst, json={"zone_id": zid})
    assert r.status_code == 200, r.text
    sk = r.json()
    assert sk["schema_version"] == 1 and sk["walkable_area"]["type"] == "Polygon"
    assert sk["exits"] == [] and len(sk["origin"]) == 2
    r = client.post("/api/evacuation/venue/from-zone", headers=analyst, json={"polygon": SENATE})
    assert r.status_code == 200, r.text
    for body, field in (({}, "zone_id"), ({"zone_id": 99999}, "zone_id"),
                        ({"polygon": {"type": "Point", "coordinates": [1, 2]}}, "polygon")):
        r = client.post("/api/evacuation/venue/from-zone", headers=analyst, json=body)
        assert r.status_code == 422 and r.json()["detail"]["field"] == field, r.text
