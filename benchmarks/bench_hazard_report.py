"""The whole incident report for the demo city, end to end through the service. Prints JSON.

For a chlorine release and a 20 MW warehouse fire in the Helsinki centre (the demo twin):
load the city's buildings from the database, take the wind, assess the incident and write the
Excel report (in memory), as ``POST /api/incident/report.xlsx`` and ``citytwin plume`` do.
"cold" includes reading and preparing the buildings; "warm" reuses the prepared arrays
(the API caches them per city). Goal: the whole report in < 2 s.

    .venv/bin/python benchmarks/bench_hazard_report.py [--database-url URL] [--repeat 5]

Without ``--database-url`` the demo city is imported into a temporary SQLite file first
(not timed).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from citytwin.city import service as city_service
from citytwin.hazard import assess_incident, prepare_buildings, write_xlsx
from citytwin.hazard.weather import wind_inputs
from citytwin.store import make_engine, migrate

AT = datetime(2024, 6, 21, 10, 0, tzinfo=UTC)
GOAL_S = 2.0


def scenarios(lon: float, lat: float) -> dict[str, dict]:
    return {
        "chlorine_500g_s_20min": dict(
            substance="chlorine",
            rate_g_s=500.0,
            duration_min=20.0,
            wind_speed_m_s=4.0,
            wind_from_deg=270.0,
        ),
        "warehouse_fire_20MW": dict(
            substance="fire", heat_mw=20.0, wind_speed_m_s=3.0, wind_from_deg=250.0
        ),
    }


def load_arrays(conn, city):
    gdf = city_service.buildings_frame(conn, city_id=city["id"])
    name = gdf["name"].where(gdf["name"].notna() & (gdf["name"] != ""), gdf["address"])
    return prepare_buildings(gdf.assign(name=name.fillna("")))


def one_report(engine, *, city_name: str | None, arrays, lon: float, lat: float, sc: dict) -> dict:
    """One report, timed per stage (seconds)."""
    t = {}
    t0 = time.perf_counter()
    with engine.connect() as conn:
        city = city_service.resolve_city(conn, city_name)
        if arrays is None:
            arrays = load_arrays(conn, city)
        t["buildings"] = time.perf_counter() - t0
        sc = dict(sc)
        wind_kw, _ = wind_inputs(
            conn,
            city_id=city["id"],
            wind_speed_m_s=sc.pop("wind_speed_m_s"),
            wind_from_deg=sc.pop("wind_from_deg"),
        )
    t1 = time.perf_counter()
    res = assess_incident(buildings=arrays, source_lon=lon, source_lat=lat, at=AT, **sc, **wind_kw)
    t2 = time.perf_counter()
    buf = io.BytesIO()
    write_xlsx(res, buf)
    t3 = time.perf_counter()
    t["assess"] = t2 - t1
    t["xlsx"] = t3 - t2
    t["total"] = t3 - t0
    return {
        "times": t,
        "affected": int(len(res.affected)),
        "xlsx_bytes": buf.tell(),
        "vulnerable": int((res.affected["safety_class"] == "vulnerable").sum()),
        "class": res.weather["stability_class"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--database-url", default=None, help="an existing twin (default: import the demo city)"
    )
    ap.add_argument("--city", default=None)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()

    setup_s = 0.0
    if args.database_url:
        engine = make_engine(args.database_url)
    else:
        from citytwin.city.osm import default_pbf

        tmp = Path(tempfile.mkdtemp(prefix="bench-hazard-report-"))
        engine = make_engine(f"sqlite:///{tmp / 'twin.sqlite'}")
        migrate(engine)
        t0 = time.perf_counter()
        city_service.import_osm(engine, path=default_pbf(), name="Helsinki")
        setup_s = time.perf_counter() - t0
    with engine.connect() as conn:
        city = city_service.resolve_city(conn, args.city)
        arrays = load_arrays(conn, city)
    # a source a little west of the centre, so the plume crosses the city
    lon = (city["minx"] + city["maxx"]) / 2 - 0.004
    lat = (city["miny"] + city["maxy"]) / 2
    out: dict = {
        "benchmark": "hazard_report",
        "city": city["name"],
        "buildings": arrays.n,
        "source": [round(lon, 6), round(lat, 6)],
        "at": AT.isoformat(),
        "repeat": args.repeat,
        "setup_import_s": round(setup_s, 2),
        "goal_s": GOAL_S,
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
        },
        "scenarios": {},
    }
    for name, sc in scenarios(lon, lat).items():
        runs = {}
        for mode in ("cold", "warm"):
            rs = [
                one_report(
                    engine,
                    city_name=args.city,
                    arrays=None if mode == "cold" else arrays,
                    lon=lon,
                    lat=lat,
                    sc=sc,
                )
                for _ in range(args.repeat)
            ]
            runs[mode] = {
                stage: {
                    "median_s": round(statistics.median(r["times"][stage] for r in rs), 4),
                    "max_s": round(max(r["times"][stage] for r in rs), 4),
                }
                for stage in ("buildings", "assess", "xlsx", "total")
            }
            last = rs[-1]
        runs["affected_buildings"] = last["affected"]
        runs["affected_vulnerable"] = last["vulnerable"]
        runs["stability_class"] = last["class"]
        runs["xlsx_bytes"] = last["xlsx_bytes"]
        runs["meets_goal"] = runs["cold"]["total"]["max_s"] < GOAL_S
        out["scenarios"][name] = runs
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
