"""Feature kernels for the day-ahead crowd forecast (private; pure numpy/pandas).

Every feature of a target hour ``t`` with issue hour ``i`` uses only observations of hours
strictly before ``i`` (the issue time is the start of the first forecast hour, so the hour
``i - 1`` is the last one observed). Lags are therefore only taken when ``lag > t - i``.
Count-valued features are divided by the sensor's *level* at issue time — the mean count over
the 28 days (672 h) before ``i`` — so the model is scale-free across sensors; the target is the
count divided by the same level.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import numpy as np
import pandas as pd

#: Hours in the window that defines a sensor's level (28 days).
LEVEL_WINDOW_H = 672
#: Minimum valid hours within the level window for the global model (14 days); below this the
#: cold-start profile is used.
MIN_LEVEL_HOURS = 336
#: Smallest level used as a divisor (persons/hour), so quiet sensors do not explode ratios.
LEVEL_FLOOR = 1.0

SAME_HOUR_LAGS = (24, 48, 72, 96, 120, 144, 168)
WEEK_LAGS = (168, 336, 504, 672)

CALENDAR_FEATURES = [
    "hour",
    "dow",
    "how",
    "month",
    "doy",
    "lead",
    "hol",
    "hol_prev_day",
    "hol_next_day",
    "hol_last_week",
    "days_to_xmas",
    "nye",
]
LEVEL_FEATURES = ["sensor", "log_level", "valid_frac"]
LAG_FEATURES = (
    [f"r_lag{k}" for k in SAME_HOUR_LAGS]
    + [f"r_lag{k}" for k in WEEK_LAGS[1:]]
    + [
        "r_sh7_mean",
        "r_sh7_median",
        "r_sh7_std",
        "r_how4_mean",
        "r_how4_median",
        "r_last",
        "r_lev1",
        "r_lev7",
        "r_lev1_lastweek",
        "lev1_vs_lastweek",
        "lev7_vs_prev7",
    ]
)
BASE_FEATURES = CALENDAR_FEATURES + LEVEL_FEATURES + LAG_FEATURES


@dataclass(frozen=True)
class Grid:
    """A regular hourly count grid with cumulative sums for fast window means.

    ``values`` is (hours × sensors) persons/hour with ``NaN`` for missing/outage hours.
    """

    times: pd.DatetimeIndex
    sensors: list[str]
    values: np.ndarray
    csum: np.ndarray
    ccount: np.ndarray

    @classmethod
    def from_wide(cls, wide: pd.DataFrame) -> Grid:
        v = wide.to_numpy(dtype=np.float64)
        ok = ~np.isnan(v)
        z = np.zeros((1, v.shape[1]))
        csum = np.vstack([z, np.cumsum(np.where(ok, v, 0.0), axis=0)])
        ccount = np.vstack([z, np.cumsum(ok, axis=0, dtype=np.float64)])
        return cls(pd.DatetimeIndex(wide.index), list(wide.columns), v, csum, ccount)

    def window_mean(self, a: np.ndarray, b: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, ...]:
        """Mean and number of valid hours over grid rows ``[a, b)`` of column ``s``."""
        a = np.clip(a, 0, len(self.times))
        b = np.clip(b, 0, len(self.times))
        n = self.ccount[b, s] - self.ccount[a, s]
        tot = self.csum[b, s] - self.csum[a, s]
        with np.errstate(invalid="ignore", divide="ignore"):
            m = np.where(n > 0, tot / np.maximum(n, 1), np.nan)
        return m, n

    def lag(self, t: np.ndarray, i: np.ndarray, s: np.ndarray, k: int) -> np.ndarray:
        """Value at ``t - k`` if observed before the issue hour ``i``, else NaN."""
        idx = t - k
        ok = (idx >= 0) & (idx < i)
        out = np.full(len(t), np.nan)
        out[ok] = self.values[idx[ok], s[ok]]
        return out


def school_calendar_known(country: str | None, subdiv: str | None) -> str | None:
    """Why the ``holidays`` package cannot give school holidays for ``country``/``subdiv``, or
    None when it can (it has a school calendar for that country and region this year)."""
    import holidays

    if not country:
        return "no country known for the city"
    try:
        cal = holidays.country_holidays(country, subdiv=subdiv, years=date.today().year,
                                        categories=("school",))
    except NotImplementedError:
        subs = holidays.list_supported_countries().get(country)
        if subs is None:
            return f"the holidays package has no calendar for {country}"
        return f"the holidays package has no region {subdiv!r} for {country}; one of: " + ", ".join(subs)
    except ValueError as exc:  # category or subdivision not supported
        return f"the holidays package has no school holidays for {country}" + (
            f"/{subdiv}" if subdiv else "") + f" ({exc})"
    if not len(cal):
        cls = type(cal)
        subs = ", ".join(getattr(cls, "subdivisions", ()) or ())
        return (f"no school holidays for {country} without a region; set one of: {subs}"
                if subdiv is None and subs else f"no school holidays listed for {country}")
    return None


class HolidayCalendar:
    """Public holidays of a country/subdivision (``holidays`` package) as a date lookup; with
    ``school=(country, subdivision)`` also that region's school holidays."""

    def __init__(
        self, *, country: str, subdiv: str | None, school: tuple[str, str | None] | None = None
    ) -> None:
        self.country = country
        self.subdiv = subdiv
        self.school = school
        self._cache: dict[int, set[date]] = {}
        self._school_cache: dict[int, set[date]] = {}

    def school_flags(self, days: np.ndarray) -> np.ndarray:
        """1.0 where the ``datetime64[D]`` day is a school holiday, else 0.0 (needs ``school``)."""
        import holidays

        assert self.school is not None
        days = np.asarray(days, dtype="datetime64[D]")
        years = np.unique(days.astype("datetime64[Y]").astype(int) + 1970)
        missing = [int(y) for y in years if int(y) not in self._school_cache]
        if missing:
            country, subdiv = self.school
            cal = holidays.country_holidays(country, subdiv=subdiv, years=missing,
                                            categories=("school",))
            for y in missing:
                self._school_cache[y] = {d for d in cal if d.year == y}
        all_days = np.array(
            sorted(d for y in years for d in self._school_cache[int(y)]), dtype="datetime64[D]"
        )
        return np.isin(days, all_days).astype(np.float64)

    def flags(self, days: np.ndarray) -> np.ndarray:
        """1.0 where the ``datetime64[D]`` day is a public holiday, else 0.0."""
        import holidays

        days = np.asarray(days, dtype="datetime64[D]")
        years = np.unique(days.astype("datetime64[Y]").astype(int) + 1970)
        missing = [int(y) for y in years if int(y) not in self._cache]
        if missing:
            cal = holidays.country_holidays(self.country, subdiv=self.subdiv, years=missing)
            for y in missing:
                self._cache[y] = {d for d in cal if d.year == y}
        all_days = np.array(
            sorted(d for y in years for d in self._cache[int(y)]), dtype="datetime64[D]"
        )
        return np.isin(days, all_days).astype(np.float64)


def build_features(
    grid: Grid,
    t: np.ndarray,
    s: np.ndarray,
    i: np.ndarray,
    *,
    calendar: HolidayCalendar,
    sensor_codes: np.ndarray,
) -> tuple[pd.DataFrame, np.ndarray]:
    """Feature frame and level (persons/hour) for target rows ``(t, s)`` issued at ``i``.

    Parameters
    ----------
    grid : Grid
        Hourly counts; ``t``, ``i`` index its rows and ``s`` its columns.
    t, s, i : numpy.ndarray of int
        Target hour, sensor column and issue hour per row (``i <= t``).
    calendar : HolidayCalendar
        Public holidays of the city.
    sensor_codes : numpy.ndarray of float
        Model-wide sensor code per grid column (``NaN`` for sensors the model never saw).

    Returns
    -------
    (pandas.DataFrame, numpy.ndarray)
        Features (columns :data:`BASE_FEATURES`, plus ``school_hol`` when the calendar has
        school holidays) and the level used to scale them.
    """
    t = np.asarray(t, dtype=np.int64)
    s = np.asarray(s, dtype=np.int64)
    i = np.asarray(i, dtype=np.int64)
    times = grid.times.to_numpy()[np.clip(t, 0, len(grid.times) - 1)]
    ts = pd.DatetimeIndex(times)
    day = times.astype("datetime64[D]")
    f: dict[str, np.ndarray] = {}
    hour = ts.hour.to_numpy()
    dow = ts.day_of_week.to_numpy()
    f["hour"] = hour.astype(np.float64)
    f["dow"] = dow.astype(np.float64)
    f["how"] = (dow * 24 + hour).astype(np.float64)
    f["month"] = ts.month.to_numpy().astype(np.float64)
    f["doy"] = ts.day_of_year.to_numpy().astype(np.float64)
    f["lead"] = (t - i).astype(np.float64)
    f["hol"] = calendar.flags(day)
    f["hol_prev_day"] = calendar.flags(day - 1)
    f["hol_next_day"] = calendar.flags(day + 1)
    f["hol_last_week"] = calendar.flags(day - 7)
    xmas = (ts.year.to_numpy() - 1970).astype("datetime64[Y]").astype("datetime64[D]") + 358
    # 25 December is day 358 of a non-leap year (0-based) and 359 of a leap year
    leap = pd.DatetimeIndex(times).is_leap_year
    xmas = xmas + leap.astype(np.int64)
    f["days_to_xmas"] = np.clip((xmas - day).astype(np.float64), -10, 60)
    # New Year's Eve night (31 Dec 18:00 – 1 Jan 03:00): the busiest night of the year in
    # most city centres, too rare for the trees to isolate from day of year and hour alone
    month, dom = ts.month.to_numpy(), ts.day.to_numpy()
    f["nye"] = (((month == 12) & (dom == 31) & (hour >= 18))
                | ((month == 1) & (dom == 1) & (hour < 3))).astype(np.float64)

    level, n_level = grid.window_mean(i - LEVEL_WINDOW_H, i, s)
    lev = np.maximum(np.nan_to_num(level, nan=LEVEL_FLOOR), LEVEL_FLOOR)
    f["sensor"] = sensor_codes[s]
    f["log_level"] = np.log1p(level)
    f["valid_frac"] = n_level / LEVEL_WINDOW_H

    lags = {k: grid.lag(t, i, s, k) for k in sorted(set(SAME_HOUR_LAGS) | set(WEEK_LAGS))}
    for k in SAME_HOUR_LAGS:
        f[f"r_lag{k}"] = lags[k] / lev
    for k in WEEK_LAGS[1:]:
        f[f"r_lag{k}"] = lags[k] / lev
    sh = np.column_stack([lags[k] for k in SAME_HOUR_LAGS]) / lev[:, None]
    wk = np.column_stack([lags[k] for k in WEEK_LAGS]) / lev[:, None]
    with np.errstate(invalid="ignore"), _quiet_nan():
        f["r_sh7_mean"] = np.nanmean(sh, axis=1)
        f["r_sh7_median"] = np.nanmedian(sh, axis=1)
        f["r_sh7_std"] = np.nanstd(sh, axis=1)
        f["r_how4_mean"] = np.nanmean(wk, axis=1)
        f["r_how4_median"] = np.nanmedian(wk, axis=1)
    f["r_last"] = grid.lag(i, i, s, 1) / lev  # the hour just before issue
    lev1, _ = grid.window_mean(i - 24, i, s)
    lev7, _ = grid.window_mean(i - 168, i, s)
    lev1_lw, _ = grid.window_mean(i - 192, i - 168, s)
    lev7_prev, _ = grid.window_mean(i - 336, i - 168, s)
    f["r_lev1"] = lev1 / lev
    f["r_lev7"] = lev7 / lev
    f["r_lev1_lastweek"] = lev1_lw / lev
    with np.errstate(invalid="ignore", divide="ignore"):
        f["lev1_vs_lastweek"] = lev1 / np.maximum(lev1_lw, LEVEL_FLOOR)
        f["lev7_vs_prev7"] = lev7 / np.maximum(lev7_prev, LEVEL_FLOOR)
    frame = pd.DataFrame({k: f[k] for k in BASE_FEATURES})
    if calendar.school is not None:  # only where the school calendar is known
        frame["school_hol"] = calendar.school_flags(day)
    return frame, np.where(n_level >= 1, lev, np.nan)


class _quiet_nan:
    """Silence numpy's all-NaN-slice RuntimeWarnings (all-NaN rows become NaN, as wanted)."""

    def __enter__(self) -> None:
        import warnings

        self._w = warnings.catch_warnings()
        self._w.__enter__()
        warnings.simplefilter("ignore", RuntimeWarning)

    def __exit__(self, *exc: object) -> None:
        self._w.__exit__(*exc)


def day_ahead_rows(
    grid: Grid, *, start: pd.Timestamp, end: pd.Timestamp
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Target rows for the day-ahead protocol: every hour in ``[start, end)`` × every sensor,
    issued at the midnight that opens the target's calendar day."""
    times = grid.times
    t_lo = int(times.searchsorted(pd.Timestamp(start)))
    t_hi = int(times.searchsorted(pd.Timestamp(end)))
    t_idx = np.arange(t_lo, t_hi, dtype=np.int64)
    hours_into_day = (
        (times[t_idx] - times[t_idx].floor("D")) // pd.Timedelta(hours=1)
    ).to_numpy().astype(np.int64)
    i_idx = t_idx - hours_into_day
    n_s = len(grid.sensors)
    t_all = np.repeat(t_idx, n_s)
    i_all = np.repeat(i_idx, n_s)
    s_all = np.tile(np.arange(n_s, dtype=np.int64), len(t_idx))
    return t_all, s_all, i_all
