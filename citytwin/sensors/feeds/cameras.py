"""People-counting cameras: counts per interval, per zone (area count) or per line (flow).

A line counter measures flow, not density (DOMAIN.md §2): its Thing carries the line's
effective width ``effective_width_m`` so that q = N_hour / 60 / W (persons/m/min) can be
derived. Cameras send counts, never images.
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
from citytwin.sensors.feeds._city import zone_exists
from citytwin.sensors.ingest import parse_time
from citytwin.sensors.service import StaService

SENSOR = {"name": "people-counting camera", "description": "counts people per interval on the device; sends counts, never images",
          "encodingType": "text/html", "metadata": "https://example.org/citytwin/sensors/counting-camera"}
PEOPLE = {"name": "pedestrian count", "definition": "https://example.org/citytwin/pedestrian-count",
          "description": "people counted in the interval (crossing the line, or present in the zone)"}


def count_stream(*, interval_s: float, expected_interval_s: float | None = None, counting: str) -> StreamSpec:
    return StreamSpec(
        key="count", name="people count", observation_type=COUNT,
        description="people crossing the counting line per interval" if counting == "line" else "people in the zone per interval",
        unit={"name": "count", "symbol": "{count}", "definition": "http://unitsofmeasure.org/ucum.html"},
        observed_property=PEOPLE,
        properties={"interval_s": interval_s, "expectedInterval_s": expected_interval_s or interval_s, "validRange": [0, None]},
    )


def register_camera(svc: StaService, *, name: str, lon: float, lat: float, zone_id: int | None, counting: str = "zone",
                    effective_width_m: float | None = None, interval_s: float = 60.0, origin: str = "real",
                    expected_interval_s: float | None = None, description: str | None = None,
                    sensor: dict | None = None, extra: dict | None = None,
                    conn: sa.Connection | None = None) -> Source:
    """Register a counting camera (idempotent by name).

    ``counting`` is ``zone`` (people in the zone) or ``line`` (people crossing a line whose
    effective width ``effective_width_m`` (m, > 0) is required).
    """
    if counting not in ("zone", "line"):
        raise FeedError("counting: 'zone' or 'line'", fields=["counting"])
    if counting == "line" and not (isinstance(effective_width_m, int | float) and effective_width_m > 0):
        raise FeedError("effective_width_m: a line counter needs the line's effective width in metres (> 0)",
                        fields=["effective_width_m"])
    if not (isinstance(interval_s, int | float) and interval_s > 0):
        raise FeedError("interval_s: the counting interval in seconds (> 0)", fields=["interval_s"])
    if zone_id is not None and conn is not None and not zone_exists(conn, zone_id):
        raise FeedError(f"zone_id: no zone with id {zone_id}", status=404, fields=["zone_id"])
    props: dict[str, Any] = {"kind": "counting_camera", "counting": counting, "zone_id": zone_id, **(extra or {})}
    if effective_width_m is not None:
        props["effective_width_m"] = float(effective_width_m)
    return register_source(svc, kind="camera", name=name,
                           description=description or f"people-counting camera ({counting} count)",
                           lon=lon, lat=lat, properties=props, origin=origin,
                           specs=[count_stream(interval_s=interval_s, counting=counting, expected_interval_s=expected_interval_s)],
                           sensor=sensor or SENSOR, conn=conn)


def count_items(source: Source, payload: Any, *, now: datetime | None = None) -> list[dict]:
    """``{"counts": [{"start": t, "end": t?, "count": n}]}`` (or one such object) → Observations.

    A negative count is stored and flagged (``resultQuality.flags: ["impossible"]``), not dropped.
    """
    now = now or datetime.now(UTC)
    rows = payload.get("counts") if isinstance(payload, dict) and "counts" in payload else [payload]
    if not isinstance(rows, list) or not rows:
        raise FeedError("counts: a non-empty list of {start, end, count}", status=400, fields=["counts"])
    interval = timedelta(seconds=float(source.properties.get("interval_s", 60)))
    items = []
    for i, r in enumerate(rows):
        f = f"counts[{i}]"
        if not isinstance(r, dict):
            raise FeedError(f"{f}: expected an object", status=400, fields=[f])
        missing = [k for k in ("start", "count") if k not in r]
        if missing:
            raise FeedError(f"{f}: missing {', '.join(missing)}", fields=[f"{f}.{k}" for k in missing])
        c = r["count"]
        if isinstance(c, bool) or not isinstance(c, int):
            raise FeedError(f"{f}.count: an integer number of people, got {c!r}", fields=[f"{f}.count"])
        try:
            start = parse_time(r["start"], f"{f}.start")
            end = parse_time(r["end"], f"{f}.end") if r.get("end") is not None else start + interval
        except ValueError as exc:
            raise FeedError(str(exc), fields=[f]) from None
        item = {"Datastream": {"@iot.id": source.streams["count"]}, "result": c,
                "phenomenonTime": f"{iso_z(start)}/{iso_z(end)}", "resultTime": iso_z(now)}
        if c < 0:
            item["resultQuality"] = {"flags": ["impossible"], "reason": "negative count"}
        items.append(item)
    return items


def ingest_counts(svc: StaService, source: Source, payload: Any) -> list[int]:
    return publish(svc, count_items(source, payload))
