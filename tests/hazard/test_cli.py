"""``citytwin plume`` and ``citytwin validate plume`` through Typer's CliRunner."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

PRAIRIE_GRASS = Path(__file__).resolve().parents[3] / "shared" / "data" / "prairie-grass"


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


@pytest.fixture(scope="module")
def source(helsinki_engine) -> tuple[float, float]:
    from citytwin.city.service import resolve_city

    with helsinki_engine.connect() as conn:
        c = resolve_city(conn, None)
    return (c["minx"] + c["maxx"]) / 2 - 0.004, (c["miny"] + c["maxy"]) / 2


def test_plume_writes_xlsx_and_geojson(run, source, tmp_path):
    from openpyxl import load_workbook

    xlsx, gj = tmp_path / "out" / "report.xlsx", tmp_path / "out" / "zones.geojson"
    r = run(
        "plume",
        "--lat",
        source[1],
        "--lon",
        source[0],
        "--substance",
        "chlorine",
        "--rate-g-s",
        500,
        "--duration-min",
        20,
        "--wind-speed",
        4,
        "--wind-from",
        270,
        "--at",
        "2024-06-21T10:00:00+00:00",
        "--xlsx",
        xlsx,
        "--geojson",
        gj,
        "--json",
    )
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout)
    assert summary["affected_total"] > 0 and summary["files"]["xlsx"] == str(xlsx)
    assert all(b["lon"] > source[0] for b in summary["affected_first"])
    assert load_workbook(xlsx, read_only=True).sheetnames == [
        "Summary",
        "Affected buildings",
        "Zones",
    ]
    fc = json.loads(gj.read_text())
    assert any(f["properties"]["kind"] == "zone" for f in fc["features"])


def test_fire_with_kml(run, source, tmp_path):
    kml = tmp_path / "fire.kml"
    r = run(
        "plume",
        "--lat",
        source[1],
        "--lon",
        source[0],
        "--substance",
        "fire",
        "--heat-mw",
        20,
        "--wind-speed",
        3,
        "--wind-from",
        250,
        "--kml",
        kml,
    )
    assert r.exit_code == 0, r.output
    assert "fire" in r.stdout and kml.read_text().startswith("<?xml")


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"--rate-g-s": -5}, "rate_g_s"),
        ({"--rate-g-s": None}, "rate_g_s"),
        ({"--substance": "chlorin"}, "substance"),
        ({"--lon": 30.0}, "source_lon/source_lat"),
        ({"--wind-speed": 0}, "wind_speed_m_s"),
        ({"--wind-speed": None, "--wind-from": None}, "wind_speed_m_s"),
        ({"--duration-min": 75}, "duration_min"),
        ({"--city": "Atlantis"}, "city"),
    ],
)
def test_bad_input_exits_2_naming_the_field_and_writes_nothing(
    run, source, tmp_path, change, field
):
    opts = {
        "--lat": source[1],
        "--lon": source[0],
        "--substance": "chlorine",
        "--rate-g-s": 100,
        "--duration-min": 10,
        "--wind-speed": 4,
        "--wind-from": 270,
    }
    opts.update(change)
    xlsx, gj = tmp_path / "o" / "r.xlsx", tmp_path / "o" / "z.geojson"
    args = [x for k, v in opts.items() if v is not None for x in (k, v)]
    r = run("plume", *args, "--xlsx", xlsx, "--geojson", gj)
    assert r.exit_code == 2, r.output
    assert field in r.output
    assert not xlsx.exists() and not gj.exists()
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


def test_validate_plume_on_prairie_grass(run):
    if not PRAIRIE_GRASS.is_dir():
        pytest.skip(f"no Prairie Grass data at {PRAIRIE_GRASS}")
    r = run("validate", "plume", "--prairie-grass", PRAIRIE_GRASS, "--json")
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)
    assert res["runs"] == 27
    assert res["arcmax"]["fac2"] >= 0.8 and abs(res["arcmax"]["fb"]) <= 0.3
    assert {"fac2", "fb", "nmse", "mg", "vg"} <= set(res["cwic"])


def test_validate_plume_missing_directory(run, tmp_path):
    r = run("validate", "plume", "--prairie-grass", tmp_path / "nope", "--json")
    assert r.exit_code == 2 and "prairie_grass" in r.output
