"""Hazard benchmarks: zones + affected buildings for a synthetic 1,000,000-building city,
a 100-member wind ensemble, the Excel report, and Prairie Grass scores. Prints JSON.

    .venv/bin/python benchmarks/bench_hazard.py [--n 1000000] [--prairie-grass DIR]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import time
from datetime import UTC, datetime
from pathlib import Path

import geopandas as gpd
import numpy as np
import shapely

from citytwin.hazard import assess_incident, prepare_buildings, validate_prairie_grass, write_xlsx

LON0, LAT0 = 4.90, 52.37


def synthetic_city(n: int, seed: int = 42) -> gpd.GeoDataFrame:
    """n square buildings (~10 m) spread over ~34 km × 33 km around the source, WGS84."""
    rng = np.random.default_rng(seed)
    lon = LON0 + rng.uniform(-0.25, 0.25, n)
    lat = LAT0 + rng.uniform(-0.15, 0.15, n)
    sc = rng.choice(
        np.array(["vulnerable", "hazardous", "ordinary"], dtype=object), n, p=[0.01, 0.005, 0.985]
    )
    use = rng.choice(
        np.array(
            ["residential", "office", "retail", "education", "care_home", "industrial"],
            dtype=object,
        ),
        n,
        p=[0.7, 0.1, 0.1, 0.03, 0.02, 0.05],
    )
    geom = shapely.box(lon - 7e-5, lat - 4.5e-5, lon + 7e-5, lat + 4.5e-5)
    return gpd.GeoDataFrame(
        {
            "id": np.arange(n),
            "name": np.full(n, "", dtype=object),
            "safety_class": sc,
            "use_class": use,
            "occupants_day": rng.uniform(0, 40, n),
            "occupants_night": rng.uniform(0, 40, n),
            "height_m": rng.uniform(3, 30, n),
            "lon": lon,
            "lat": lat,
        },
        geometry=geom,
        crs=4326,
    )


def timed(fn, repeat: int = 3):
    best, out = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


SCENARIOS = {
    "chlorine_1kg_s_30min_D5": dict(
        substance="chlorine",
        rate_g_s=1000.0,
        duration_min=30,
        wind_speed_m_s=5.0,
        wind_from_deg=250.0,
        cloud_cover_octas=8,
    ),
    "chlorine_1kg_s_30min_F1.5": dict(
        substance="chlorine",
        rate_g_s=1000.0,
        duration_min=30,
        wind_speed_m_s=1.5,
        wind_from_deg=250.0,
        stability_class="F",
    ),
    "fire_50MW_D5": dict(
        substance="fire", heat_mw=50.0, wind_speed_m_s=5.0, wind_from_deg=250.0, cloud_cover_octas=8
    ),
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument(
        "--prairie-grass",
        default=os.environ.get(
            "CITYTWIN_PRAIRIE_GRASS",
            str(Path(__file__).resolve().parents[2] / "shared" / "data" / "prairie-grass"),
        ),
    )
    a = ap.parse_args()
    at = datetime(2024, 6, 21, 12, tzinfo=UTC)
    out: dict = {
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
        "buildings": a.n,
    }
    t = time.perf_counter()
    city = synthetic_city(a.n)
    out["build_city_s"] = round(time.perf_counter() - t, 3)
    t = time.perf_counter()
    prepared = prepare_buildings(city)
    out["prepare_from_lonlat_columns_s"] = round(time.perf_counter() - t, 3)
    t = time.perf_counter()
    prepare_buildings(city.drop(columns=["lon", "lat"]))
    out["prepare_from_polygon_centroids_s"] = round(time.perf_counter() - t, 3)
    runs = {}
    for name, sc in SCENARIOS.items():
        kw = dict(source_lon=LON0, source_lat=LAT0, at=at, **sc)
        t_gdf, res = timed(lambda kw=kw: assess_incident(buildings=city, **kw))
        t_arr, _ = timed(lambda kw=kw: assess_incident(buildings=prepared, **kw))
        t_ens, res_e = timed(
            lambda kw=kw: assess_incident(
                buildings=prepared, band_method="ensemble", ensemble_members=100, seed=1, **kw
            )
        )
        t_xlsx, _ = timed(lambda res=res: write_xlsx(res, io.BytesIO()), repeat=1)
        runs[name] = {
            "zones_and_table_from_geodataframe_s": round(t_gdf, 3),
            "zones_and_table_from_prepared_arrays_s": round(t_arr, 3),
            "ensemble_100_members_s": round(t_ens, 3),
            "xlsx_report_s": round(t_xlsx, 3),
            "affected_buildings": int(len(res.affected)),
            "affected_buildings_ensemble": int(len(res_e.affected)),
            "stability_class": res.model["parameters"]["stability_class"],
            "extent_m": {
                f"level_{f['properties']['level']}": f["properties"]["downwind_extent_m"]
                for f in res.zones["features"]
                if f["properties"].get("kind") == "zone"
            },
        }
    out["scenarios"] = runs
    pg = Path(a.prairie_grass)
    if (pg / "PGARCS.txt").exists():
        t = time.perf_counter()
        out["prairie_grass"] = validate_prairie_grass(pg)
        out["prairie_grass"]["seconds"] = round(time.perf_counter() - t, 3)
        out["prairie_grass_alternatives"] = {
            f"{s}/{c}": {
                k: round(v, 3)
                for k, v in validate_prairie_grass(pg, scheme=s, class_from=c)["arcmax"].items()
            }
            for s in ("isc3", "tno")
            for c in ("obukhov",)
        } | {
            "briggs_rural/sigma_theta": {
                k: round(v, 3)
                for k, v in validate_prairie_grass(pg, class_from="sigma_theta")["arcmax"].items()
            },
        }
    print(json.dumps(out, indent=2, default=float))


if __name__ == "__main__":
    main()
