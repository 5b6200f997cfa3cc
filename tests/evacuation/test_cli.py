"""``citytwin evacuate`` and ``citytwin pedsim run|validate|compare`` through Typer's CliRunner:
JSON on standard output only, errors naming the field with exit code 2."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

SENATE = {
    "type": "Polygon",
    "coordinates": [[[24.9497, 60.1686], [24.9533, 60.1686], [24.9533, 60.1704],
                     [24.9497, 60.1704], [24.9497, 60.1686]]],
}
TINY = {
    "schema_version": 1,
    "name": "tiny room",
    "walkable_area": [[0, 0], [12, 0], [12, 10], [0, 10]],
    "exits": [{"name": "door", "door": [[12, 4], [12, 6]]}],
    "agents": [{"count": 10, "spawn": [[1, 1], [6, 1], [6, 9], [1, 9]]}],
    "simulation": {"seeds": [1], "max_time_s": 60, "dt_s": 0.02},
}


@pytest.fixture
def run(helsinki_engine, monkeypatch, tmp_path):
    from citytwin.cli import app

    monkeypatch.setenv(
        "CITYTWIN_DATABASE_URL", helsinki_engine.url.render_as_string(hide_password=False)
    )
    monkeypatch.setenv("CITYTWIN_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("CITYTWIN_SECRET_KEY", "cli-test-secret-" + "s" * 32)
    runner = CliRunner()
    return lambda *args: runner.invoke(app, [str(a) for a in args])


@pytest.fixture
def area(tmp_path):
    p = tmp_path / "senate.geojson"
    p.write_text(json.dumps({"type": "Feature", "properties": {}, "geometry": SENATE}))
    return p


def scenario(tmp_path, doc=TINY, name="tiny.json"):
    p = tmp_path / name
    p.write_text(json.dumps(doc))
    return p


def test_evacuate_json_and_geojson(run, area, tmp_path):
    gj = tmp_path / "out" / "routes.geojson"
    r = run("evacuate", "--area", area, "--mode", "walk", "--at", "2024-06-21T12:00+03:00",
            "--json", "--geojson", gj)
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert 0 < out["clearance_90_s"] <= out["clearance_100_s"]
    assert out["routes_geojson"]["features"] and out["bottlenecks"]
    assert out["shortest_path"]["clearance_100_s"] is not None
    assert out["files"]["geojson"] == str(gj)
    fc = json.loads(gj.read_text())
    kinds = {f["properties"]["kind"] for f in fc["features"]}
    assert {"route", "destination", "bottleneck"} <= kinds
    # closing the busiest bottleneck and re-running is one option
    edge = out["bottlenecks"][0]["edge_id"]
    r2 = run("evacuate", "--area", area, "--mode", "walk", "--at", "2024-06-21T12:00+03:00",
             "--close-edge", edge, "--json")
    assert r2.exit_code == 0, r2.output
    assert edge not in {b["edge_id"] for b in json.loads(r2.stdout)["bottlenecks"]}


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--mode", "fly"], "mode (--mode)"),
        (["--at", "yesterday"], "at (--at)"),
        (["--city", "Atlantis"], "city (--city)"),
        (["--close-edge", "-7"], "closed_edges (--close-edge)"),
    ],
)
def test_evacuate_errors_name_the_option(run, area, tmp_path, args, needle):
    gj = tmp_path / "never.geojson"
    r = run("evacuate", "--area", area, "--json", "--geojson", gj, *args)
    assert r.exit_code == 2, r.output
    assert needle in r.stderr and r.stdout == ""
    assert not gj.exists()


def test_evacuate_bad_area_file(run, tmp_path):
    bad = tmp_path / "bad.geojson"
    bad.write_text('{"type": "Point", "coordinates": [24.95, 60.17]}')
    r = run("evacuate", "--area", bad, "--json")
    assert r.exit_code == 2 and "area (--area)" in r.stderr
    r = run("evacuate", "--area", tmp_path / "missing.geojson", "--json")
    assert r.exit_code == 2 and "area (--area)" in r.stderr


def test_pedsim_run_json(run, tmp_path):
    full = tmp_path / "full.json"
    r = run("pedsim", "run", scenario(tmp_path), "--seeds", 1, "--processes", 1, "--json",
            "--output", full)
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)  # stdout is exactly one JSON document; the bar is on stderr
    assert out["evacuation_time_s"] > 0 and out["p95_evacuation_time_s"] > 0
    assert out["exits"] == [{"name": "door", "persons": 10.0,
                             "flow_p_per_s": out["exits"][0]["flow_p_per_s"],
                             "width_m": 2.0, "closed": False}]
    assert out["exits"][0]["flow_p_per_s"] > 0
    assert out["bottlenecks"] == []
    assert out["seeds"] == [1]
    res = json.loads(full.read_text())
    assert res["run"]["trajectories"]["x"]  # no origin: playback stays in local metres
    assert res["geo"] is None


def test_pedsim_validate(run, tmp_path):
    r = run("pedsim", "validate", scenario(tmp_path))
    assert r.exit_code == 0 and "10 agents" in r.stdout
    bad = TINY | {"exits": [{"name": "x", "door": [[20, 4], [20, 6]]}]}
    r = run("pedsim", "validate", scenario(tmp_path, bad, "bad.json"), "--json")
    assert r.exit_code == 2
    assert json.loads(r.stdout)["field"] == "exits[0].door"
    assert "exits[0].door" in r.stderr
    r = run("pedsim", "run", scenario(tmp_path, bad, "bad.json"), "--json")
    assert r.exit_code == 2 and "exits[0].door" in r.stderr and r.stdout == ""
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    r = run("pedsim", "validate", broken)
    assert r.exit_code == 2 and "file" in r.stderr


def test_pedsim_compare(run, tmp_path):
    wide = TINY | {"exits": [{"name": "door", "door": [[12, 3], [12, 7]]}]}
    r = run("pedsim", "compare", scenario(tmp_path), scenario(tmp_path, wide, "wide.json"),
            "--seeds", 1, "--processes", 1, "--json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert {"a", "b", "delta"} <= set(out)
