"""Scenario validation (bad input → ScenarioError before anything runs), results, what-if."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import ezdxf
import numpy as np
import pytest

from citytwin.evacuation import _pedsim_engine, pedsim
from citytwin.evacuation.pedsim import ScenarioError

EXAMPLE = Path(__file__).parents[2] / "examples" / "venue_square_stage.json"


def _rect(x0, y0, x1, y1):
    return [[x0, y0], [x1, y0], [x1, y1], [x0, y1]]


def base() -> dict:
    return {
        "schema_version": 1, "name": "room",
        "walkable_area": _rect(0, 0, 10, 10),
        "obstacles": [{"name": "stage", "kind": "stage",
                       "geometry": {"type": "Polygon",
                                    "coordinates": [[[6, 3], [8, 3], [8, 7], [6, 7], [6, 3]]]}}],
        "exits": [{"name": "east", "door": [[10, 4], [10, 6]]},
                  {"name": "west", "door": [[0, 4], [0, 5]]}],
        "agents": [{"name": "crowd", "count": 20, "spawn": _rect(1, 1, 5, 9),
                    "speed_m_per_s": {"mean": 1.34, "sd": 0.2}}],
        "simulation": {"seeds": [1, 2]},
    }


def err(doc) -> ScenarioError:
    with pytest.raises(ScenarioError) as ei:
        pedsim.load_scenario(doc)
    return ei.value


def test_valid_scenario_loads_and_builds_exit_corridors():
    sc = pedsim.load_scenario(base())
    assert sc.agent_count == 20
    assert len(sc.open_exits) == 2
    assert sc.geometry.geom_type == "Polygon"
    # each exit stage lies beyond the door, outside the room
    for e in sc.open_exits:
        assert not e.stage.intersects(sc.walkable_area.buffer(-1e-6))


def test_exit_stage_is_at_the_end_of_a_door_wide_corridor():
    """No funnel: the corridor beyond the door is exactly as wide as the door, and JuPedSim
    removes agents only ≥ 1.5 m beyond the door line (a stage right behind the line lets the
    door pass far too many people with CFSM; docs/pedsim.md, "Exit geometry")."""
    sc = pedsim.load_scenario(base())
    for e in sc.open_exits:
        beyond = e.corridor.difference(sc.walkable_area)
        assert beyond.area == pytest.approx(e.width_m * 2.0, rel=1e-6)  # width × 2 m default
        assert e.door.length == pytest.approx(e.width_m)
        assert e.stage.distance(e.door) == pytest.approx(1.5)
        assert e.stage.area == pytest.approx(e.width_m * 0.5)
        assert e.corridor.buffer(1e-9).contains(e.stage)
    assert [e.width_m for e in sc.open_exits] == pytest.approx([2.0, 1.0])


def test_exit_time_is_the_door_line_crossing():
    """One walker at 1.2 m/s from 9.7 m to the door line at x = 10: out at ≈ 0.25 s,
    not when JuPedSim removes it 1.5 m further on."""
    doc = base()
    doc["obstacles"] = []
    doc["agents"] = [{"positions": [[9.7, 5.0]], "speed_m_per_s": {"mean": 1.2}}]
    doc["exits"] = doc["exits"][:1]
    res = pedsim.run_scenario(doc, seed=1, analysis=False)
    assert res.complete
    assert res.exit_time_s[0] == pytest.approx(0.3 / 1.2, abs=0.03)


def test_standoff_recovery_two_agents_either_side_of_a_door(monkeypatch):
    """Two lone agents walking to a 1 m door from either side: with CFSM's neighbour
    repulsion (range 0.25 m by default) they stop just beside the frame and hold each other
    off for ever; after 5 s held up the adapter sends both via a waypoint beyond their
    midpoint and both leave (docs/pedsim.md, "Standoff recovery")."""
    doc = {
        "schema_version": 1, "name": "standoff", "walkable_area": _rect(0, 0, 30, 20),
        "exits": [{"name": "door", "door": [[4, 0], [5, 0]]}],
        "agents": [{"positions": [[3.96, 1.39], [5.79, 1.15]], "speed_m_per_s": {"mean": 1.34}}],
        "simulation": {"max_time_s": 30},
    }
    res = pedsim.run_scenario(doc, seed=1, analysis=False)
    assert res.complete and res.rerouted == 2
    assert res.evacuation_time_s < 12.0
    monkeypatch.setattr(_pedsim_engine, "STANDOFF_AFTER_S", float("inf"))
    stuck = pedsim.run_scenario(doc, seed=1, analysis=False)
    assert not stuck.complete and stuck.evacuated == 0 and stuck.rerouted == 0


def test_exit_outside_walkable_area():
    doc = base()
    doc["exits"][0]["door"] = [[14, 4], [14, 6]]
    e = err(doc)
    assert e.field == "exits[0].door" and "outside" in e.message


def test_exit_inside_walkable_area():
    doc = base()
    doc["exits"][0]["door"] = [[5, 4], [5, 6]]
    e = err(doc)
    assert e.field == "exits[0].door" and "inside" in e.message


def test_agents_placed_in_an_obstacle():
    doc = base()
    doc["agents"][0]["spawn"] = _rect(5, 2, 7, 8)
    e = err(doc)
    assert e.field == "agents[0].spawn" and "stage" in e.message


def test_explicit_position_in_an_obstacle():
    doc = base()
    del doc["agents"][0]["spawn"], doc["agents"][0]["count"]
    doc["agents"][0]["positions"] = [[2, 2], [7, 5]]
    e = err(doc)
    assert e.field == "agents[0].positions[1]" and "obstacle" in e.message


def test_walkable_area_split_in_two_by_a_fence():
    doc = base()
    doc["obstacles"].append({"name": "fence", "kind": "fence", "thickness_m": 0.1,
                             "geometry": {"type": "LineString",
                                          "coordinates": [[5.5, -1], [5.5, 11]]}})
    e = err(doc)
    assert e.field == "obstacles" and "2 separate parts" in e.message


def test_gap_narrower_than_an_agent_makes_exits_unreachable():
    doc = base()
    doc["exits"] = [doc["exits"][0]]  # only the east exit, behind the fence
    doc["obstacles"].append({"name": "fence", "kind": "fence", "thickness_m": 0.1,
                             "geometry": {"type": "LineString",
                                          "coordinates": [[5.5, 0.3], [5.5, 11]]}})
    e = err(doc)
    assert e.field == "agents[0]" and "cannot reach" in e.message


def test_more_agents_than_fit():
    doc = base()
    doc["agents"][0]["count"] = 200  # 32 m² spawn area → 6.25 p/m²
    e = err(doc)
    assert e.field == "agents[0].count" and "at most 4" in e.message


def test_more_agents_than_fit_with_spacing():
    doc = base()
    doc["agents"][0]["count"] = 120  # 3.75 p/m² passes the density check, not the placement
    doc["agents"][0]["radius_m"] = 0.25
    e = err(doc)
    assert e.field == "agents[0].count" and "do not fit" in e.message


def test_nobody_inside():
    doc = base()
    doc["agents"][0]["count"] = 0
    e = err(doc)
    assert e.field == "agents" and "nobody" in e.message
    doc["agents"] = []
    assert err(doc).field == "agents"


@pytest.mark.parametrize(("path", "value", "field"), [
    (("schema_version",), 2, "schema_version"),
    (("simulation", "dt_s"), -0.01, "simulation.dt_s"),
    (("model",), "Helbing", "model.name"),
    (("agents", 0, "speed_m_per_s", "mean"), -3, "agents[0].speed_m_per_s.mean"),
    (("exits", 1, "closed"), True, None),  # fine: one exit left open
])
def test_field_ranges(path, value, field):
    doc = base()
    target = doc
    for k in path[:-1]:
        target = target[k]
    target[path[-1]] = value
    if field is None:
        pedsim.load_scenario(doc)
    else:
        assert err(doc).field == field


def test_all_exits_closed():
    doc = base()
    for e in doc["exits"]:
        e["closed"] = True
    assert err(doc).field == "exits"


def test_errors_are_picklable_for_worker_processes():
    import pickle

    e = pickle.loads(pickle.dumps(ScenarioError("exits[0].door", "bad")))
    assert (e.field, e.message) == ("exits[0].door", "bad")


def test_run_scenario_results_and_reproducibility():
    seen = []
    res = pedsim.run_scenario(base(), seed=3, progress=lambda f, m: seen.append(f))
    assert res.complete and res.evacuated == 20
    assert sum(e["persons"] for e in res.exits) == 20
    assert res.nt_persons[-1] == 20 and np.all(np.diff(res.nt_persons) >= 0)
    assert res.trajectories["x"].shape[1] == 20
    assert res.maps["rset_s"].shape == tuple(res.maps["shape"])
    assert seen[0] == 0.0 and seen[-1] == 1.0
    again = pedsim.run_scenario(base(), seed=3, analysis=False)
    assert again.evacuation_time_s == res.evacuation_time_s
    json.dumps(res.to_dict())  # JSON-ready


def test_premovement_times_respected():
    doc = base()
    doc["agents"][0]["premovement_s"] = {"distribution": "uniform", "min": 5, "max": 10}
    res = pedsim.run_scenario(doc, seed=1, analysis=False)
    x = res.trajectories["x"]
    t = res.trajectories["t"]
    start = x[0]
    before = t < 5.0 - 1e-9
    assert np.allclose(x[before], start[None, :], atol=1e-3)  # nobody moved before 5 s
    assert res.evacuation_time_s > 5.0


def test_assigned_exit_is_used():
    doc = base()
    doc["agents"][0]["exits"] = ["east"]
    res = pedsim.run_scenario(doc, seed=1, analysis=False)
    assert {e["name"]: e["persons"] for e in res.exits} == {"east": 20, "west": 0}


def test_run_many_in_processes_and_summary():
    fr = []
    out = pedsim.run_many(base(), seeds=[1, 2], processes=2, progress=lambda f, m: fr.append(f))
    s = out.summary
    for key in ("evacuation_time_s", "p95_evacuation_time_s", "exits", "bottlenecks", "seeds",
                "model", "schema_version"):
        assert key in s
    assert s["seeds"] == [1, 2] and s["model"] == "CollisionFreeSpeedModel"
    assert s["p95_evacuation_time_s"] >= s["evacuation_time_s"] - 1e-9
    assert {"name", "persons", "flow_p_per_s"} <= set(s["exits"][0])
    assert fr and max(fr) == pytest.approx(1.0)
    json.dumps(s)


def test_compare_what_if_close_an_exit():
    a = base()
    a["agents"].append({"name": "east crowd", "count": 20, "spawn": _rect(8.5, 1, 9.5, 9),
                        "speed_m_per_s": {"mean": 1.34, "sd": 0.2}})
    b = copy.deepcopy(a)
    b["exits"][0]["closed"] = True  # the east door: its crowd must cross to the west door
    out = pedsim.compare(a, b, seeds=[1], processes=1)
    assert out["a"]["exits"][0]["persons"] > 0
    assert out["delta"]["evacuation_time_s"] > 0
    assert out["b"]["exits"][0]["persons"] == 0


def test_walkable_area_from_twin_and_dxf(tmp_path):
    from shapely.geometry import box

    area = pedsim.walkable_area_from_twin(box(0, 0, 30, 20), [box(-5, 15, 5, 25)])
    assert area.area == pytest.approx(600 - 25)
    doc = ezdxf.new()
    msp = doc.modelspace()
    msp.add_lwpolyline(_rect(0, 0, 10, 10), close=True, dxfattribs={"layer": "WALKABLE"})
    msp.add_lwpolyline(_rect(6, 3, 8, 7), close=True, dxfattribs={"layer": "OBSTACLES"})
    doc.saveas(tmp_path / "venue.dxf")
    d = base()
    d["walkable_area"] = {"dxf": "venue.dxf", "layer": "WALKABLE"}
    d["obstacles"] = [{"name": "stage", "dxf": "venue.dxf", "layer": "OBSTACLES"}]
    (tmp_path / "s.json").write_text(json.dumps(d))
    sc = pedsim.load_scenario(tmp_path / "s.json")
    assert sc.free_area.area == pytest.approx(100 - 8)


@pytest.mark.parametrize("model", ["SocialForceModel", "GeneralizedCentrifugalForceModel",
                                   "AnticipationVelocityModel"])
def test_other_models_run(model):
    doc = base()
    doc["model"] = {"name": model}
    doc["agents"][0]["count"] = 5
    doc["simulation"]["max_time_s"] = 60
    res = pedsim.run_scenario(doc, seed=1, analysis=False)
    assert res.model == model and res.evacuated >= 1


def test_example_venue_loads():
    sc = pedsim.load_scenario(EXAMPLE)
    assert 200 <= sc.agent_count <= 600
    assert len(sc.open_exits) == 2
