"""ForecastModel on synthetic data: shape, calibration, cold start, persistence, errors."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from citytwin.crowd.forecast import (
    QUANTILES,
    ForecastConfig,
    ForecastError,
    ForecastModel,
    InsufficientHistoryError,
    StaleInputError,
    exceedance_probability,
    interval_coverage,
    mase_scale,
)

FAST = ForecastConfig(n_estimators=40, num_leaves=15, min_child_samples=20,
                      calibration_days=14, refit_after_calibration=False, exclude_periods=())


@pytest.fixture(scope="module")
def fitted(make_counts) -> tuple[ForecastModel, pd.DataFrame]:
    frame = make_counts(days=70)
    return ForecastModel(FAST, dataset="synthetic").fit(frame, seed=1), frame


def test_mase_scale_hand_example() -> None:
    # |4-1| + |3-2| over 2 pairs with m = 2
    assert mase_scale(np.array([1.0, 2.0, 4.0, 3.0]), m=2) == 2.0
    assert mase_scale(np.array([1.0, np.nan, 4.0, 3.0]), m=2) == 3.0
    assert np.isnan(mase_scale(np.arange(5.0), m=168))


def test_interval_coverage_ignores_missing() -> None:
    y = np.array([1.0, 5.0, np.nan, 2.0])
    assert interval_coverage(y, np.zeros(4), np.full(4, 2.0)) == pytest.approx(2 / 3)


def test_exceedance_probability_is_monotone_and_hits_levels() -> None:
    q = {a: np.array([v]) for a, v in zip((0.025, 0.1, 0.5, 0.9, 0.975),
                                          (10.0, 20, 50, 80, 100), strict=True)}
    xs = np.array([0.0, 10, 20, 50, 80, 100, 150])
    p = np.array([exceedance_probability(q, x)[0] for x in xs])
    assert np.all(np.diff(p) < 0)
    assert p[3] == pytest.approx(0.5) and p[4] == pytest.approx(0.1)
    assert p[5] == pytest.approx(0.025) and 0 < p[6] < 0.025


def test_predict_returns_ordered_quantiles_and_metadata(fitted) -> None:
    model, frame = fitted
    issue = pd.Timestamp("2024-03-11")
    fc = model.predict(frame, issue_time=issue, horizon_h=24)
    assert len(fc) == 3 * 24
    assert set(fc["method"]) == {"model"}
    cols = ["q0.025", "q0.1", "point", "q0.9", "q0.975"]
    assert (np.diff(fc[cols].to_numpy(), axis=1) >= 0).all()
    assert (fc["timestamp"] >= issue).all() and fc["lead_h"].max() == 23
    meta = fc.attrs["model"]
    assert meta["training_window"]["end"] == "2024-03-11 00:00:00"
    assert meta["quantiles"] == [0.025, 0.1, 0.5, 0.9, 0.975]
    assert "r_lag24" in meta["features"] and meta["seed"] == 1
    assert (fc["model_version"] == meta["version"]).all()
    assert sorted(f"q{a}" for a in QUANTILES) == sorted(c for c in fc if c.startswith("q"))


def test_predict_uses_only_data_before_issue(fitted) -> None:
    model, frame = fitted
    issue = pd.Timestamp("2024-03-05")
    a = model.predict(frame, issue_time=issue)
    future = frame.copy()
    future.loc[future["timestamp"] >= issue, "count"] = 1e6
    b = model.predict(future, issue_time=issue)
    np.testing.assert_allclose(a["point"], b["point"])


def test_save_load_roundtrip(fitted, tmp_path) -> None:
    model, frame = fitted
    path = model.save(tmp_path / "m.pkl")
    again = ForecastModel.load(path)
    issue = pd.Timestamp("2024-03-08")
    pd.testing.assert_frame_equal(model.predict(frame, issue_time=issue),
                                  again.predict(frame, issue_time=issue))
    assert again.metadata["model_id"] == model.metadata["model_id"]


def test_cold_start_for_new_sensor_scales_the_global_profile(fitted, make_counts) -> None:
    model, frame = fitted
    new = make_counts(sensors=1, days=5, start="2024-03-04", seed=7)
    new["sensor"] = "new"
    new["count"] *= 3  # three times sensor s0's level
    fc = model.predict(new, issue_time=pd.Timestamp("2024-03-09"))
    assert set(fc["method"]) == {"cold_start"}
    ref = model.predict(frame[frame["sensor"] == "s0"], issue_time=pd.Timestamp("2024-03-09"))
    ratio = fc["point"].sum() / ref["point"].sum()
    assert 2.0 < ratio < 4.5
    assert (fc["q0.975"] >= fc["point"]).all()


def test_stale_and_bad_requests_raise_with_field(fitted) -> None:
    model, frame = fitted
    old = frame[frame["timestamp"] < "2024-03-01"]
    with pytest.raises(StaleInputError) as exc:
        model.predict(old, issue_time=pd.Timestamp("2024-03-05"))
    assert exc.value.field == "frame_history"
    fc = model.predict(old, issue_time=pd.Timestamp("2024-03-05"), stale_after_h=None)
    assert (fc["data_age_h"] > 48).all()
    with pytest.raises(ForecastError) as exc2:
        model.predict(frame, issue_time=pd.Timestamp("2024-03-05"), horizon_h=30)
    assert exc2.value.field == "horizon_h"
    with pytest.raises(InsufficientHistoryError):
        model.predict(frame, issue_time=pd.Timestamp("2024-03-05"), sensors=["ghost"])
    with pytest.raises(ForecastError) as exc3:
        ForecastModel().predict(frame, issue_time=pd.Timestamp("2024-03-05"))
    assert exc3.value.field == "model"


def test_fit_refuses_short_history(make_counts) -> None:
    with pytest.raises(InsufficientHistoryError):
        ForecastModel(FAST).fit(make_counts(days=20), seed=0)


def test_parallel_fit_equals_sequential_fit(fitted) -> None:
    """The point and tail models trained side by side in two threads are the same models."""
    from dataclasses import replace

    model, frame = fitted
    seq = ForecastModel(replace(FAST, fit_workers=1), dataset="synthetic").fit(frame, seed=1)
    issue = pd.Timestamp("2024-03-11")
    a = model.predict(frame, issue_time=issue)
    b = seq.predict(frame, issue_time=issue)
    cols = ["point", *[f"q{q}" for q in QUANTILES]]
    np.testing.assert_array_equal(a[cols].to_numpy(), b[cols].to_numpy())
    # the point model got more trees than each tail model (see ForecastConfig)
    trees = {a: m.num_trees() for a, m in model._fitted.boosters.items()}
    assert trees[0.5] > trees[0.9] > 0


def test_rolling_calibration_uses_only_past_out_of_training_days(make_counts) -> None:
    """Interval factors are re-fitted per sensor on the model's own forecasts of the days before
    the issue that it was not trained on; later data changes nothing, too few days fall back."""
    frame = make_counts(days=100)
    train_end = pd.Timestamp("2024-03-11")  # 70 days
    model = ForecastModel(FAST, dataset="synthetic").fit(frame[frame["timestamp"] < train_end], seed=1)
    issue = pd.Timestamp("2024-04-01")
    a = model.predict(frame, issue_time=issue)
    cal = a.attrs["calibration"]
    assert len(cal) == 3
    day = next(iter(cal.values()))["2024-04-01"]
    assert day["method"] == "rolling 14 d"
    # factors differ per sensor
    assert len({tuple(v["2024-04-01"].items()) for v in cal.values()}) > 1
    # data from the issue time on is not used, neither by the forecast nor by its calibration
    future = frame.copy()
    future.loc[future["timestamp"] >= issue, "count"] = 1e6
    b = model.predict(future, issue_time=issue)
    cols = ["q0.025", "q0.1", "point", "q0.9", "q0.975"]
    np.testing.assert_allclose(a[cols].to_numpy(), b[cols].to_numpy())
    # a fresh model (no kept forecasts) computes the same factors
    fresh = ForecastModel(FAST, dataset="synthetic").fit(frame[frame["timestamp"] < train_end], seed=1)
    np.testing.assert_allclose(fresh.predict(frame, issue_time=issue)[cols].to_numpy(), a[cols].to_numpy())
    # with rolling off, the fit's factors
    off = ForecastModel(dataclasses.replace(FAST, rolling_calibration=False), dataset="synthetic")
    off.fit(frame[frame["timestamp"] < train_end], seed=1)
    c = off.predict(frame, issue_time=issue)
    assert next(iter(c.attrs["calibration"].values()))["2024-04-01"]["method"] == "fixed"
    assert not np.allclose(c["q0.975"].to_numpy(), a["q0.975"].to_numpy())
