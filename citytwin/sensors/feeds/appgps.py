"""App-GPS visitor counts: accepted ONLY as aggregates per zone-hour, k-anonymised.

A payload is ``{"aggregates": [{"zone_id": 12, "hour": "2025-06-01T14:00:00Z", "count": 37}]}``.
Counts below k (default 15 per zone-hour, DOMAIN.md §1; configurable per source, ``k`` ≥ 2) are
stored as *suppressed*: result null, ``resultQuality: {"suppressed": true, "k": k}`` and the same
in ``parameters`` — the count itself is never stored. Any raw position (lat/lon per device,
device or advertising ids, traces) anywhere in the payload refuses the whole payload (422) and
nothing is stored.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from citytwin.sensors.feeds._base import (
    ANY,
    FeedError,
    Source,
    StreamSpec,
    add_streams,
    iso_z,
    publish,
    register_source,
)
from citytwin.sensors.feeds._city import zone_exists
from citytwin.sensors.ingest import parse_time
from citytwin.sensors.privacy import DEFAULT_K, find_raw_positions, suppress
from citytwin.sensors.service import StaService, _WriteCtx

SENSOR = {"name": "app-GPS panel", "description": "visitor counts per zone-hour aggregated by the panel provider; no positions",
          "encodingType": "text/html", "metadata": "https://example.org/citytwin/sensors/app-gps-aggregates"}
VISITORS = {"name": "visitor count", "definition": "https://example.org/citytwin/visitors-per-zone-hour",
            "description": "distinct app users seen in the zone during the hour (k-anonymised)"}
_UNIT = {"name": "visitors per hour", "symbol": "{count}", "definition": "http://unitsofmeasure.org/ucum.html"}


def register_panel(svc: StaService, *, name: str, lon: float, lat: float, k: int = DEFAULT_K, origin: str = "real",
                   conn: sa.Connection | None = None) -> Source:
    """Register an app-GPS aggregate source (idempotent by name); ``k`` is its suppression threshold."""
    if isinstance(k, bool) or not isinstance(k, int) or k < 2:
        raise FeedError(f"k: the suppression threshold per zone-hour, an integer >= 2 (default {DEFAULT_K}), got {k!r}",
                        fields=["k"])
    return register_source(svc, kind="appgps", name=name, description="app-GPS visitor counts, aggregates per zone-hour",
                           lon=lon, lat=lat, properties={"kind": "app_gps_aggregates", "k": k}, origin=origin, specs=[],
                           sensor=SENSOR, conn=conn)


def parse_aggregates(payload: Any) -> list[dict]:
    """Validate an aggregate payload; raw positions or device ids → FeedError 422."""
    raw = find_raw_positions(payload)
    if raw:
        raise FeedError("raw positions are refused: app-GPS data must arrive as aggregates per zone-hour "
                        f"(zone_id, hour, count); found {', '.join(raw[:10])}; nothing stored", fields=raw[:50])
    if not isinstance(payload, dict) or not isinstance(payload.get("aggregates"), list) or not payload["aggregates"]:
        raise FeedError("aggregates: a non-empty list of {zone_id, hour, count}", status=400, fields=["aggregates"])
    out = []
    for i, a in enumerate(payload["aggregates"]):
        p = f"aggregates[{i}]"
        if not isinstance(a, dict):
            raise FeedError(f"{p}: expected an object {{zone_id, hour, count}}", fields=[p])
        missing = [f"{p}.{f}" for f in ("zone_id", "hour", "count") if f not in a]
        extra = sorted(set(a) - {"zone_id", "hour", "count"})
        if missing:
            raise FeedError(f"missing required fields: {', '.join(missing)}", fields=missing)
        if extra:
            raise FeedError(f"{p}.{extra[0]}: unknown field; accepted: zone_id, hour, count", fields=[f"{p}.{e}" for e in extra])
        z, c = a["zone_id"], a["count"]
        if isinstance(z, bool) or not isinstance(z, int):
            raise FeedError(f"{p}.zone_id: an integer zone id of the twin", fields=[f"{p}.zone_id"])
        if isinstance(c, bool) or not isinstance(c, int) or c < 0:
            raise FeedError(f"{p}.count: an integer >= 0, got {c!r}", fields=[f"{p}.count"])
        try:
            hour = parse_time(a["hour"], f"{p}.hour")
        except ValueError as exc:
            raise FeedError(str(exc), fields=[f"{p}.hour"]) from None
        if hour.minute or hour.second or hour.microsecond:
            raise FeedError(f"{p}.hour: the start of an hour (minutes and seconds 0), got {a['hour']}", fields=[f"{p}.hour"])
        out.append({"zone_id": z, "hour": hour, "count": c})
    return out


def ingest_aggregates(svc: StaService, source: Source, payload: Any) -> dict:
    """Store aggregates, suppressing counts below the source's k; all or nothing."""
    aggs = parse_aggregates(payload)
    k = int(source.properties.get("k", DEFAULT_K))

    def prepare(conn):
        for z in sorted({a["zone_id"] for a in aggs}):
            if not zone_exists(conn, z):
                raise FeedError(f"zone_id: no zone with id {z} in the twin", status=422, fields=["zone_id"])
        new = sorted({f"zone:{a['zone_id']}" for a in aggs} - set(source.streams))
        if new:
            add_streams(conn, svc, _WriteCtx(), source, [
                StreamSpec(key=key, name=f"{source.name} visitors in zone {key[5:]}", description="visitors per zone-hour",
                           observation_type=ANY, unit=_UNIT, observed_property=VISITORS,
                           properties={"expectedInterval_s": 3600.0, "zone_id": int(key[5:]), "k": k, "validRange": [0, None]})
                for key in new], sensor=SENSOR)
        items = []
        for a in aggs:
            result, quality = suppress(a["count"], k=k)
            item = {"Datastream": {"@iot.id": source.streams[f"zone:{a['zone_id']}"]}, "result": result,
                    "phenomenonTime": f"{iso_z(a['hour'])}/{iso_z(a['hour'] + timedelta(hours=1))}",
                    "resultTime": iso_z(datetime.now(UTC)), "parameters": {**quality, "zone_id": a["zone_id"]}}
            if quality["suppressed"]:
                item["resultQuality"] = quality
            items.append(item)
        return items

    before = dict(source.streams)
    try:
        ids = publish(svc, [], prepare=prepare)
    except Exception:
        source.streams = before
        raise
    return {"stored": len(ids), "suppressed": sum(1 for a in aggs if a["count"] < k), "k": k}
