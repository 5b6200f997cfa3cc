"""Road traffic per street segment: speed (km/h) and flow (vehicles/h) → free / busy / jammed.

Each segment source is a Thing tied to one edge of the twin's drive network (``segment_id`` =
``network_edges.id``) with a free-flow speed (``free_flow_kmh``: the edge's ``maxspeed_kmh``,
else 50 km/h in town). The level follows the ratio r = speed / free-flow speed (our convention,
close to the relative-speed bands of traffic-information services):

* r ≥ 0.7 → ``free``
* 0.4 ≤ r < 0.7 → ``busy``
* r < 0.4 → ``jammed``
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from citytwin.sensors.feeds._base import (
    FeedError,
    Source,
    StreamSpec,
    iso_z,
    publish,
    register_source,
)
from citytwin.sensors.feeds._city import edge_midpoint, edge_row
from citytwin.sensors.ingest import parse_time
from citytwin.sensors.service import StaService

FREE_RATIO = 0.7  #: speed / free-flow speed at or above which traffic is free
JAM_RATIO = 0.4  #: below which it is jammed
DEFAULT_FREE_FLOW_KMH = 50.0
LEVELS = ("free", "busy", "jammed")

SENSOR = {"name": "traffic detector", "description": "loop or camera detector: mean speed and flow over all lanes",
          "encodingType": "text/html", "metadata": "https://example.org/citytwin/sensors/traffic-detector"}
SPEED = {"name": "vehicle speed", "definition": "https://example.org/citytwin/vehicle-speed", "description": "mean vehicle speed"}
FLOW = {"name": "vehicle flow", "definition": "https://example.org/citytwin/vehicle-flow", "description": "vehicles passing per hour"}


def traffic_level(speed_kmh: float | None, free_flow_kmh: float) -> str | None:
    """Level from the speed ratio to free-flow speed (None without a speed).

    >>> traffic_level(45, 50), traffic_level(25, 50), traffic_level(10, 50)
    ('free', 'busy', 'jammed')
    """
    if speed_kmh is None or free_flow_kmh <= 0:
        return None
    r = speed_kmh / free_flow_kmh
    return "free" if r >= FREE_RATIO else "busy" if r >= JAM_RATIO else "jammed"


def register_segment(svc: StaService, conn: sa.Connection, *, segment_id: int, interval_s: float = 60.0,
                     origin: str = "real", name: str | None = None) -> Source:
    """Register a detector on one drive-network edge (idempotent per edge)."""
    row = edge_row(conn, segment_id)
    if row is None or row["network"] != "drive":
        raise FeedError(f"segment_id: no drive-network edge with id {segment_id}", status=404, fields=["segment_id"])
    if not (isinstance(interval_s, int | float) and interval_s > 0):
        raise FeedError("interval_s: the reporting interval in seconds (> 0)", fields=["interval_s"])
    free = float(row["maxspeed_kmh"] or DEFAULT_FREE_FLOW_KMH)
    lon, lat = edge_midpoint(row)
    label = name or f"traffic {row['name'] or row['highway']} #{segment_id}"
    common = {"expectedInterval_s": interval_s, "segment_id": segment_id}
    specs = [
        StreamSpec(key="speed", name=f"{label} speed", description="mean speed over all lanes",
                   unit={"name": "kilometre per hour", "symbol": "km/h", "definition": "http://unitsofmeasure.org/ucum.html"},
                   observed_property=SPEED, properties={**common, "validRange": [0, 250], "free_flow_kmh": free}),
        StreamSpec(key="flow", name=f"{label} flow", description="vehicles per hour over all lanes",
                   unit={"name": "vehicles per hour", "symbol": "{vehicle}/h", "definition": "http://unitsofmeasure.org/ucum.html"},
                   observed_property=FLOW, properties={**common, "validRange": [0, 3000 * max(1, row["lanes"] or 1)]}),
    ]
    props = {"kind": "traffic_segment", "segment_id": segment_id, "city_id": row["city_id"], "free_flow_kmh": free,
             "street": row["name"], "highway": row["highway"]}
    return register_source(svc, kind="traffic", name=label, description="road traffic detector on a street segment",
                           lon=lon, lat=lat, properties=props, origin=origin, specs=specs, sensor=SENSOR, conn=conn)


def traffic_items(source: Source, payload: Any, *, now: datetime | None = None) -> list[dict]:
    """``{"speed_kmh": v, "flow_veh_h": q, "time": t?}`` → Observations (the level in parameters)."""
    now = now or datetime.now(UTC)
    if not isinstance(payload, dict):
        raise FeedError("the body must be a JSON object like {\"speed_kmh\": 32, \"flow_veh_h\": 800}", status=400)
    if "speed_kmh" not in payload and "flow_veh_h" not in payload:
        raise FeedError("give speed_kmh and/or flow_veh_h", fields=["speed_kmh", "flow_veh_h"])
    try:
        t = parse_time(payload["time"], "time") if payload.get("time") is not None else now
    except ValueError as exc:
        raise FeedError(str(exc), fields=["time"]) from None
    items = []
    free = float(source.properties.get("free_flow_kmh", DEFAULT_FREE_FLOW_KMH))
    for key, stream in (("speed_kmh", "speed"), ("flow_veh_h", "flow")):
        if key not in payload:
            continue
        v = payload[key]
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise FeedError(f"{key}: a number, got {v!r}", fields=[key])
        item: dict = {"Datastream": {"@iot.id": source.streams[stream]}, "result": float(v), "phenomenonTime": iso_z(t)}
        if stream == "speed":
            item["parameters"] = {"level": traffic_level(max(float(v), 0.0), free), "free_flow_kmh": free}
        if v < 0:
            item["resultQuality"] = {"flags": ["impossible"], "reason": f"negative {key}"}
        items.append(item)
    return items


def ingest_traffic(svc: StaService, source: Source, payload: Any) -> list[int]:
    return publish(svc, traffic_items(source, payload))
