"""The crowd service core (no web framework): nowcast, forecast, skill, events, alerts, parking.

Reads the twin's observations from the SensorThings tables (:mod:`citytwin.sensors.schema`),
runs the pure kernels (:mod:`citytwin.crowd.nowcast`, :class:`citytwin.crowd.forecast.ForecastModel`)
and stores what it produces (:mod:`citytwin.crowd.schema`). The router and the CLI are thin
adapters over :class:`CrowdService`; :class:`CrowdScheduler` refreshes forecasts and alerts and
retrains the model on a schedule.

Time: observations are stored in UTC; the forecast model works in *naive local time* of the
city (hour of week, public holidays of its country), see :func:`city_locale`.

Sources per zone
    counting cameras (``feed=camera``, Thing ``zone_id``, ``counting`` zone|line with
    ``effective_width_m``), app-GPS aggregates (Datastream ``zone_id``), shared vehicles per zone
    (GBFS ``zone:<id>`` streams) and parking garages with a ``zone_id`` (context indicators).

Hourly series (model input)
    per counting Datastream: a line counter's persons/hour = mean count per observation ×
    3600 / ``interval_s``; an area counter's people present = mean count; per local hour.

Weather (model input, when a weather stream exists)
    air temperature and precipitation of the first weather station (lowest Thing id; feed
    ``weather``, ``kind: weather_station``) as hourly means at the target hour. For the hours
    ahead: the newest issue of the first weather forecast source (``kind: weather_forecast``)
    where it covers the hour, else *diurnal persistence* (the same hour of the last observed
    day), else missing. Every forecast says which of these it used (``weather``) and the model
    info says how many training hours had weather.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa

from citytwin.crowd import _features as F
from citytwin.crowd import alerts as A
from citytwin.crowd.backtest import backtest_frame
from citytwin.crowd.forecast import (
    ForecastConfig,
    ForecastError,
    ForecastModel,
    InsufficientHistoryError,
    StaleInputError,
    exceedance_probability,
)
from citytwin.crowd.levels import LEVELS, LevelError, count_thresholds, level_of, thresholds_for
from citytwin.crowd.nowcast import Reading, ZoneSpec, nowcast_zone
from citytwin.crowd.schema import crowd_events, crowd_forecasts, crowd_models, crowd_skill
from citytwin.sensors.schema import sta_datastreams, sta_observations, sta_things
from citytwin.store.schema import cities, zones

log = logging.getLogger(__name__)

__all__ = ["CrowdError", "CrowdScheduler", "CrowdService", "CrowdSettings", "city_locale"]

#: Country (ISO 3166) → IANA time zone, for cities whose country is known or guessed.
_TZ = {
    "FI": "Europe/Helsinki",
    "NL": "Europe/Amsterdam",
    "NZ": "Pacific/Auckland",
    "BE": "Europe/Brussels",
    "DE": "Europe/Berlin",
    "GB": "Europe/London",
    "SE": "Europe/Stockholm",
    "EE": "Europe/Tallinn",
    "DK": "Europe/Copenhagen",
    "NO": "Europe/Oslo",
    "FR": "Europe/Paris",
}
#: Rough country boxes (W, S, E, N) to guess a city's country when the import left it empty.
_COUNTRY_BOX = {
    "FI": (19.0, 59.5, 31.6, 70.1),
    "EE": (21.7, 57.5, 28.3, 59.7),
    "NL": (3.3, 50.7, 7.3, 53.6),
    "BE": (2.5, 49.5, 6.4, 51.5),
    "NZ": (166.0, -47.5, 179.0, -34.0),
    "SE": (11.0, 55.3, 24.2, 69.1),
    "DK": (8.0, 54.5, 12.7, 57.8),
    "GB": (-8.7, 49.8, 1.8, 60.9),
    "DE": (5.8, 47.2, 15.1, 55.1),
}
_QCOLS = ("q0.025", "q0.1", "q0.9", "q0.975")


class CrowdError(ValueError):
    """A crowd request that cannot be served: ``field`` names the culprit, ``status`` the HTTP code."""

    def __init__(self, message: str, *, field: str, status: int = 422) -> None:
        super().__init__(message)
        self.field = field
        self.status = status


@dataclass(frozen=True)
class CrowdSettings:
    """Settings of the crowd service (units in the names)."""

    data_dir: Path
    mqtt_url: str | None = None
    horizon_h: int = 24
    #: forecasts refuse when a sensor's newest observation is older than this (hours)
    stale_after_h: float = 6.0
    #: nowcast: values older than this (s) are stale whatever their expected interval
    nowcast_max_age_s: float = 2 * 3600.0
    train_days: int = 365
    skill_test_days: int = 7
    seed: int = 0
    alert: A.AlertPolicy = field(default_factory=A.AlertPolicy)
    #: scheduler: forecast/alert refresh period and model age that triggers a retrain
    refresh_s: float = 600.0
    retrain_after_h: float = 24.0
    first_run_delay_s: float = 120.0
    #: school-holiday region of the city (``holidays`` subdivision, e.g. "Midden" in NL)
    school_region: str | None = None


def city_locale(city: dict) -> tuple[str | None, str]:
    """(country code for public holidays, IANA time zone) of a city row.

    Uses ``cities.country`` when set, else guesses the country from the bounding box; an
    unknown country gives ``(None, "UTC")``.

    >>> city_locale({"country": None, "minx": 24.9, "miny": 60.1, "maxx": 25.0, "maxy": 60.2})
    ('FI', 'Europe/Helsinki')
    """
    country = city.get("country")
    if not country:
        x, y = (city["minx"] + city["maxx"]) / 2, (city["miny"] + city["maxy"]) / 2
        country = next(
            (c for c, (w, s, e, n) in _COUNTRY_BOX.items() if w <= x <= e and s <= y <= n), None
        )
    return country, _TZ.get(country or "", "UTC")


def _to_local(t: pd.Series | pd.DatetimeIndex, tz: str) -> pd.DatetimeIndex:
    idx = pd.DatetimeIndex(pd.to_datetime(t, utc=True))
    return idx.tz_convert(tz).tz_localize(None)


def _local_to_utc(t: pd.Timestamp, tz: str) -> datetime:
    return (
        pd.Timestamp(t)
        .tz_localize(tz, ambiguous=False, nonexistent="shift_forward")
        .tz_convert(UTC)
        .to_pydatetime()
    )


def _local_to_utc_iso(ts, tz: str) -> list[str]:
    """``[_local_to_utc(t, tz).isoformat() for t in ts]``, vectorised."""
    idx = pd.DatetimeIndex(ts)
    if not len(idx):
        return []
    idx = idx.tz_localize(
        tz, ambiguous=np.zeros(len(idx), dtype=bool), nonexistent="shift_forward"
    ).tz_convert(UTC)
    return [t.isoformat() for t in idx.to_pydatetime()]


@dataclass
class _Stream:
    id: int
    thing_id: int
    name: str
    feed: str
    stream: str | None
    zone_id: int | None
    counting: str | None
    width_m: float | None
    interval_s: float
    expected_interval_s: float | None
    origin: str
    scale: float | None
    last_time: datetime | None
    capacity: float | None = None
    full_free_spaces: float | None = None

    @property
    def key(self) -> str:
        return f"ds{self.id}"

    @property
    def unit(self) -> str:
        return "persons/h" if self.counting == "line" else "persons"


def _origin(p: dict) -> str:
    if p.get("origin") in ("real", "replayed", "simulated"):
        return p["origin"]
    return "simulated" if p.get("simulated") else "replayed" if p.get("replayed") else "real"


#: weather features of the crowd model ← the weather feed's stream keys
WEATHER_FEATURES = {"temperature_c": "temperature", "precipitation_mm_h": "precipitation"}


class CrowdService:
    """Crowd safety over one twin database.

    Parameters
    ----------
    engine : sqlalchemy.Engine
        The twin's database.
    settings : CrowdSettings
        Data directory (model files), MQTT URL, horizon, staleness, alert policy.
    """

    def __init__(self, engine: sa.Engine, settings: CrowdSettings) -> None:
        self.engine = engine
        self.settings = settings
        self._model: ForecastModel | None = None
        self._model_row: dict | None = None
        self._lock = threading.RLock()
        self._parking: tuple[str, ForecastModel] | None = None  # (path, garages' model)

    # ------------------------------------------------------------------ city and sources
    def _city(self, conn: sa.Connection) -> dict:
        row = conn.execute(sa.select(cities).order_by(cities.c.id).limit(1)).mappings().first()
        if row is None:
            raise CrowdError(
                "no city imported yet; run `citytwin import`", field="city", status=404
            )
        return dict(row)

    def _zones(self, conn: sa.Connection, city_id: int) -> dict[int, dict]:
        rows = conn.execute(
            sa.select(
                zones.c.id, zones.c.name, zones.c.kind, zones.c.usable_area_m2, zones.c.thresholds
            )
            .where(zones.c.city_id == city_id)
            .order_by(zones.c.id)
        )
        return {r.id: dict(r._mapping) for r in rows}

    def _zone(self, conn: sa.Connection, zone_id: int) -> dict:
        r = conn.execute(
            sa.select(
                zones.c.id, zones.c.name, zones.c.kind, zones.c.usable_area_m2, zones.c.thresholds
            ).where(zones.c.id == zone_id)
        ).first()
        if r is None:
            raise CrowdError(f"zone_id: no zone with id {zone_id}", field="zone_id", status=404)
        return dict(r._mapping)

    def _streams(self, conn: sa.Connection) -> list[_Stream]:
        things = {
            r.id: (r.name, r.properties or {})
            for r in conn.execute(
                sa.select(sta_things.c.id, sta_things.c.name, sta_things.c.properties)
            )
        }
        out = []
        for r in conn.execute(
            sa.select(
                sta_datastreams.c.id,
                sta_datastreams.c.thing_id,
                sta_datastreams.c.name,
                sta_datastreams.c.properties,
                sta_datastreams.c.last_phenomenon_time,
            ).order_by(sta_datastreams.c.id)
        ):
            tname, tp = things.get(r.thing_id, ("", {}))
            dp = r.properties or {}
            feed = dp.get("feed") or tp.get("feed") or ""
            stream = dp.get("stream")
            zone_id = dp.get("zone_id", tp.get("zone_id"))
            if feed == "camera" and stream == "count":
                pass
            elif feed in ("appgps", "gbfs") and zone_id is not None:
                pass
            elif feed == "parking" and stream == "occupancy":
                pass
            else:
                continue
            out.append(
                _Stream(
                    id=r.id,
                    thing_id=r.thing_id,
                    name=tname or r.name,
                    feed=feed,
                    stream=stream,
                    zone_id=None if zone_id is None else int(zone_id),
                    counting=tp.get("counting") if feed == "camera" else None,
                    width_m=tp.get("effective_width_m"),
                    interval_s=float(dp.get("interval_s") or 3600.0),
                    expected_interval_s=dp.get("expectedInterval_s"),
                    origin=_origin({**tp, **dp}),
                    scale=tp.get("expansion_factor"),
                    last_time=r.last_phenomenon_time,
                    capacity=tp.get("capacity"),
                    full_free_spaces=tp.get("full_free_spaces"),
                )
            )
        return out

    def _counters(self, conn: sa.Connection) -> list[_Stream]:
        return [s for s in self._streams(conn) if s.feed == "camera" and s.zone_id is not None]

    # ------------------------------------------------------------------ observations
    def hourly(
        self,
        conn: sa.Connection,
        streams: list[_Stream],
        *,
        start: datetime,
        end: datetime,
        tz: str,
    ) -> pd.DataFrame:
        """Tidy hourly frame (``sensor`` = ``ds<id>``, ``timestamp`` naive local, ``count``)."""
        if not streams:
            return pd.DataFrame({"sensor": [], "timestamp": pd.DatetimeIndex([]), "count": []})
        ob = sta_observations
        rows = conn.execute(
            sa.select(ob.c.datastream_id, ob.c.phenomenon_time, ob.c.result_number).where(
                ob.c.datastream_id.in_([s.id for s in streams]),
                ob.c.phenomenon_time >= start,
                ob.c.phenomenon_time < end,
                ob.c.result_number.is_not(None),
            )
        ).all()
        if not rows:
            return pd.DataFrame({"sensor": [], "timestamp": pd.DatetimeIndex([]), "count": []})
        df = pd.DataFrame([tuple(r) for r in rows], columns=["ds", "t", "v"])
        by_id = {s.id: s for s in streams}
        factor = {
            i: 3600.0 / s.interval_s if s.counting == "line" else 1.0 for i, s in by_id.items()
        }
        df["v"] = df["v"].astype(float) * df["ds"].map(factor).to_numpy(dtype=float)
        df["timestamp"] = _to_local(df["t"], tz).floor("h")
        df["sensor"] = "ds" + df["ds"].astype(str)
        out = (
            df.groupby(["sensor", "timestamp"], as_index=False)["v"]
            .mean()
            .rename(columns={"v": "count"})
        )
        return out.sort_values(["sensor", "timestamp"], ignore_index=True)

    def _latest(
        self, conn: sa.Connection, s: _Stream, *, before: datetime | None = None
    ) -> tuple[float | None, datetime | None, datetime | None]:
        """(value, start, end) of the newest observation (starting at or before ``before``)."""
        ob = sta_observations
        q = sa.select(ob.c.phenomenon_time, ob.c.phenomenon_time_end, ob.c.result_number).where(
            ob.c.datastream_id == s.id
        )
        if before is not None:
            q = q.where(ob.c.phenomenon_time <= before)
        r = conn.execute(q.order_by(ob.c.phenomenon_time.desc()).limit(1)).first()
        if r is None:
            return None, None, None
        # the value is as old as the end of the interval it covers
        v = None if r.result_number is None else float(r.result_number)
        return v, r.phenomenon_time, r.phenomenon_time_end or r.phenomenon_time

    # ------------------------------------------------------------------ nowcast
    def nowcast(self, *, now: datetime | None = None) -> dict:
        """Every zone of the city: people, density, range, level, trend, data age, flags."""
        now = now or datetime.now(UTC)
        with self.engine.connect() as conn:
            city = self._city(conn)
            zs = self._zones(conn, city["id"])
            by_zone: dict[int, list[Reading]] = {}
            for s in self._streams(conn):
                if s.zone_id not in zs:
                    continue
                v, t0, t = self._latest(conn, s)
                age = None if t is None else (now - t).total_seconds()
                v1 = None
                if t0 is not None:
                    v1, _, t1 = self._latest(conn, s, before=t0 - timedelta(minutes=55))
                    if t1 is None or (t - t1) > timedelta(minutes=90):
                        v1 = None
                kind = {
                    "camera": "area" if s.counting == "zone" else "line",
                    "appgps": "appgps",
                }.get(s.feed, "indicator")
                if kind == "line":
                    v = None if v is None else v * 3600.0 / s.interval_s
                    v1 = None if v1 is None else v1 * 3600.0 / s.interval_s
                unit = {"area": "persons", "line": "persons/h", "appgps": "visitors/h"}.get(
                    kind, "occupied spaces" if s.feed == "parking" else "vehicles"
                )
                by_zone.setdefault(s.zone_id, []).append(
                    Reading(
                        source=s.name,
                        kind=kind,
                        value=v,
                        age_s=age,
                        expected_interval_s=s.expected_interval_s,
                        width_m=s.width_m,
                        scale=s.scale,
                        value_1h_ago=v1,
                        origin=s.origin,
                        unit=unit,
                        datastream_id=s.id,
                        suppressed=s.feed == "appgps" and v is None and t is not None,
                    )
                )
            try:
                from citytwin.sensors.feeds.service import traffic_view

                traffic = traffic_view(conn, now=now)
            except ImportError:  # pragma: no cover - feeds not installed
                traffic = {"type": "FeatureCollection", "features": []}
        out = []
        for zid, z in zs.items():
            spec = ZoneSpec(zid, z["name"], z["kind"], z["usable_area_m2"], z["thresholds"])
            try:
                out.append(
                    nowcast_zone(
                        spec, by_zone.get(zid, []), max_age_s=self.settings.nowcast_max_age_s
                    )
                )
            except LevelError as exc:
                out.append(
                    {
                        "zone_id": zid,
                        "name": z["name"],
                        "kind": z["kind"],
                        "level": None,
                        "error": {"field": exc.field, "message": str(exc)},
                        "sources": [],
                        "context": [],
                    }
                )
        counts = {lv: sum(1 for z in out if z.get("level") == lv) for lv in LEVELS}
        segs = [
            {
                "segment_id": f["properties"]["segment_id"],
                "name": f["properties"]["name"],
                "level": f["properties"]["level"],
                "speed_kmh": f["properties"]["speed_kmh"],
                "age_s": f["properties"]["age_s"],
                "stale": f["properties"]["stale"],
                "origin": f["properties"]["origin"],
            }
            for f in traffic.get("features", [])
        ]
        return {
            "generated_at": now.isoformat(),
            "city": city["name"],
            "levels": counts,
            "zones": out,
            "traffic": {"segments": segs, "levels": traffic.get("levels")},
        }

    # ------------------------------------------------------------------ model
    def _locale(self, conn) -> tuple[str | None, str]:
        return city_locale(self._city(conn))

    def _config(self, frame: pd.DataFrame, country: str | None) -> ForecastConfig:
        span_days = (frame["timestamp"].max() - frame["timestamp"].min()).days if len(frame) else 0
        n_rows = int(frame["count"].notna().sum())
        small = n_rows < 100_000
        return ForecastConfig(
            n_estimators=120 if small else 300,
            num_leaves=15 if small else 63,
            min_child_samples=20 if small else 200,
            row_subsample=1.0 if small else 0.3,
            calibration_days=int(np.clip(span_days // 6, 7, 56)),
            exclude_periods=(),
            country=country or "NZ",
            subdiv=None,
            school_calendar=None if self.school_holidays_unknown(country) else (
                country, self.settings.school_region),
            extra_features=("event_visitors", *WEATHER_FEATURES),
            num_threads=1,
        )

    def school_holidays_unknown(self, country: str | None) -> str | None:
        """Why school holidays are not a model input for this city, or None when they are."""
        return F.school_calendar_known(country, self.settings.school_region)

    def event_covariates(
        self,
        conn: sa.Connection,
        streams: list[_Stream],
        *,
        start: pd.Timestamp,
        end: pd.Timestamp,
        tz: str,
    ) -> pd.DataFrame:
        """``timestamp`` (naive local), ``sensor``, ``event_visitors`` for every hour of [start, end)."""
        hours = pd.date_range(start.floor("h"), end, freq="h", inclusive="left")
        rows = []
        evs = conn.execute(
            sa.select(crowd_events).where(
                crowd_events.c.end > _local_to_utc(start, tz),
                crowd_events.c.start < _local_to_utc(end, tz),
            )
        ).all()
        for s in streams:
            vis = np.zeros(len(hours))
            for e in evs:
                if e.zone_id != s.zone_id:
                    continue
                a, b = _to_local(pd.Series([e.start, e.end]), tz)
                vis[(hours >= a.floor("h")) & (hours < b)] += e.expected_visitors
            rows.append(pd.DataFrame({"timestamp": hours, "sensor": s.key, "event_visitors": vis}))
        if not rows:
            return pd.DataFrame({"timestamp": hours, "sensor": "", "event_visitors": 0.0})
        return pd.concat(rows, ignore_index=True)

    def _weather_sources(self, conn: sa.Connection) -> dict[str, dict]:
        """``{"station"|"forecast": {"name", "origin", "streams": {feature: datastream id}}}``
        of the first weather station and the first weather forecast (lowest Thing id)."""
        things = {
            r.id: (r.name, r.properties or {})
            for r in conn.execute(
                sa.select(sta_things.c.id, sta_things.c.name, sta_things.c.properties)
                .order_by(sta_things.c.id)
            )
            if (r.properties or {}).get("feed") == "weather"
        }
        if not things:
            return {}
        key_of = {v: k for k, v in WEATHER_FEATURES.items()}
        by_thing: dict[int, dict[str, int]] = {}
        for r in conn.execute(
            sa.select(
                sta_datastreams.c.id, sta_datastreams.c.thing_id, sta_datastreams.c.properties
            ).where(sta_datastreams.c.thing_id.in_(list(things)))
        ):
            feat = key_of.get((r.properties or {}).get("stream"))
            if feat is not None:
                by_thing.setdefault(r.thing_id, {})[feat] = r.id
        out: dict[str, dict] = {}
        for tid in sorted(by_thing):
            name, props = things[tid]
            role = "forecast" if props.get("kind") == "weather_forecast" else "station"
            if role not in out:
                out[role] = {"thing_id": tid, "name": name, "origin": _origin(props),
                             "streams": by_thing[tid]}
        return out

    @staticmethod
    def _hourly_weather(
        conn: sa.Connection, ds: int, *, start: datetime, end: datetime, tz: str,
        newest_issue: bool = False,
    ) -> pd.Series:
        """Hourly mean (naive local hour → value) of one weather Datastream in [start, end);
        ``newest_issue`` keeps, per hour, only the values of the latest ``resultTime`` (a
        forecast issued again replaces the older issue)."""
        ob = sta_observations
        rows = conn.execute(
            sa.select(ob.c.phenomenon_time, ob.c.result_time, ob.c.result_number).where(
                ob.c.datastream_id == ds,
                ob.c.phenomenon_time >= start,
                ob.c.phenomenon_time < end,
                ob.c.result_number.is_not(None),
            )
        ).all()
        if not rows:
            return pd.Series(dtype=float)
        df = pd.DataFrame([tuple(r) for r in rows], columns=["t", "rt", "v"])
        df["h"] = _to_local(df["t"], tz).floor("h")
        if newest_issue:
            rt = pd.to_datetime(df["rt"].fillna(df["t"]), utc=True)
            df = df[rt == rt.groupby(df["h"]).transform("max")]
        return df.groupby("h")["v"].mean().astype(float)

    def weather_covariates(
        self,
        conn: sa.Connection,
        *,
        start: pd.Timestamp,
        end: pd.Timestamp,
        tz: str,
        issue: pd.Timestamp | None = None,
    ) -> tuple[pd.DataFrame, dict]:
        """Weather features for every local hour of [start, end), and where they came from.

        Hours before ``issue`` (all hours when ``issue`` is None) take the station's
        observations; hours from ``issue`` on take the weather forecast, else the same hour of
        the last observed day (diurnal persistence), else stay missing.

        Returns
        -------
        (pandas.DataFrame, dict)
            ``timestamp`` plus one column per :data:`WEATHER_FEATURES`; and ``station``,
            ``forecast`` (names with origin, or None) and ``hours``: per feature the number
            of hours ``observed``, ``forecast``, ``persistence`` and ``missing``.
        """
        hours = pd.date_range(pd.Timestamp(start).floor("h"), end, freq="h", inclusive="left")
        if not len(hours):
            raise CrowdError("weather covariates: empty period (end must be after start)",
                             field="end")
        src = self._weather_sources(conn)
        st, fc = src.get("station"), src.get("forecast")
        frame = pd.DataFrame({"timestamp": hours})
        def label(x: dict | None) -> str | None:
            if x is None:
                return None
            tag = f"({x['origin']})"
            return x["name"] if tag in x["name"] else f"{x['name']} {tag}"

        info: dict[str, Any] = {
            "station": label(st),
            "forecast": label(fc),
            "hours": {},
        }
        a_utc, b_utc = _local_to_utc(hours[0], tz), _local_to_utc(end, tz)
        cut = hours[-1] + pd.Timedelta(hours=1) if issue is None else pd.Timestamp(issue)
        future = hours >= cut
        for feat in WEATHER_FEATURES:
            src_of = np.full(len(hours), "missing", dtype=object)
            vals = np.full(len(hours), np.nan)
            if st is not None and feat in st["streams"]:
                obs = self._hourly_weather(conn, st["streams"][feat], start=a_utc,
                                           end=min(b_utc, _local_to_utc(cut, tz)), tz=tz)
                vals = obs.reindex(hours).to_numpy(dtype=float, copy=True)
                vals[future] = np.nan
                src_of[~np.isnan(vals)] = "observed"
            if future.any() and fc is not None and feat in fc["streams"]:
                f = self._hourly_weather(conn, fc["streams"][feat], start=_local_to_utc(cut, tz),
                                         end=b_utc, tz=tz, newest_issue=True)
                fv = f.reindex(hours).to_numpy(dtype=float, copy=True)
                take = future & np.isnan(vals) & ~np.isnan(fv)
                vals[take] = fv[take]
                src_of[take] = "forecast"
            past = ~future & ~np.isnan(vals)
            if future.any() and past.any():
                # the same hour of the last observed day (daily cycle kept)
                last = int(np.flatnonzero(past)[-1])
                for j in np.flatnonzero(future & np.isnan(vals)):
                    k = j - 24 * int(np.ceil((j - last) / 24))
                    while k >= 0 and np.isnan(vals[k]) and k > last - 24 * 7:
                        k -= 24
                    if k >= 0 and past[k]:
                        vals[j] = vals[k]
                        src_of[j] = "persistence"
            frame[feat] = vals
            info["hours"][feat] = {
                k: int((src_of == k).sum()) for k in ("observed", "forecast", "persistence", "missing")
            }
            info.setdefault("ahead", {})[feat] = {
                k: int((src_of[future] == k).sum()) for k in ("forecast", "persistence", "missing")
            }
        return frame, info

    def covariates(
        self,
        conn: sa.Connection,
        streams: list[_Stream],
        *,
        start: pd.Timestamp,
        end: pd.Timestamp,
        tz: str,
        issue: pd.Timestamp | None = None,
    ) -> tuple[pd.DataFrame, dict]:
        """Event and weather covariates per sensor and local hour (see the two parts)."""
        ev = self.event_covariates(conn, streams, start=start, end=end, tz=tz)
        wx, info = self.weather_covariates(conn, start=start, end=end, tz=tz, issue=issue)
        return ev.merge(wx, on="timestamp", how="left"), info

    def train(self, *, now: datetime | None = None, progress: bool = False) -> dict:
        """Train the global model on the twin's counting-camera history; store file and row.

        Raises
        ------
        CrowdError
            No counting cameras or fewer than two weeks of usable history (field ``history``);
            a ``school_region`` the ``holidays`` package has no school calendar for (field
            ``school_region``).
        """
        now = now or datetime.now(UTC)
        s = self.settings
        with self.engine.connect() as conn:
            country, tz = self._locale(conn)
            if s.school_region:  # a region that was set must be usable, not quietly ignored
                why = self.school_holidays_unknown(country)
                if why is not None:
                    raise CrowdError(f"school_region: {why}", field="school_region")
            streams = self._counters(conn)
            if not streams:
                raise CrowdError(
                    "no counting cameras attached to zones: nothing to train on", field="history"
                )
            frame = self.hourly(
                conn, streams, start=now - timedelta(days=s.train_days), end=now, tz=tz
            )
            if frame.empty:
                raise CrowdError("the counting cameras have no observations yet", field="history")
            cov, wx = self.covariates(
                conn,
                streams,
                start=frame["timestamp"].min(),
                end=frame["timestamp"].max() + pd.Timedelta(hours=1),
                tz=tz,
            )
        cfg = self._config(frame, country)
        try:
            model = ForecastModel(cfg, dataset="twin counting cameras").fit(
                frame, seed=s.seed, covariates=cov, progress=progress
            )
        except ForecastError as exc:
            raise CrowdError(f"cannot train: {exc}", field="history") from exc
        parking_info = self._train_parking(now=now, tz=tz, country=country, progress=progress)
        meta = model.metadata
        path = Path(s.data_dir) / "crowd" / f"model-{meta['model_id']}.pkl"
        path.parent.mkdir(parents=True, exist_ok=True)
        model.save(path)
        info = {
            "training_window": meta["training_window"],
            "n_train_rows": meta["n_train_rows"],
            "sensors": meta["sensors"],
            "country": country,
            "timezone": tz,
            "event_hours_in_training": int((cov["event_visitors"] > 0).sum()),
            # hours of the training window with observed weather (station, origin)
            "weather_in_training": {
                "station": wx["station"],
                "hours": {k: v["observed"] for k, v in wx["hours"].items()},
            },
            "config": meta["config"],
            "calibration_factors": meta["calibration_factors"],
            "parking_model": parking_info,
            "school_holidays": {
                "calendar": None if cfg.school_calendar is None
                else "/".join(x for x in cfg.school_calendar if x),
                "why_not": self.school_holidays_unknown(country),
            },
        }
        with self.engine.begin() as conn:
            conn.execute(crowd_models.delete().where(crowd_models.c.version == meta["version"]))
            conn.execute(
                crowd_models.insert().values(
                    version=meta["version"],
                    created_at=now,
                    training_start=meta["training_window"]["start"],
                    training_end=meta["training_window"]["end"],
                    n_sensors=len(meta["sensors"]),
                    path=str(path),
                    info=info,
                )
            )
        with self._lock:
            self._model, self._model_row = (
                model,
                {"version": meta["version"], "created_at": now, "info": info, "path": str(path)},
            )
        log.info(
            "crowd model %s trained on %s sensors, %s rows",
            meta["version"],
            len(meta["sensors"]),
            meta["n_train_rows"],
        )
        return {
            "version": meta["version"],
            "training_window": meta["training_window"],
            "sensors": meta["sensors"],
            "n_train_rows": meta["n_train_rows"],
            "path": str(path),
            "timezone": tz,
            "country": country,
        }

    def _train_parking(
        self, *, now: datetime, tz: str, country: str | None, progress: bool = False
    ) -> dict:
        """Fit the garages' occupancy model — the same global quantile model, on the hourly
        mean occupancy of every garage — when a garage has two weeks of hourly history.

        Returns what ``crowd_models.info.parking_model`` records: ``status`` ("trained" or
        why not) and, when trained, ``version``, ``path``, ``training_window``, ``garages``.
        """
        with self.engine.connect() as conn:
            garages = [g for g in self._streams(conn) if g.feed == "parking"]
            if not garages:
                return {"status": "no parking garages"}
            frame = self.hourly(
                conn, garages, start=now - timedelta(days=self.settings.train_days), end=now, tz=tz
            )
        if frame.empty:
            return {"status": "the garages have no occupancy history"}
        cfg = replace(self._config(frame, country), extra_features=())
        try:
            model = ForecastModel(cfg, dataset="twin parking garages").fit(
                frame, seed=self.settings.seed, progress=progress
            )
        except ForecastError as exc:
            log.info("parking model not trained: %s", exc)
            return {"status": f"not trained: {exc}"}
        meta = model.metadata
        path = Path(self.settings.data_dir) / "crowd" / f"parking-{meta['model_id']}.pkl"
        path.parent.mkdir(parents=True, exist_ok=True)
        model.save(path)
        return {
            "status": "trained",
            "version": meta["version"],
            "path": str(path),
            "training_window": meta["training_window"],
            "garages": meta["sensors"],
            "n_train_rows": meta["n_train_rows"],
        }

    def _parking_model(self) -> tuple[ForecastModel | None, dict]:
        """The garages' model of the newest training run (loaded once), or None and why."""
        row = self.model_info()
        pinfo = ((row or {}).get("info") or {}).get("parking_model") or {
            "status": "no model trained yet (run `citytwin forecast train`)"
        }
        if pinfo.get("status") != "trained":
            return None, pinfo
        with self._lock:
            cached = self._parking
            if cached is None or cached[0] != pinfo["path"]:
                cached = (pinfo["path"], ForecastModel.load(pinfo["path"]))
                self._parking = cached
            return cached[1], pinfo

    def model_info(self) -> dict | None:
        """The newest trained model (version, training window, created_at), or None."""
        with self.engine.connect() as conn:
            r = conn.execute(
                sa.select(crowd_models)
                .order_by(crowd_models.c.created_at.desc(), crowd_models.c.id.desc())
                .limit(1)
            ).first()
        return None if r is None else dict(r._mapping)

    def model(self) -> tuple[ForecastModel, dict]:
        """The newest model (loaded once per version)."""
        row = self.model_info()
        if row is None:
            raise CrowdError(
                "no forecast model trained yet; run `citytwin forecast train` or POST /api/crowd/train",
                field="model",
                status=409,
            )
        with self._lock:
            if (
                self._model is None
                or self._model_row is None
                or self._model_row["version"] != row["version"]
            ):
                self._model, self._model_row = ForecastModel.load(row["path"]), row
            return self._model, self._model_row

    # ------------------------------------------------------------------ forecast
    def forecast_zone(
        self,
        zone_id: int,
        *,
        now: datetime | None = None,
        allow_stale: bool = False,
        store: bool = True,
        history_h: int = 48,
    ) -> dict:
        """Next ``horizon_h`` hours for one zone: per sensor and zone density, bands, level probabilities.

        The batch path of :meth:`forecast_all` restricted to this zone.

        Raises
        ------
        CrowdError
            Unknown zone (404), zone without counting sensors or without area (422), no model
            (409), stale input without ``allow_stale`` (409, field ``allow_stale``), too little
            history (422, field ``history``).
        """
        done, failed = self._forecast_batch(
            [zone_id], now=now, allow_stale=allow_stale, store=store, history_h=history_h
        )
        if zone_id in failed:
            raise failed[zone_id]
        return done[zone_id]

    def forecast_all(
        self,
        *,
        now: datetime | None = None,
        allow_stale: bool = False,
        store: bool = True,
        history_h: int = 48,
        zone_ids: list[int] | None = None,
    ) -> dict[int, dict]:
        """Forecast every zone with counting cameras (or ``zone_ids``) in one batch.

        One history query for all counters, event covariates built once, one
        :meth:`ForecastModel.predict` call for all sensors, and all forecasts stored in one
        transaction. Each zone's result has exactly the shape of :meth:`forecast_zone`; a zone
        that cannot be forecast maps to ``{"zone_id", "error": {"detail", "field", "status"}}``
        (the same refusal :meth:`forecast_zone` would raise, e.g. 409 ``allow_stale``).

        Raises
        ------
        CrowdError
            No model (409, field ``model``) or no city (404).
        """
        done, failed = self._forecast_batch(
            zone_ids, now=now, allow_stale=allow_stale, store=store, history_h=history_h
        )
        out: dict[int, dict] = {}
        for zid in sorted({*done, *failed}):
            if zid in done:
                out[zid] = done[zid]
            else:
                e = failed[zid]
                out[zid] = {
                    "zone_id": zid,
                    "error": {"detail": str(e), "field": e.field, "status": e.status},
                }
        return out

    def _forecast_batch(
        self,
        zone_ids: list[int] | None,
        *,
        now: datetime | None,
        allow_stale: bool,
        store: bool,
        history_h: int,
    ) -> tuple[dict[int, dict], dict[int, CrowdError]]:
        """(results, refusals) per zone; ``zone_ids=None`` = every zone with a counting camera."""
        now = now or datetime.now(UTC)
        model, mrow = self.model()
        H = self.settings.horizon_h
        done: dict[int, dict] = {}
        failed: dict[int, CrowdError] = {}
        with self.engine.connect() as conn:
            counters = self._counters(conn)
            if zone_ids is None:
                zone_ids = sorted({s.zone_id for s in counters if s.zone_id is not None})
            zrows = (
                {
                    r.id: dict(r._mapping)
                    for r in conn.execute(
                        sa.select(
                            zones.c.id,
                            zones.c.name,
                            zones.c.kind,
                            zones.c.usable_area_m2,
                            zones.c.thresholds,
                        ).where(zones.c.id.in_(list(zone_ids)))
                    )
                }
                if zone_ids
                else {}
            )
            todo: dict[int, tuple[dict, dict, list[_Stream]]] = {}
            for zid in zone_ids:
                zone = zrows.get(zid)
                if zone is None:
                    failed[zid] = CrowdError(
                        f"zone_id: no zone with id {zid}", field="zone_id", status=404
                    )
                    continue
                if not zone["usable_area_m2"] or zone["usable_area_m2"] <= 0:
                    failed[zid] = CrowdError(
                        f"usable_area_m2: zone {zid} has no usable area; set one > 0 m²",
                        field="usable_area_m2",
                    )
                    continue
                try:
                    thr = thresholds_for(zone["kind"], zone["thresholds"])
                except LevelError as exc:
                    failed[zid] = CrowdError(str(exc), field=getattr(exc, "field", "thresholds"))
                    continue
                streams = [s for s in counters if s.zone_id == zid]
                if not streams:
                    failed[zid] = CrowdError(
                        f"zone_id: zone {zid} has no counting camera; nothing to forecast",
                        field="zone_id",
                    )
                    continue
                todo[zid] = (zone, thr, streams)
            if not todo:
                return done, failed
            country, tz = self._locale(conn)
            streams_all = [s for _, _, ss in todo.values() for s in ss]
            issue = pd.Timestamp(now).tz_convert(tz).tz_localize(None).floor("h")
            # the model's level and lags, and the window of its rolling interval calibration
            hist_days = max(31, model.history_hours() // 24 + 2)
            hist = self.hourly(conn, streams_all, start=now - timedelta(days=hist_days), end=now, tz=tz)
            cov, wx = self.covariates(
                conn,
                streams_all,
                start=issue - pd.Timedelta(days=30),
                end=issue + pd.Timedelta(hours=H),
                tz=tz,
                issue=issue,
            )
            events = self.list_events(
                conn=conn, start=now - timedelta(hours=history_h), end=now + timedelta(hours=H)
            )
            skill = self._skill_rows(conn)
        observed = set(hist["sensor"]) if len(hist) else set()
        # counts observed in the issue hour so far are partial: forecast from the hour start
        hist = hist[hist["timestamp"] < issue]
        by_sensor = {k: g for k, g in hist.groupby("sensor", sort=False)}
        cov_by = {k: g for k, g in cov.groupby("sensor", sort=False)}
        fcs, errs = self._predict_sensors(
            model,
            hist,
            [s for s in streams_all if s.key in by_sensor],
            issue=issue,
            cov=cov,
            stale_after_h=None if allow_stale else self.settings.stale_after_h,
        )
        empty = hist.iloc[:0]
        for zid, (zone, thr, streams) in todo.items():
            if not any(s.key in observed for s in streams):
                failed[zid] = CrowdError(
                    f"history: zone {zid}'s counters have no observations in the last 31 days",
                    field="history",
                )
                continue
            per_sensor, errors = [], []
            for s in streams:
                if s.key not in by_sensor:
                    errors.append(
                        {
                            "sensor": s.key,
                            "field": "history",
                            "message": f"{s.name}: no observations in 31 days",
                        }
                    )
                elif s.key in errs:
                    errors.append(errs[s.key])
                else:
                    h = by_sensor.get(s.key, empty)
                    fc = fcs[s.key]
                    # the model metadata in .attrs would be deep-copied on every column access
                    # below; the result takes it from the model itself
                    fc.attrs = {}
                    c = cov_by.get(s.key, cov.iloc[:0])  # _event_prior's own filter, done once
                    per_sensor.append((s, self._event_prior(fc, s, c, mrow), h))
            if not per_sensor:
                msg = "; ".join(e["message"] for e in errors)
                if any(e.get("stale") for e in errors):
                    failed[zid] = CrowdError(
                        f"refusing to forecast on stale input ({msg}); pass allow_stale=true to "
                        "forecast anyway",
                        field="allow_stale",
                        status=409,
                    )
                else:
                    failed[zid] = CrowdError(f"history: {msg}", field="history")
                continue
            try:
                out = self._zone_result(
                    zone,
                    thr,
                    per_sensor,
                    issue=issue,
                    tz=tz,
                    model=model,
                    mrow=mrow,
                    history_h=history_h,
                    now=now,
                )
            except CrowdError as exc:
                failed[zid] = exc
                continue
            out.update(
                errors=errors,
                events=[e for e in events if e["zone_id"] == zid],
                weather=self._weather_note(wx, model, issue=issue, horizon_h=H),
                school_holidays=None if model.config.school_calendar is None
                else "/".join(x for x in model.config.school_calendar if x),
                skill=[r for r in skill if r["zone_id"] == zid],
                stale_allowed=allow_stale,
                stale=any(
                    float(np.nanmax(fc["data_age_h"])) > self.settings.stale_after_h
                    for _, fc, _ in per_sensor
                ),
            )
            if out["stale"]:
                out["notes"].append("forecast made on stale input (allow_stale=true)")
            done[zid] = out
        if store and done:
            with self.engine.begin() as conn:
                for out in done.values():
                    self._store(conn, out)
        return done, failed

    @staticmethod
    def _weather_note(wx: dict, model: ForecastModel, *, issue: pd.Timestamp, horizon_h: int) -> dict:
        """What the forecast knew of the weather: station, forecast source, and per feature the
        hours ahead taken from the forecast, from persistence, or missing."""
        used = [f for f in WEATHER_FEATURES if f in model.config.extra_features]
        ahead = {f: wx["ahead"][f] for f in used}
        return {
            "used_by_model": bool(used),
            "station": wx["station"],
            "forecast": wx["forecast"],
            "hours_ahead": ahead,
        }

    def _predict_sensors(
        self,
        model: ForecastModel,
        hist: pd.DataFrame,
        streams: list[_Stream],
        *,
        issue: pd.Timestamp,
        cov: pd.DataFrame | None,
        stale_after_h: float | None,
    ) -> tuple[dict[str, pd.DataFrame], dict[str, dict]]:
        """Forecast frames per sensor key and per-sensor errors, with as few ``predict`` calls as
        possible: one call for all sensors; if it refuses (a sensor with too little history),
        the set is halved until the culprits are alone. A single sensor is asked exactly as the
        per-zone path always did, so its refusal (stale first, then history) is the same."""
        H = self.settings.horizon_h
        names = {s.key: s.name for s in streams}
        fcs: dict[str, pd.DataFrame] = {}
        errs: dict[str, dict] = {}

        def one(key: str) -> None:
            try:
                fcs[key] = model.predict(
                    hist,
                    issue_time=issue,
                    horizon_h=H,
                    sensors=[key],
                    covariates=cov,
                    stale_after_h=stale_after_h,
                )
            except StaleInputError as exc:
                errs[key] = {
                    "sensor": key,
                    "field": "allow_stale",
                    "stale": True,
                    "message": f"{names[key]}: {exc}",
                }
            except (InsufficientHistoryError, ForecastError) as exc:
                errs[key] = {"sensor": key, "field": "history", "message": f"{names[key]}: {exc}"}

        def run(keys: list[str]) -> None:
            if not keys:
                return
            if len(keys) == 1:
                one(keys[0])
                return
            try:
                fc = model.predict(
                    hist,
                    issue_time=issue,
                    horizon_h=H,
                    sensors=keys,
                    covariates=cov,
                    stale_after_h=None,  # checked per sensor below: one stale sensor must not sink all
                )
            except ForecastError:
                mid = len(keys) // 2
                run(keys[:mid])
                run(keys[mid:])
                return
            groups = {k: g for k, g in fc.groupby("sensor", sort=False)}
            for key in keys:
                g = groups[key].reset_index(drop=True)
                age = float(g["data_age_h"].iloc[0]) if len(g) else float("nan")
                if stale_after_h is not None and not age <= stale_after_h:
                    # worded as predict's own StaleInputError for this one sensor
                    errs[key] = {
                        "sensor": key,
                        "field": "allow_stale",
                        "stale": True,
                        "message": f"{names[key]}: newest observation older than {stale_after_h} h "
                        f"at {issue} for {[key]}; pass stale_after_h=None to forecast anyway",
                    }
                else:
                    fcs[key] = g

        run([s.key for s in streams])
        return fcs, errs

    def _event_prior(
        self, fc: pd.DataFrame, s: _Stream, cov: pd.DataFrame, mrow: dict
    ) -> pd.DataFrame:
        """Add a stated prior for planned events the model has never seen in training."""
        fc = fc.copy()
        fc["event_visitors"] = 0.0
        c = cov[cov["sensor"] == s.key].set_index("timestamp")["event_visitors"]
        vis = c.reindex(fc["timestamp"]).fillna(0.0).to_numpy()
        fc["event_visitors"] = vis
        if (mrow.get("info") or {}).get("event_hours_in_training", 0) > 0 or not (vis > 0).any():
            return fc
        # not learned: visitors spread over the event (line: each passes once per hour of the
        # event) or half of them present at once (area); widen the upper tail more than the point
        dur = max(1, int((vis > 0).sum()))
        uplift = np.where(vis > 0, vis / dur if s.counting == "line" else vis * 0.5, 0.0)
        for col, k in (
            ("point", 1.0),
            ("q0.025", 0.0),
            ("q0.1", 0.5),
            ("q0.9", 1.5),
            ("q0.975", 2.0),
        ):
            fc[col] = fc[col] + k * uplift
        fc.loc[vis > 0, "method"] = fc.loc[vis > 0, "method"] + "+event_prior"
        return fc

    def _factor(self, s: _Stream, zone: dict) -> float:
        """Sensor unit → people in the zone (density × area): area counter 1, line counter A / (3600 W v)."""
        from citytwin.crowd.levels import FREE_FLOW_SPEED_M_S

        if s.counting == "line":
            if not s.width_m:
                raise CrowdError(
                    f"effective_width_m: line counter {s.name} has no effective width",
                    field="effective_width_m",
                )
            return zone["usable_area_m2"] / (3600.0 * s.width_m * FREE_FLOW_SPEED_M_S)
        return 1.0

    def _zone_result(
        self, zone, thr, per_sensor, *, issue, tz, model, mrow, history_h, now
    ) -> dict:
        area = zone["usable_area_m2"]
        H = self.settings.horizon_h
        sensors_out, dens = [], []
        for s, fc, h in per_sensor:
            f = self._factor(s, zone) / area  # sensor unit → persons/m²
            cthr = count_thresholds(
                thr, counting=s.counting or "zone", area_m2=area, width_m=s.width_m
            )
            qd = {
                0.025: fc["q0.025"].to_numpy(),
                0.1: fc["q0.1"].to_numpy(),
                0.5: fc["point"].to_numpy(),
                0.9: fc["q0.9"].to_numpy(),
                0.975: fc["q0.975"].to_numpy(),
            }
            probs = {
                lv: np.round(exceedance_probability(qd, cthr[lv]), 4)
                for lv in ("amber", "red", "critical")
            }
            hours = []
            col = {c: fc[c].to_numpy() for c in ("point", *_QCOLS, "event_visitors", "lead_h")}
            times = _local_to_utc_iso(fc["timestamp"], tz)
            for j, (ts, method) in enumerate(zip(fc["timestamp"], fc["method"], strict=True)):
                hours.append(
                    {
                        "time": times[j],
                        "local_time": str(ts),
                        "lead_h": int(col["lead_h"][j]),
                        "point": float(col["point"][j]),
                        **{c: float(col[c][j]) for c in _QCOLS},
                        "method": method,
                        "event_visitors": float(col["event_visitors"][j]),
                        "p_levels": {lv: float(probs[lv][j]) for lv in probs},
                        "level": level_of(float(col["point"][j]) * f, thr),
                    }
                )
            hist_rows = h[h["timestamp"] >= issue - pd.Timedelta(hours=history_h)]
            sensors_out.append(
                {
                    "datastream_id": s.id,
                    "sensor": s.key,
                    "name": s.name,
                    "counting": s.counting,
                    "unit": s.unit,
                    "effective_width_m": s.width_m,
                    "origin": s.origin,
                    "to_density": f,
                    "count_thresholds": cthr,
                    "data_age_h": float(fc["data_age_h"].iloc[0]) if len(fc) else None,
                    "history": [
                        {"time": t, "value": float(v)}
                        for t, v in zip(
                            _local_to_utc_iso(hist_rows["timestamp"], tz),
                            hist_rows["count"],
                            strict=True,
                        )
                    ],
                    "hours": hours,
                }
            )
            dens.append((s, col, f, probs))
        # zone: the busiest sensor per hour (the safe side); level probabilities = max over sensors
        zone_hours = []
        for j in range(H):
            cands = [
                (fc["point"][j] * f, k)
                for k, (s, fc, f, _) in enumerate(dens)
                if j < len(fc["point"])
            ]
            if not cands:
                break
            _, k = max(cands)
            s, fc, f, _ = dens[k]
            row = sensors_out[k]["hours"][j]
            p = {
                lv: max(float(d[3][lv][j]) for d in dens if j < len(d[1]["point"]))
                for lv in ("amber", "red", "critical")
            }
            zone_hours.append(
                {
                    "time": row["time"],
                    "local_time": row["local_time"],
                    "lead_h": row["lead_h"],
                    "point": round(float(fc["point"][j]) * f, 4),
                    **{c: round(float(fc[c][j]) * f, 4) for c in _QCOLS},
                    "level": level_of(float(fc["point"][j]) * f, thr),
                    "p_levels": p,
                    "sensor": s.key,
                    "method": row["method"],
                    "event_visitors": row["event_visitors"],
                }
            )
        # zone history: the busiest sensor per hour, in persons/m²
        hist: dict[str, float] = {}
        for so in sensors_out:
            for x in so["history"]:
                hist[x["time"]] = max(hist.get(x["time"], 0.0), x["value"] * so["to_density"])
        primary = max(sensors_out, key=lambda so: len(so["history"]))
        meta = model.metadata
        return {
            "zone_id": zone["id"],
            "name": zone["name"],
            "kind": zone["kind"],
            "usable_area_m2": area,
            "unit": "persons/m²",
            "thresholds": thr,
            "issued_at": now.isoformat(),
            "issue_time_local": str(issue),
            "timezone": tz,
            "horizon_h": H,
            "model_version": meta["version"],
            "training_window": meta["training_window"],
            "intervals": {"80": ["q0.1", "q0.9"], "95": ["q0.025", "q0.975"]},
            "hours": zone_hours,
            "history": [{"time": t, "value": round(v, 4)} for t, v in sorted(hist.items())],
            "sensors": sensors_out,
            "primary_sensor": primary["sensor"],
            "replayed": any(so["origin"] == "replayed" for so in sensors_out),
            "origins": sorted({so["origin"] for so in sensors_out}),
            "method_note": (
                "zone density = busiest counter per hour converted to persons/m² "
                "(line counters: k = N/3600/W/1.3 m/s); level probabilities = max over counters"
            ),
            "notes": [],
        }

    def _store(self, conn: sa.Connection, fc: dict) -> None:
        tw = fc["training_window"]
        issued = datetime.fromisoformat(fc["issued_at"])
        rows = []

        def add(h, *, ds, unit, level, p):
            rows.append(
                dict(
                    zone_id=fc["zone_id"],
                    datastream_id=ds,
                    issued_at=issued,
                    target_time=datetime.fromisoformat(h["time"]),
                    lead_h=h["lead_h"],
                    unit=unit,
                    point=h["point"],
                    q025=h["q0.025"],
                    q10=h["q0.1"],
                    q90=h["q0.9"],
                    q975=h["q0.975"],
                    level=level,
                    p_levels=p,
                    method=h["method"],
                    model_version=fc["model_version"],
                    training_start=tw["start"],
                    training_end=tw["end"],
                    data_age_h=age,
                )
            )

        ages = [so["data_age_h"] for so in fc["sensors"] if so["data_age_h"] is not None]
        age = max(ages) if ages else None
        for h in fc["hours"]:
            add(h, ds=None, unit="persons/m2", level=h["level"], p=h["p_levels"])
        for so in fc["sensors"]:
            age = so["data_age_h"]
            for h in so["hours"]:
                add(h, ds=so["datastream_id"], unit=so["unit"], level=h["level"], p=h["p_levels"])
        if rows:
            conn.execute(crowd_forecasts.insert(), rows)

    def forecast_zone_ids(self) -> list[int]:
        with self.engine.connect() as conn:
            return sorted({s.zone_id for s in self._counters(conn) if s.zone_id is not None})

    def refresh(self, *, now: datetime | None = None) -> dict:
        """Forecast every zone with counters (one batch, :meth:`forecast_all`), store the forecasts,
        raise/close alerts (and publish them)."""
        now = now or datetime.now(UTC)
        skipped, raised = [], []
        nc = {z["zone_id"]: z for z in self.nowcast(now=now)["zones"]}
        try:
            done, failed = self._forecast_batch(
                None, now=now, allow_stale=False, store=True, history_h=48
            )
        except CrowdError as exc:
            if exc.field != "model":
                raise
            ids = self.forecast_zone_ids()
            done, failed = {}, {}
            skipped = [{"zone_id": ids[0], "field": exc.field, "message": str(exc)}] if ids else []
        for zid, exc in sorted(failed.items()):
            skipped.append({"zone_id": zid, "field": exc.field, "message": str(exc)})
        if done:
            with self.engine.begin() as conn:
                for zid, fc in sorted(done.items()):
                    new = A.evaluate_zone(
                        conn,
                        zone=self._zone(conn, zid),
                        forecast=fc,
                        red_now=nc.get(zid, {}).get("level") in ("red", "critical"),
                        policy=self.settings.alert,
                        now=now,
                    )
                    if new is not None:
                        raised.append(new)
        if self.settings.mqtt_url:
            for new in raised:
                A.publish_mqtt(self.settings.mqtt_url, new)
        return {
            "forecast_zones": sorted(done),
            "skipped": skipped,
            "alerts_raised": raised,
            "at": now.isoformat(),
        }

    # ------------------------------------------------------------------ skill
    def compute_skill(self, *, now: datetime | None = None, test_days: int | None = None) -> dict:
        """Backtest on the twin's history: daily origins (midnight, day-ahead) over the last
        ``test_days`` complete days, model trained on everything before; stores skill per sensor and zone."""
        now = now or datetime.now(UTC)
        days = test_days or self.settings.skill_test_days
        with self.engine.connect() as conn:
            country, tz = self._locale(conn)
            streams = self._counters(conn)
            frame = self.hourly(
                conn, streams, start=now - timedelta(days=self.settings.train_days), end=now, tz=tz
            )
        if frame.empty:
            raise CrowdError(
                "history: no counting-camera observations to backtest", field="history"
            )
        last_day = (
            pd.Timestamp(now).tz_convert(tz).tz_localize(None).floor("D") - pd.Timedelta(days=1)
        ).date()
        first_day = last_day - timedelta(days=days - 1)
        res = backtest_frame(
            frame,
            test_start=first_day,
            test_end=last_day,
            seed=self.settings.seed,
            config=self._config(frame[frame["timestamp"] < pd.Timestamp(first_day)], country),
            dataset="twin",
        )
        by_key = {s.key: s for s in streams}
        rows = []
        version = res["model"]["version"]
        zone_acc: dict[int, list[dict]] = {}
        for key, m in res["per_sensor"].items():
            s = by_key[key]
            rows.append(
                dict(
                    zone_id=s.zone_id,
                    datastream_id=s.id,
                    computed_at=now,
                    test_start=str(first_day),
                    test_end=str(last_day),
                    model_version=version,
                    mae=m["mae"],
                    mase=m["mase"],
                    coverage_80=m["coverage_80"],
                    coverage_95=m["coverage_95"],
                    width_95=m["width_95"],
                    n=m["n"],
                    unit=s.unit,
                )
            )
            zone_acc.setdefault(s.zone_id, []).append(m)
        for zid, ms in zone_acc.items():
            n = sum(m["n"] for m in ms)
            avg = {
                k: _weighted(ms, k)
                for k in ("mae", "mase", "coverage_80", "coverage_95", "width_95")
            }
            rows.append(
                dict(
                    zone_id=zid,
                    datastream_id=None,
                    computed_at=now,
                    test_start=str(first_day),
                    test_end=str(last_day),
                    model_version=version,
                    mae=avg["mae"],
                    mase=avg["mase"],
                    coverage_80=avg["coverage_80"],
                    coverage_95=avg["coverage_95"],
                    width_95=avg["width_95"],
                    n=n,
                    unit="sensor units (MAE); MASE unitless",
                )
            )
        with self.engine.begin() as conn:
            conn.execute(crowd_skill.delete())
            if rows:
                conn.execute(crowd_skill.insert(), rows)
        return {
            "test_start": str(first_day),
            "test_end": str(last_day),
            "model_version": version,
            "mae": res["mae"],
            "mase": res["mase"],
            "coverage_80": res["coverage_80"],
            "coverage_95": res["coverage_95"],
            "n": res["n"],
            "baselines": {k: {"mase": v.get("mase")} for k, v in res.get("baselines", {}).items()},
            "per_zone": self.skill()["zones"],
        }

    def _skill_rows(self, conn: sa.Connection, *, zone_id: int | None = None) -> list[dict]:
        q = sa.select(crowd_skill).order_by(crowd_skill.c.zone_id, crowd_skill.c.datastream_id)
        if zone_id is not None:
            q = q.where(crowd_skill.c.zone_id == zone_id)
        out = []
        for r in conn.execute(q):
            d = dict(r._mapping)
            d["computed_at"] = d["computed_at"].isoformat()
            out.append(d)
        return out

    def skill(self) -> dict:
        """Stored skill per zone (``datastream_id`` null) and per sensor."""
        with self.engine.connect() as conn:
            rows = self._skill_rows(conn)
        return {
            "zones": [r for r in rows if r["datastream_id"] is None],
            "sensors": [r for r in rows if r["datastream_id"] is not None],
            "method": "daily origins at local midnight, day-ahead hourly, model trained before the test period; "
            "MASE scaled by the in-sample weekly seasonal naive (m = 168)",
        }

    # ------------------------------------------------------------------ events
    def list_events(
        self,
        *,
        conn: sa.Connection | None = None,
        zone_id: int | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> list[dict]:
        def run(c):
            q = sa.select(crowd_events).order_by(crowd_events.c.start)
            if zone_id is not None:
                q = q.where(crowd_events.c.zone_id == zone_id)
            if start is not None:
                q = q.where(crowd_events.c.end > start)
            if end is not None:
                q = q.where(crowd_events.c.start < end)
            return [_event_json(r) for r in c.execute(q)]

        if conn is not None:
            return run(conn)
        with self.engine.connect() as c:
            return run(c)

    def create_event(self, body: dict, *, user: str, now: datetime | None = None) -> dict:
        vals = self._event_values(body)
        with self.engine.begin() as conn:
            self._zone(conn, vals["zone_id"])
            eid = conn.execute(
                crowd_events.insert().values(
                    **vals, created_by=user, created_at=now or datetime.now(UTC)
                )
            ).inserted_primary_key[0]
            return _event_json(
                conn.execute(sa.select(crowd_events).where(crowd_events.c.id == eid)).first()
            )

    def update_event(self, event_id: int, body: dict) -> dict:
        with self.engine.begin() as conn:
            row = conn.execute(sa.select(crowd_events).where(crowd_events.c.id == event_id)).first()
            if row is None:
                raise CrowdError(f"event_id: no event {event_id}", field="event_id", status=404)
            merged = {**_event_json(row), **body}
            vals = self._event_values(merged)
            self._zone(conn, vals["zone_id"])
            conn.execute(crowd_events.update().where(crowd_events.c.id == event_id).values(**vals))
            return _event_json(
                conn.execute(sa.select(crowd_events).where(crowd_events.c.id == event_id)).first()
            )

    def delete_event(self, event_id: int) -> None:
        with self.engine.begin() as conn:
            if (
                conn.execute(crowd_events.delete().where(crowd_events.c.id == event_id)).rowcount
                == 0
            ):
                raise CrowdError(f"event_id: no event {event_id}", field="event_id", status=404)

    @staticmethod
    def _event_values(body: Any) -> dict:
        if not isinstance(body, dict):
            raise CrowdError(
                "the body must be an object {zone_id, name, start, end, expected_visitors}",
                field="body",
            )
        allowed = {
            "zone_id",
            "name",
            "start",
            "end",
            "expected_visitors",
            "notes",
            "id",
            "created_by",
            "created_at",
        }
        extra = sorted(set(body) - allowed)
        if extra:
            raise CrowdError(f"{extra[0]}: unknown field", field=extra[0])
        for k in ("zone_id", "name", "start", "end", "expected_visitors"):
            if body.get(k) is None:
                raise CrowdError(f"{k}: required", field=k)
        z = body["zone_id"]
        if isinstance(z, bool) or not isinstance(z, int):
            raise CrowdError("zone_id: an integer zone id", field="zone_id")
        name = body["name"]
        if not isinstance(name, str) or not 1 <= len(name.strip()) <= 200:
            raise CrowdError("name: 1–200 characters", field="name")
        v = body["expected_visitors"]
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise CrowdError(
                f"expected_visitors: an integer >= 0, got {v!r}", field="expected_visitors"
            )
        times = {}
        for k in ("start", "end"):
            try:
                t = datetime.fromisoformat(str(body[k]).replace("Z", "+00:00"))
            except ValueError:
                raise CrowdError(f"{k}: an ISO 8601 time, got {body[k]!r}", field=k) from None
            if t.tzinfo is None:
                raise CrowdError(
                    f"{k}: give a time zone (e.g. 2026-06-01T18:00:00+03:00 or ...Z)", field=k
                )
            times[k] = t.astimezone(UTC)
        if times["end"] <= times["start"]:
            raise CrowdError(f"end: {body['end']} is not after start {body['start']}", field="end")
        if times["end"] - times["start"] > timedelta(days=31):
            raise CrowdError("end: an event lasts at most 31 days", field="end")
        return {
            "zone_id": z,
            "name": name.strip(),
            "start": times["start"],
            "end": times["end"],
            "expected_visitors": v,
            "notes": body.get("notes"),
        }

    # ------------------------------------------------------------------ parking
    def parking(self, *, now: datetime | None = None) -> dict:
        """Garages: occupancy now, trend (spaces/h over the last hour), "full in how long" at
        that trend, and the next ``horizon_h`` hours forecast by the garages' own global quantile
        model (trained with the crowd model when a garage has two weeks of hourly history) with
        P(full) per hour. A garage the model cannot forecast gets ``forecast.error`` saying why.
        """
        now = now or datetime.now(UTC)
        pmodel, pinfo = self._parking_model()
        with self.engine.connect() as conn:
            _, tz = self._locale(conn)
            garages = [s for s in self._streams(conn) if s.feed == "parking"]
            forecasts = self._parking_forecasts(conn, pmodel, pinfo, garages, now=now, tz=tz)
            ob = sta_observations
            out = []
            for g in garages:
                rows = conn.execute(
                    sa.select(ob.c.phenomenon_time, ob.c.result_number)
                    .where(
                        ob.c.datastream_id == g.id,
                        ob.c.phenomenon_time >= now - timedelta(hours=1),
                        ob.c.result_number.is_not(None),
                    )
                    .order_by(ob.c.phenomenon_time)
                ).all()
                v, _, t = self._latest(conn, g)
                cap = float(g.capacity or 0)
                slope = None
                if len(rows) >= 3:
                    x = np.array([(r[0] - rows[0][0]).total_seconds() / 3600 for r in rows])
                    y = np.array([r[1] for r in rows], dtype=float)
                    if np.ptp(x) > 0:
                        slope = float(np.polyfit(x, y, 1)[0])
                free = None if v is None else cap - v
                if free is not None and free <= 0:
                    full_in = 0.0
                elif slope is not None and slope > 0 and free is not None:
                    full_in = free / slope * 60.0
                else:
                    full_in = None
                age = None if t is None else (now - t).total_seconds()
                out.append(
                    {
                        "thing_id": g.thing_id,
                        "datastream_id": g.id,
                        "name": g.name,
                        "zone_id": g.zone_id,
                        "origin": g.origin,
                        "capacity": cap,
                        "occupied": v,
                        "free": free,
                        "trend_spaces_per_h": None if slope is None else round(slope, 1),
                        "full_in_min": None if full_in is None else round(full_in, 0),
                        "method": "trend over the last hour"
                        if slope is not None
                        else "too few observations",
                        "age_s": None if age is None else round(age, 1),
                        "stale": age is None
                        or (g.expected_interval_s is not None and age > 2 * g.expected_interval_s),
                        "forecast": forecasts[g.key],
                    }
                )
        return {
            "generated_at": now.isoformat(),
            "garages": out,
            "parking_model": pinfo,
            "note": "full_in_min: minutes until no free space at the last hour's fill rate (null when "
            "emptying or steady); forecast: the next hours by the garages' quantile model, with "
            "P(full) per hour, the first hour whose median forecast is full (full_in_h, 0 = this "
            "hour; full = at most full_free_spaces spaces left) and P(full within the horizon)",
        }

    def _parking_forecasts(
        self,
        conn: sa.Connection,
        model: ForecastModel | None,
        pinfo: dict,
        garages: list[_Stream],
        *,
        now: datetime,
        tz: str,
    ) -> dict[str, dict]:
        """Per garage key: the hourly occupancy forecast with P(full), or ``{"error": why}``."""
        if model is None:
            return {g.key: {"error": f"no parking model: {pinfo['status']}"} for g in garages}
        issue = pd.Timestamp(now).tz_convert(tz).tz_localize(None).floor("h")
        days = max(31, model.history_hours() // 24 + 2)
        hist = self.hourly(conn, garages, start=now - timedelta(days=days), end=now, tz=tz)
        hist = hist[hist["timestamp"] < issue]  # the issue hour is still filling
        have = set(hist["sensor"])
        fcs, errs = self._predict_sensors(
            model, hist, [g for g in garages if g.key in have], issue=issue, cov=None,
            stale_after_h=None,
        )
        out: dict[str, dict] = {}
        version = model.metadata["version"]
        for g in garages:
            if g.key not in have:
                out[g.key] = {"error": f"{g.name}: no occupancy history in {days} days"}
                continue
            if g.key in errs:
                out[g.key] = {"error": errs[g.key]["message"]}
                continue
            fc = fcs[g.key]
            cap = float(g.capacity or 0)
            q = {a: fc[c].to_numpy(dtype=float) for a, c in
                 ((0.025, "q0.025"), (0.1, "q0.1"), (0.5, "point"), (0.9, "q0.9"), (0.975, "q0.975"))}
            # "full" as a garage sign shows it: at most `full_free_spaces` spaces left (a garage
            # property; default 1 % of capacity, at least 1). Occupancy is censored at capacity,
            # so the hour counts as full when the point forecast (the median) reaches that.
            margin = float(g.full_free_spaces or max(1, int(np.ceil(0.01 * cap))))
            x_full = cap - margin + 0.5
            p_full = (exceedance_probability(q, x_full) if cap > 0
                      else np.full(len(fc), np.nan))
            first = np.flatnonzero(q[0.5] >= x_full) if cap > 0 else np.array([], dtype=int)
            times = _local_to_utc_iso(fc["timestamp"], tz)
            out[g.key] = {
                "model_version": version,
                # "model", or "cold_start" (a garage with under two weeks of history: the
                # garages' average hour-of-week profile scaled to its own recent level)
                "method": str(fc["method"].iloc[0]),
                "issue_time_local": str(issue),
                "full_free_spaces": margin,
                "full_in_h": int(first[0]) if len(first) else None,
                "full_at": times[int(first[0])] if len(first) else None,
                "p_full_horizon": None if cap <= 0 else round(float(np.nanmax(p_full)), 4),
                "data_age_h": round(float(fc["data_age_h"].iloc[0]), 2),
                "hours": [
                    {
                        "time": times[j],
                        "lead_h": int(fc["lead_h"].iloc[j]),
                        # occupancy cannot exceed the garage: bands shown clipped to capacity
                        **{c: round(float(np.clip(q[a][j], 0, cap if cap > 0 else np.inf)), 1)
                           for a, c in ((0.025, "q0.025"), (0.1, "q0.1"), (0.5, "point"),
                                        (0.9, "q0.9"), (0.975, "q0.975"))},
                        "p_full": None if cap <= 0 else round(float(p_full[j]), 4),
                    }
                    for j in range(len(fc))
                ],
            }
        return out


def _weighted(metrics: list[dict], key: str) -> float | None:
    """Mean of ``key`` over sensors weighted by their scored hours ``n``."""
    ok = [m for m in metrics if m.get(key) is not None and m["n"]]
    n = sum(m["n"] for m in ok)
    return round(sum(m[key] * m["n"] for m in ok) / n, 4) if n else None


def _event_json(r) -> dict:
    d = dict(r._mapping)
    for k in ("start", "end", "created_at"):
        d[k] = d[k].isoformat() if d.get(k) is not None else None
    return d


class CrowdScheduler:
    """Background thread: refresh forecasts and alerts every ``refresh_s``; retrain when the model
    is older than ``retrain_after_h`` (or absent while two weeks of history exist)."""

    def __init__(self, service: CrowdService) -> None:
        self.service = service
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last: dict | None = None
        self.error: str | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="crowd-scheduler", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout)

    def run_once(self, *, now: datetime | None = None) -> dict:
        now = now or datetime.now(UTC)
        s = self.service.settings
        info = self.service.model_info()
        trained = None
        if info is None or (now - info["created_at"]) > timedelta(hours=s.retrain_after_h):
            try:
                trained = self.service.train(now=now)
            except CrowdError as exc:
                trained = {"error": str(exc), "field": exc.field}
            else:
                # skill is shown beside every forecast: measure it for each new model
                try:
                    trained["skill"] = self.service.compute_skill(now=now)
                except CrowdError as exc:
                    trained["skill"] = {"error": str(exc), "field": exc.field}
        out = {"trained": trained, **self.service.refresh(now=now)}
        self.last = out
        return out

    def _run(self) -> None:
        s = self.service.settings
        if self._stop.wait(s.first_run_delay_s):
            return
        while not self._stop.is_set():
            try:
                self.run_once()
                self.error = None
            except Exception as exc:  # noqa: BLE001 - keep the schedule alive, report the error
                self.error = str(exc)
                log.exception("crowd scheduler run failed")
            if self._stop.wait(s.refresh_s):
                return


def default_settings(app_settings: Any) -> CrowdSettings:
    """Crowd settings from the app's :class:`citytwin.settings.Settings`."""
    return CrowdSettings(
        data_dir=Path(app_settings.data_dir), mqtt_url=getattr(app_settings, "mqtt_url", None),
        school_region=getattr(app_settings, "school_region", None),
    )


def parse_day(value: str, field: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise CrowdError(f"{field}: a date YYYY-MM-DD, got {value!r}", field=field) from None
