"""Crowd safety: datasets, day-ahead forecast with calibrated intervals, backtests."""

from citytwin.crowd.backtest import (
    BacktestError,
    NoTestDataError,
    ShortHistoryError,
    backtest_frame,
    run_backtest,
)
from citytwin.crowd.datasets import load_counts, mark_outages, rebuild_timestamps, to_wide
from citytwin.crowd.forecast import (
    ForecastConfig,
    ForecastError,
    ForecastModel,
    InsufficientHistoryError,
    StaleInputError,
    exceedance_probability,
)

__all__ = [
    "BacktestError",
    "ForecastConfig",
    "ForecastError",
    "ForecastModel",
    "InsufficientHistoryError",
    "NoTestDataError",
    "ShortHistoryError",
    "StaleInputError",
    "backtest_frame",
    "exceedance_probability",
    "load_counts",
    "mark_outages",
    "rebuild_timestamps",
    "run_backtest",
    "to_wide",
]
