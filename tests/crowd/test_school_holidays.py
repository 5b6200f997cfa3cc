"""School holidays as a forecast input where the ``holidays`` package knows them."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest

from citytwin.crowd._features import HolidayCalendar, school_calendar_known
from citytwin.crowd.forecast import ForecastConfig, ForecastModel
from citytwin.crowd.service import CrowdError
from tests.crowd._twin import seeded_twin


def test_which_school_calendars_are_known() -> None:
    assert school_calendar_known("NL", "Midden") is None
    assert school_calendar_known("DE", "BE") is None
    assert "no school holidays for FI" in school_calendar_known("FI", None)
    assert school_calendar_known("NL", None) == (
        "no school holidays for NL without a region; set one of: Midden, Noord, Zuid")
    assert "no region 'Oost' for NL; one of: Midden, Noord, Zuid" in school_calendar_known("NL", "Oost")
    cal = HolidayCalendar(country="NL", subdiv=None, school=("NL", "Midden"))
    days = np.array(["2025-10-17", "2025-10-20", "2025-10-27"], dtype="datetime64[D]")
    # the autumn break of the middle region: 18–26 October 2025
    assert cal.school_flags(days).tolist() == [0.0, 1.0, 0.0]


def _frame(end: str) -> pd.DataFrame:
    """Two counters whose weekday counts rise by 60 % in the school holidays of NL/Midden."""
    times = pd.date_range("2024-01-01", end, freq="h", inclusive="left")
    cal = HolidayCalendar(country="NL", subdiv=None, school=("NL", "Midden"))
    hol = cal.school_flags(times.to_numpy().astype("datetime64[D]")) > 0
    weekday = times.day_of_week.to_numpy() < 5
    hour = times.hour.to_numpy()
    shape = 0.1 + np.exp(-((hour - 14) ** 2) / 12.0)
    rng = np.random.default_rng(3)
    rows = []
    for name, peak in (("beach", 400.0), ("boulevard", 250.0)):
        lam = peak * shape * np.where(hol & weekday, 1.6, 1.0)
        rows.append(pd.DataFrame({"sensor": name, "timestamp": times,
                                  "count": rng.poisson(lam).astype(float)}))
    return pd.concat(rows, ignore_index=True)


def test_the_model_learns_school_holidays_where_known() -> None:
    frame = _frame("2025-10-20")  # history up to the Monday that opens the autumn break's week
    base = ForecastConfig(n_estimators=120, num_leaves=15, min_child_samples=20,
                          row_subsample=1.0, calibration_days=28, exclude_periods=(),
                          country="NL", subdiv=None)
    with_school = ForecastModel(replace(base, school_calendar=("NL", "Midden"))).fit(frame, seed=0)
    without = ForecastModel(base).fit(frame, seed=0)
    assert "school_hol" in with_school.metadata["features"]
    assert "school_hol" not in without.metadata["features"]
    issue = pd.Timestamp("2025-10-20")
    a = with_school.predict(frame, issue_time=issue)
    b = without.predict(frame, issue_time=issue)
    ratio = a.groupby("sensor")["point"].sum() / b.groupby("sensor")["point"].sum()
    # the Monday of the break: the counts were 1.6× an ordinary Monday's
    assert (ratio > 1.25).all(), ratio


def test_a_school_region_the_calendar_lacks_is_refused(helsinki_engine, tmp_path) -> None:
    now = datetime(2026, 3, 10, 9, 30, tzinfo=UTC)
    engine, svc, _ = seeded_twin(helsinki_engine, tmp_path, now=now, train=False)
    svc.settings = replace(svc.settings, school_region="Uusimaa")
    with pytest.raises(CrowdError, match="school_region: the holidays package has no school holidays for FI") as e:
        svc.train(now=now)
    assert e.value.field == "school_region"
    svc.settings = replace(svc.settings, school_region=None)
    info = svc.train(now=now)
    row = svc.model_info()["info"]["school_holidays"]
    assert row["calendar"] is None and "no school holidays for FI" in row["why_not"], (row, info)
    engine.dispose()
