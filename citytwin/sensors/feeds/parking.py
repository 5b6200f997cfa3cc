"""Parking garages: capacity and occupancy, with history and a retention per source.

Each garage is a Thing (``building_id`` of the twin's building when it stands in one,
``zone_id`` when given) with one Datastream ``occupancy`` (occupied spaces, a count). The
capacity is a property of the Thing and the Datastream (``validRange: [0, capacity]``), so an
occupancy above capacity is flagged as impossible by the quality report and in the
Observation's ``resultQuality`` — stored, not dropped. Operators may restrict how long dynamic
data is kept (DOMAIN.md §1): ``retention_days`` per source, applied by :func:`apply_retention`.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from citytwin.sensors.feeds._base import (
    COUNT,
    FeedError,
    Source,
    StreamSpec,
    iso_z,
    publish,
    register_source,
)
from citytwin.sensors.ingest import parse_time, recompute_datastream_stats
from citytwin.sensors.schema import sta_datastreams, sta_observations
from citytwin.sensors.service import StaService

DEFAULT_RETENTION_DAYS = 30.0
SENSOR = {"name": "parking guidance system", "description": "occupied spaces counted at the garage's barriers",
          "encodingType": "text/html", "metadata": "https://example.org/citytwin/sensors/parking-guidance"}
OCCUPANCY = {"name": "parking occupancy", "definition": "https://example.org/citytwin/parking-occupancy",
             "description": "occupied parking spaces"}


def register_garage(svc: StaService, *, name: str, lon: float, lat: float, capacity: int, building_id: int | None = None,
                    zone_id: int | None = None, retention_days: float = DEFAULT_RETENTION_DAYS, interval_s: float = 300.0,
                    origin: str = "real", extra: dict | None = None, conn: sa.Connection | None = None) -> Source:
    """Register a garage (idempotent by name); ``capacity`` in spaces, ``retention_days`` > 0."""
    if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity <= 0:
        raise FeedError(f"capacity: the number of spaces, an integer > 0, got {capacity!r}", fields=["capacity"])
    if not (isinstance(retention_days, int | float) and retention_days > 0):
        raise FeedError("retention_days: how long occupancy history is kept, in days (> 0)", fields=["retention_days"])
    if not (isinstance(interval_s, int | float) and interval_s > 0):
        raise FeedError("interval_s: the reporting interval in seconds (> 0)", fields=["interval_s"])
    spec = StreamSpec(key="occupancy", name=f"{name} occupancy", description="occupied spaces", observation_type=COUNT,
                      unit={"name": "parking spaces", "symbol": "{count}", "definition": "http://unitsofmeasure.org/ucum.html"},
                      observed_property=OCCUPANCY,
                      properties={"capacity": capacity, "validRange": [0, capacity], "expectedInterval_s": interval_s,
                                  "retention_days": retention_days})
    props = {"kind": "parking_garage", "capacity": capacity, "building_id": building_id, "zone_id": zone_id,
             "retention_days": float(retention_days), **(extra or {})}
    return register_source(svc, kind="parking", name=name, description="parking garage: capacity and occupancy",
                           lon=lon, lat=lat, properties=props, origin=origin, specs=[spec], sensor=SENSOR, conn=conn)


def occupancy_items(source: Source, payload: Any, *, now: datetime | None = None) -> list[dict]:
    """``{"occupied": n}`` or ``{"free": n}`` (vacant spaces), optional ``time`` → one Observation."""
    now = now or datetime.now(UTC)
    if not isinstance(payload, dict):
        raise FeedError("the body must be a JSON object like {\"occupied\": 120, \"time\": \"...\"}", status=400)
    capacity = int(source.properties["capacity"])
    if ("occupied" in payload) == ("free" in payload):
        raise FeedError("give exactly one of occupied (spaces in use) or free (vacant spaces)", fields=["occupied", "free"])
    key = "occupied" if "occupied" in payload else "free"
    v = payload[key]
    if isinstance(v, bool) or not isinstance(v, int):
        raise FeedError(f"{key}: an integer number of spaces, got {v!r}", fields=[key])
    occupied = v if key == "occupied" else capacity - v
    try:
        t = parse_time(payload["time"], "time") if payload.get("time") is not None else now
    except ValueError as exc:
        raise FeedError(str(exc), fields=["time"]) from None
    item: dict = {"Datastream": {"@iot.id": source.streams["occupancy"]}, "result": occupied,
                  "phenomenonTime": iso_z(t), "parameters": {"capacity": capacity}}
    flags = occupancy_flags(occupied, capacity)
    if flags:
        item["resultQuality"] = {"flags": flags}
    return [item]


def occupancy_flags(occupied: int, capacity: int) -> list[str]:
    """Quality flags of one occupancy value: ``over_capacity`` or ``negative`` (impossible)."""
    flags = []
    if occupied > capacity:
        flags += ["impossible", "over_capacity"]
    if occupied < 0:
        flags += ["impossible", "negative"]
    return flags


def ingest_occupancy(svc: StaService, source: Source, payload: Any) -> list[int]:
    return publish(svc, occupancy_items(source, payload))


def apply_retention(svc: StaService, *, now: datetime | None = None) -> int:
    """Delete occupancy Observations older than their source's ``retention_days``; returns how many."""
    now = now or datetime.now(UTC)
    ds, ob = sta_datastreams, sta_observations
    removed = 0
    with svc.write_transaction() as conn:
        for ds_id, props in conn.execute(sa.select(ds.c.id, ds.c.properties)).all():
            props = props or {}
            if props.get("feed") != "parking" or not props.get("retention_days"):
                continue
            cutoff = now - timedelta(days=float(props["retention_days"]))
            n = conn.execute(ob.delete().where(ob.c.datastream_id == ds_id, ob.c.phenomenon_time < cutoff)).rowcount
            if n:
                recompute_datastream_stats(conn, ds_id)
                removed += n
    return removed
