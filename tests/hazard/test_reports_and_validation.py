"""Reports (xlsx, GeoJSON, KML) and Prairie Grass validation."""

from __future__ import annotations

import io
import json
import os
from datetime import UTC, datetime
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import shapely
from openpyxl import load_workbook

from citytwin.hazard import assess_incident, to_geojson, to_kml, validate_prairie_grass, write_xlsx
from citytwin.hazard import report as report_mod
from citytwin.hazard.validation import parse_pgarcs, score


def _data_dir() -> Path | None:
    env = os.environ.get("CITYTWIN_PRAIRIE_GRASS")
    d = (
        Path(env)
        if env
        else Path(__file__).resolve().parents[3] / "shared" / "data" / "prairie-grass"
    )
    return d if (d / "PGARCS.txt").exists() else None


@pytest.fixture(scope="module")
def result():
    rng = np.random.default_rng(0)
    n = 2000
    lon = 4.9 + rng.uniform(-0.02, 0.02, n)
    lat = 52.37 + rng.uniform(-0.01, 0.01, n)
    sc = np.where(
        np.arange(n) % 50 == 0,
        "vulnerable",
        np.where(np.arange(n) % 77 == 0, "hazardous", "ordinary"),
    )
    gdf = gpd.GeoDataFrame(
        {
            "id": np.arange(n),
            "name": [f"b{i}" for i in range(n)],
            "safety_class": sc,
            "use_class": "residential",
            "occupants_day": 10.0,
            "occupants_night": 20.0,
            "height_m": 9.0,
        },
        geometry=shapely.points(lon, lat),
        crs=4326,
    )
    return assess_incident(
        buildings=gdf,
        source_lon=4.9,
        source_lat=52.37,
        substance="ammonia",
        rate_g_s=3000,
        duration_min=20,
        wind_speed_m_s=4,
        wind_from_deg=225,
        cloud_cover_octas=8,
        at=datetime(2024, 3, 1, 14, tzinfo=UTC),
        weather_source="KNMI 06260",
        weather_observed_at=datetime(2024, 3, 1, 13, 50, tzinfo=UTC),
    )


def test_xlsx_round_trip(result, tmp_path):
    path = tmp_path / "out" / "report.xlsx"
    write_xlsx(result, path)
    wb = load_workbook(path)
    assert wb.sheetnames == ["Summary", "Affected buildings", "Zones"]
    summary = [r for r in wb["Summary"].iter_rows(values_only=True)]
    flat = [str(c) for r in summary for c in r if c is not None]
    assert "Ammonia" in flat and "KNMI 06260" in flat
    assert any("terrain" in s for s in flat)
    rows = list(wb["Affected buildings"].iter_rows(values_only=True))
    header = rows[0]
    assert len(rows) - 1 == len(result.affected)
    adv = [r[header.index("advice")] for r in rows[1:]]
    rank = {"consider_evacuation": 0, "shelter": 1, "inform": 2}
    assert [rank[a] for a in adv] == sorted(rank[a] for a in adv)
    zones = list(wb["Zones"].iter_rows(values_only=True))
    assert zones[0][0] == "kind" and len(zones) > 2
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".part")]


def test_xlsx_to_buffer(result):
    buf = io.BytesIO()
    write_xlsx(result, buf)
    assert load_workbook(io.BytesIO(buf.getvalue())).sheetnames[0] == "Summary"


def test_no_half_written_report(result, tmp_path, monkeypatch):
    path = tmp_path / "report.xlsx"

    class Failing:
        def save(self, fh):
            fh.write(b"PK partial")
            raise RuntimeError("disk full")

    monkeypatch.setattr(report_mod, "build_workbook", lambda result: Failing())
    with pytest.raises(RuntimeError):
        write_xlsx(result, path)
    assert list(tmp_path.iterdir()) == []


def test_geojson_and_kml(result):
    fc = to_geojson(result, include_buildings=True)
    json.dumps(fc)
    kinds = {f["properties"]["kind"] for f in fc["features"]}
    assert {"source", "zone", "possibly_affected", "building"} <= kinds
    kml = to_kml(result)
    assert kml.startswith("<?xml") and "<Polygon" in kml


def test_score_metrics():
    s = score(np.array([1.0, 2.0, 4.0, 8.0]), np.array([2.0, 1.0, 4.0, 40.0]))
    assert s["fac2"] == 0.75
    assert s["fb"] == pytest.approx((3.75 - 11.75) / (0.5 * (3.75 + 11.75)))


def test_prairie_grass_scores():
    d = _data_dir()
    if d is None:
        pytest.skip("Prairie Grass data not found (set CITYTWIN_PRAIRIE_GRASS)")
    arcs = parse_pgarcs((d / "PGARCS.txt").read_text())
    assert {a["distance_m"] for a in arcs} == {50.0, 100.0, 200.0, 400.0, 800.0}
    res = validate_prairie_grass(d)
    assert res["runs"] == 27
    assert set(res["arcmax"]) >= {"fac2", "fb", "nmse", "mg", "vg"}
    # textbook Gaussian, Briggs rural, class from L; measured: FAC2 0.81, FB 0.005
    assert res["arcmax"]["fac2"] >= 0.8
    assert abs(res["arcmax"]["fb"]) <= 0.3
    assert res["cwic"]["fac2"] >= 0.5
