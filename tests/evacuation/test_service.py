"""The twin-facing evacuation service on the Helsinki centre: occupancy by time of day,
an area around the Senate Square on foot and by car, closing the busiest street, venues from
the twin and in the map's frame; the background job runner."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta, timezone

import numpy as np
import pytest
import shapely

from citytwin.evacuation import service
from citytwin.evacuation.jobs import JobNotFound, JobRunner
from citytwin.evacuation.network import EvacuationInputError

#: An area around the Senate Square (Senaatintori), WGS84.
SENATE = {
    "type": "Polygon",
    "coordinates": [[[24.9497, 60.1686], [24.9533, 60.1686], [24.9533, 60.1704],
                     [24.9497, 60.1704], [24.9497, 60.1686]]],
}
NOON = datetime(2024, 6, 21, 12, 0, tzinfo=timezone(timedelta(hours=3)))

TINY = {
    "schema_version": 1,
    "name": "tiny room",
    "origin": [24.951, 60.169],
    "walkable_area": [[0, 0], [12, 0], [12, 10], [0, 10]],
    "exits": [{"name": "door", "door": [[12, 4], [12, 6]]}],
    "agents": [{"count": 20, "spawn": [[1, 1], [6, 1], [6, 9], [1, 9]]}],
    "simulation": {"seeds": [1], "max_time_s": 120},
}


@pytest.fixture(scope="module")
def cache():
    return {}


@pytest.fixture(scope="module")
def walk_noon(helsinki_engine, cache):
    with helsinki_engine.connect() as conn:
        return service.evacuate_area(conn, area=SENATE, mode="walk", at=NOON, cache=cache)


# --------------------------------------------------------------------------- time of day
@pytest.mark.parametrize(
    ("at", "tz", "period"),
    [
        (datetime(2024, 6, 21, 7, 0), None, "day"),
        (datetime(2024, 6, 21, 18, 59), None, "day"),
        (datetime(2024, 6, 21, 19, 0), None, "night"),
        (datetime(2024, 6, 21, 6, 59), None, "night"),
        (datetime(2024, 6, 21, 17, 0, tzinfo=UTC), "Europe/Helsinki", "day"),  # 20:00 local
        (datetime(2024, 6, 21, 17, 0, tzinfo=timezone(timedelta(hours=3))), None, "day"),
        (datetime(2024, 6, 21, 5, 0, tzinfo=UTC), None, "day"),  # solar 06:40 + … at 24.9°E
    ],
)
def test_occupancy_period(at, tz, period):
    got = service.occupancy_period(at=at, lon=24.95, local_tz=tz)
    if tz == "Europe/Helsinki":
        period = "night"  # 17:00 UTC is 20:00 in Helsinki (EEST)
    if at.tzinfo is UTC and tz is None:
        assert got["basis"].startswith("mean solar time")
        period = "day" if 7 <= (5 + 24.95 / 15) < 19 else "night"
    assert got["period"] == period, got


def test_unknown_time_zone_names_the_field():
    with pytest.raises(EvacuationInputError) as e:
        service.occupancy_period(at=NOON, lon=25, local_tz="Mars/Olympus")
    assert e.value.field == "local_tz"


# --------------------------------------------------------------------------- areas
@pytest.mark.parametrize(
    "area",
    [
        {"type": "Point", "coordinates": [24.95, 60.17]},
        {"type": "Polygon", "coordinates": [[[24.95, 60.17], [24.95, 60.17], [24.95, 60.17],
                                             [24.95, 60.17]]]},
        {"type": "Polygon", "coordinates": [[[2495000, 6017000], [2496000, 6017000],
                                             [2496000, 6018000], [2495000, 6017000]]]},
        {"type": "FeatureCollection", "features": []},
        "not json",
        [1, 2],
    ],
)
def test_bad_areas_name_the_field(area):
    with pytest.raises(EvacuationInputError) as e:
        service.parse_area(area)
    assert e.value.field == "area"


def test_a_bow_tie_is_repaired_and_a_feature_collection_united():
    bow = {"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]]}
    assert service.parse_area(bow).is_valid
    fc = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {}, "geometry": SENATE},
        {"type": "Feature", "properties": {}, "geometry": {"type": "Point", "coordinates": [0, 0]}},
    ]}
    assert service.parse_area(fc).equals(shapely.geometry.shape(SENATE))


# --------------------------------------------------------------------------- network
def test_walk_senate_square(walk_noon):
    out = walk_noon
    assert out["persons_total"] > 100
    assert out["occupancy"]["period"] == "day" and out["occupancy"]["column"] == "occupants_day"
    assert 0 < out["clearance_90_s"] <= out["clearance_100_s"]
    assert out["crs"] == "EPSG:4326"
    area = shapely.geometry.shape(SENATE)
    routes = out["routes_geojson"]["features"]
    assert routes
    # routes are in WGS84 and leave the area: each starts inside (or at a street next to it)
    # and ends outside
    for f in routes:
        c = np.asarray(f["geometry"]["coordinates"])
        assert 24.9 < c[:, 0].min() and c[:, 0].max() < 25.0 and 60.1 < c[:, 1].min() < 60.2
        assert not area.contains(shapely.Point(c[-1]))
    dest = out["destinations"]["features"]
    assert dest and sum(d["properties"]["persons"] for d in dest) == out["persons_evacuated"]
    for d in dest:
        assert not area.contains(shapely.Point(d["geometry"]["coordinates"]))
    sp = out["shortest_path"]
    assert sp["clearance_100_s"] >= out["clearance_100_s"] * 0.97  # capacity-aware ≤ (slack)
    assert "saving_100_pct" in sp
    assert out["bottlenecks"] and out["bottlenecks_geojson"]["features"]
    b0 = out["bottlenecks"][0]
    assert {"edge_id", "peak_queue_persons", "capacity_p_per_s"} <= set(b0)


def test_closing_the_busiest_edge_and_rerunning(helsinki_engine, cache, walk_noon):
    loads = walk_noon["edge_loads"]
    busiest = loads["edge_ids"][int(np.argmax(loads["persons"]))]
    with helsinki_engine.connect() as conn:
        again = service.evacuate_area(
            conn, area=SENATE, mode="walk", at=NOON, cache=cache, closed_edges=[busiest]
        )
    assert again["clearance_100_s"] is not None
    used = {e for r in again["routes"] for e in r["edge_ids"]}
    assert busiest not in used
    with helsinki_engine.connect() as conn, pytest.raises(EvacuationInputError) as e:
        service.evacuate_area(conn, area=SENATE, mode="walk", at=NOON, cache=cache,
                              closed_edges=[-12345])
    assert e.value.field == "closed_edges"


def test_night_has_fewer_people_and_drive_works(helsinki_engine, cache, walk_noon):
    with helsinki_engine.connect() as conn:
        night = service.evacuate_area(conn, area=SENATE, mode="walk", cache=cache,
                                      at=datetime(2024, 6, 21, 23, 0))
        drive = service.evacuate_area(conn, area=SENATE, mode="drive", at=NOON, cache=cache)
    assert night["occupancy"]["period"] == "night"
    assert night["persons_total"] < walk_noon["persons_total"]
    assert drive["mode"] == "drive" and drive["clearance_100_s"] > 0


def test_assembly_points(helsinki_engine, cache):
    near = [[24.9490, 60.1695], [24.9455, 60.1712, 500]]  # the second one is closed
    with helsinki_engine.connect() as conn:
        out = service.evacuate_area(conn, area=SENATE, mode="walk", at=NOON, cache=cache,
                                    assembly_points=near, closed_assembly_points=[1])
        with pytest.raises(EvacuationInputError) as e:
            service.evacuate_area(conn, area=SENATE, mode="walk", at=NOON, cache=cache,
                                  assembly_points=[[24.951, 60.1695]])
    assert e.value.field == "assembly_points"
    assert out["persons_evacuated"] > 0
    assert len(out["destinations"]["features"]) == 1


@pytest.mark.parametrize(
    ("kw", "field"),
    [
        ({"mode": "fly"}, "mode"),
        ({"margin_m": -5}, "margin_m"),
        ({"city": "Atlantis"}, "city"),
        ({"area": {"type": "Polygon", "coordinates": [[[24.9, 60.1], [24.901, 60.1],
                                                       [24.901, 60.101], [24.9, 60.1]]]}},
         "area"),  # in the sea south of the centre: nobody inside
    ],
)
def test_bad_input_names_the_field(helsinki_engine, cache, kw, field):
    args = {"area": SENATE, "mode": "walk", "at": NOON} | kw
    with helsinki_engine.connect() as conn, pytest.raises(EvacuationInputError) as e:
        service.evacuate_area(conn, cache=cache, **args)
    assert e.value.field == field


# --------------------------------------------------------------------------- venues
def test_local_frame_round_trip():
    f = service.LocalFrame(24.95, 60.17)
    lon, lat = f.to_wgs84([0.0, 100.0, np.nan], [0.0, 0.0, 1.0])
    assert lon[0] == pytest.approx(24.95) and lat[0] == pytest.approx(60.17)
    assert np.isnan(lon[2])
    # 100 m east is ~0.0018° of longitude at 60° N
    assert lon[1] - lon[0] == pytest.approx(100 / (111_320 * np.cos(np.radians(60.17))), rel=0.01)
    back = f.from_wgs84(shapely.Point(lon[1], lat[1]))
    assert back.x == pytest.approx(100, abs=0.01) and back.y == pytest.approx(0, abs=0.01)


def test_venue_from_the_senate_square_zone(helsinki_engine, cache):
    from citytwin.evacuation import pedsim

    with helsinki_engine.connect() as conn:
        zid = conn.exec_driver_sql("SELECT id FROM zones WHERE name = 'Senaatintori'").scalar()
        sk = service.venue_from_zone(conn, zone_id=zid, cache=cache)
    assert sk["name"] == "Senaatintori" and len(sk["origin"]) == 2
    area = shapely.geometry.shape(sk["walkable_area"])
    assert 3000 < area.area < 8000 and area.bounds[0] >= -0.5 and area.bounds[1] >= -0.5
    with pytest.raises(pedsim.ScenarioError):  # no exits yet: the user places them
        pedsim.validate_scenario(sk)
    # with a door on the boundary it validates
    ring = np.asarray(area.exterior.coords)
    seg = max(zip(ring[:-1], ring[1:], strict=True), key=lambda s: np.hypot(*(s[1] - s[0])))
    mid, d = (seg[0] + seg[1]) / 2, (seg[1] - seg[0]) / np.hypot(*(seg[1] - seg[0]))
    door = [(mid - 1.5 * d).tolist(), (mid + 1.5 * d).tolist()]
    sk["exits"] = [{"name": "gate", "door": door}]
    sk["agents"][0]["count"] = 20
    assert pedsim.validate_scenario(sk).agent_count == 20
    with helsinki_engine.connect() as conn, pytest.raises(EvacuationInputError) as e:
        service.venue_from_zone(conn, zone_id=999999, cache=cache)
    assert e.value.field == "zone_id"


def test_scenario_documents_from_outside_may_not_name_files():
    from citytwin.evacuation import pedsim

    bad = TINY | {"walkable_area": {"dxf": "/etc/passwd", "layer": "X"}}
    with pytest.raises(pedsim.ScenarioError) as e:
        service.check_scenario_document(bad)
    assert e.value.field == "walkable_area.dxf"
    with pytest.raises(pedsim.ScenarioError) as e:
        service.check_scenario_document(TINY | {"origin": [200, 60]})
    assert e.value.field == "origin"


def test_run_venue_places_the_result_on_the_map():
    seen = []
    res = service.run_venue(TINY, seeds=[1], processes=1, progress=lambda f, m: seen.append(f))
    s = res["summary"]
    assert s["persons"] == 20 and s["p95_evacuation_time_s"] >= s["min_evacuation_time_s"]
    assert seen and seen[-1] == pytest.approx(1.0) and seen == sorted(seen)
    geo = res["geo"]
    frames = geo["playback"]["positions"]
    assert len(frames) == len(geo["playback"]["t_s"]) and len(frames[0]) == 20
    p = next(p for p in frames[0] if p is not None)
    assert abs(p[0] - 24.951) < 0.001 and abs(p[1] - 60.169) < 0.001
    kinds = {f["properties"]["kind"] for f in geo["venue"]["features"]}
    assert kinds == {"walkable_area", "exit"}
    assert geo["density"]["features"]
    assert "trajectories" not in res["run"]  # they are in geo.playback
    assert res["run"]["nt"]["persons"][-1] == 20


# --------------------------------------------------------------------------- job runner
def test_job_runner_reports_progress_results_and_errors():
    runner = JobRunner(max_workers=1, keep=2)
    gate = threading.Event()

    def slow(progress):
        progress(0.25, "a quarter")
        gate.wait(5)
        progress(0.75, "three quarters")
        return {"answer": 42}

    job = runner.submit("demo", slow, meta={"who": "test"})
    deadline = time.monotonic() + 5
    while runner.get(job.id)["progress"] < 0.25 and time.monotonic() < deadline:
        time.sleep(0.01)
    snap = runner.get(job.id)
    assert snap["status"] == "running" and snap["message"] == "a quarter"
    assert snap["result"] is None and snap["meta"] == {"who": "test"}
    queued = runner.submit("demo", lambda p: {"x": 1})
    assert runner.get(queued.id)["status"] == "queued"
    gate.set()
    done = runner.wait(job.id, timeout_s=5)
    assert done["status"] == "done" and done["progress"] == 1.0 and done["result"] == {
        "answer": 42}
    assert runner.wait(queued.id, timeout_s=5)["result"] == {"x": 1}

    def bad(progress):
        raise EvacuationInputError("mode", "must be 'walk' or 'drive'")

    failed = runner.wait(runner.submit("demo", bad).id, timeout_s=5)
    assert failed["status"] == "failed" and failed["error"]["field"] == "mode"
    # only `keep` finished jobs are remembered
    runner.submit("demo", lambda p: {})
    with pytest.raises(JobNotFound):
        runner.get(job.id)
    runner.close()
    with pytest.raises(RuntimeError):
        runner.submit("demo", lambda p: {})


def test_job_runner_cancels():
    runner = JobRunner(max_workers=1)
    gate = threading.Event()

    def loop(progress):
        for i in range(1000):
            progress(i / 1000, "working")
            gate.wait(0.01)
        return {}

    job = runner.submit("demo", loop)
    waiting = runner.submit("demo", loop)
    time.sleep(0.05)
    assert runner.cancel(waiting.id)["status"] == "cancelled"
    runner.cancel(job.id)
    assert runner.wait(job.id, timeout_s=5)["status"] == "cancelled"
    runner.close(timeout_s=1)
