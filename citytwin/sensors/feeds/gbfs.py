"""Shared mobility from GBFS: 2.3 ``free_bike_status`` or 3.0 ``vehicle_status``.

:func:`parse_gbfs` validates a document (pure; no I/O) and returns the vehicles. Required per
vehicle: its id (``bike_id`` in 2.3, ``vehicle_id`` in 3.0), ``lat``, ``lon``, ``is_reserved``,
``is_disabled`` and ``last_reported`` (2.3: POSIX seconds, an integer; 3.0: an RFC 3339
string). Anything missing or of the wrong type is listed in one :class:`FeedError` (422) and
nothing is stored.

What is stored (no persistent ids: GBFS rotates them after each trip, and we keep none):

* per zone of the twin, the number of *available* vehicles (not reserved, not disabled) —
  one Datastream ``zone:<id>`` per zone, created when a vehicle first appears there; a vehicle
  outside every zone counts for the nearest zone within 250 m, else only in ``total``;
* ``total``: available vehicles in the whole feed;
* ``positions``: one Observation whose result is the list of available vehicles as
  ``[lon, lat, form_factor]`` for the map (no ids), kept for ``POSITIONS_RETENTION_S``.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from citytwin.sensors.feeds._base import (
    ANY,
    COUNT,
    FeedError,
    Source,
    StreamSpec,
    add_streams,
    iso_z,
    publish,
    register_source,
)
from citytwin.sensors.feeds._city import ZoneIndex
from citytwin.sensors.ingest import parse_time, recompute_datastream_stats
from citytwin.sensors.schema import sta_observations
from citytwin.sensors.service import StaService, _WriteCtx

POSITIONS_RETENTION_S = 3600.0
SENSOR = {"name": "GBFS feed reader", "description": "reads a GBFS free_bike_status (2.3) or vehicle_status (3.0) feed",
          "encodingType": "text/html", "metadata": "https://github.com/MobilityData/gbfs"}
AVAILABLE = {"name": "available shared vehicles", "definition": "https://example.org/citytwin/available-shared-vehicles",
             "description": "vehicles neither reserved nor disabled"}
POSITIONS = {"name": "shared vehicle positions", "definition": "https://example.org/citytwin/shared-vehicle-positions",
             "description": "positions of available vehicles, without ids"}
_COUNT_UNIT = {"name": "vehicles", "symbol": "{count}", "definition": "http://unitsofmeasure.org/ucum.html"}


def parse_gbfs(doc: Any) -> dict:
    """Validate a GBFS 2.3/3.0 vehicle document; returns ``{version, last_updated, vehicles}``.

    ``vehicles`` is a list of ``{lon, lat, is_reserved, is_disabled, last_reported, form_factor}``
    (ids are checked, then dropped).

    >>> parse_gbfs({"version": "2.3", "last_updated": 1700000000, "ttl": 60, "data": {"bikes": [
    ...     {"bike_id": "a", "lat": 60.17, "lon": 24.94, "is_reserved": False, "is_disabled": False,
    ...      "last_reported": 1699999990}]}})["vehicles"][0]["lat"]
    60.17
    """
    if not isinstance(doc, dict):
        raise FeedError("a GBFS document must be a JSON object with last_updated, ttl, version and data", status=400)
    data = doc.get("data")
    if not isinstance(data, dict):
        raise FeedError("data: missing (required); a GBFS document holds its vehicles in data.bikes (2.3) "
                        "or data.vehicles (3.0)", fields=["data"])
    version = str(doc.get("version", ""))
    if "vehicles" in data or version.startswith("3"):
        v3, key, id_field = True, "vehicles", "vehicle_id"
    elif "bikes" in data or version.startswith("2"):
        v3, key, id_field = False, "bikes", "bike_id"
    else:
        raise FeedError("data: neither data.bikes (GBFS 2.3 free_bike_status) nor data.vehicles (GBFS 3.0 "
                        "vehicle_status)", fields=["data.bikes", "data.vehicles"])
    rows = data.get(key)
    if not isinstance(rows, list):
        raise FeedError(f"data.{key}: must be a JSON array", fields=[f"data.{key}"])
    missing: list[str] = []
    wrong: list[str] = []
    out = []
    for i, v in enumerate(rows):
        p = f"data.{key}[{i}]"
        if not isinstance(v, dict):
            wrong.append(f"{p} (not an object)")
            continue
        for f in (id_field, "lat", "lon", "is_reserved", "is_disabled", "last_reported"):
            if f not in v or v[f] is None:
                missing.append(f"{p}.{f}")
        if any(m.startswith(p + ".") for m in missing):
            continue
        if not isinstance(v[id_field], str) or not v[id_field]:
            wrong.append(f"{p}.{id_field} (a non-empty string)")
        for f, lo, hi in (("lat", -90, 90), ("lon", -180, 180)):
            x = v[f]
            if isinstance(x, bool) or not isinstance(x, int | float) or not lo <= x <= hi:
                wrong.append(f"{p}.{f} (a number in degrees {lo}..{hi})")
        for f in ("is_reserved", "is_disabled"):
            if not isinstance(v[f], bool):
                wrong.append(f"{p}.{f} (true or false)")
        lr = v["last_reported"]
        if v3:
            try:
                reported = parse_time(lr, "last_reported") if isinstance(lr, str) and "T" in lr else None
            except ValueError:
                reported = None
            if reported is None:
                wrong.append(f"{p}.last_reported (GBFS 3.0: an RFC 3339 time string)")
        else:
            reported = datetime.fromtimestamp(lr, UTC) if isinstance(lr, int) and not isinstance(lr, bool) and lr >= 0 else None
            if reported is None:
                wrong.append(f"{p}.last_reported (GBFS 2.3: POSIX seconds, an integer)")
        if not wrong or not wrong[-1].startswith(p):
            out.append({"lon": float(v["lon"]), "lat": float(v["lat"]), "is_reserved": v["is_reserved"],
                        "is_disabled": v["is_disabled"], "last_reported": reported,
                        "form_factor": v.get("form_factor") or v.get("vehicle_type_id") or "bicycle"})
    if missing or wrong:
        parts = []
        if missing:
            parts.append(f"missing required fields: {', '.join(missing[:20])}" + (f" (+{len(missing) - 20} more)" if len(missing) > 20 else ""))
        if wrong:
            parts.append(f"invalid fields: {', '.join(wrong[:20])}" + (f" (+{len(wrong) - 20} more)" if len(wrong) > 20 else ""))
        raise FeedError(f"GBFS {'3.0 vehicle_status' if v3 else '2.3 free_bike_status'}: " + "; ".join(parts)
                        + "; nothing stored", fields=missing + [w.split(" ")[0] for w in wrong])
    lu = doc.get("last_updated")
    if v3:
        last_updated = parse_time(lu, "last_updated") if isinstance(lu, str) else None
    else:
        last_updated = datetime.fromtimestamp(lu, UTC) if isinstance(lu, int) and not isinstance(lu, bool) else None
    if last_updated is None:
        raise FeedError("last_updated: missing or invalid (2.3: POSIX seconds; 3.0: RFC 3339)", fields=["last_updated"])
    return {"version": "3.0" if v3 else "2.3", "last_updated": last_updated, "vehicles": out}


def register_system(svc: StaService, *, name: str, lon: float, lat: float, city_id: int | None, interval_s: float = 60.0,
                    origin: str = "real", conn: sa.Connection | None = None) -> Source:
    """Register a shared-mobility system (idempotent by name) with its ``total`` and ``positions`` streams."""
    common = {"expectedInterval_s": interval_s}
    specs = [
        StreamSpec(key="total", name=f"{name} available vehicles", description="available vehicles in the feed",
                   observation_type=COUNT, unit=_COUNT_UNIT, observed_property=AVAILABLE, properties=dict(common)),
        StreamSpec(key="positions", name=f"{name} vehicle positions", description="available vehicles [lon, lat, form_factor], no ids",
                   observation_type=ANY, unit={"name": "", "symbol": "", "definition": ""}, observed_property=POSITIONS,
                   properties={**common, "retention_s": POSITIONS_RETENTION_S}),
    ]
    return register_source(svc, kind="gbfs", name=name, description="shared mobility system (GBFS)", lon=lon, lat=lat,
                           properties={"kind": "shared_mobility", "city_id": city_id}, origin=origin, specs=specs,
                           sensor=SENSOR, conn=conn)


def ingest_gbfs(svc: StaService, source: Source, doc: Any, *, zones: ZoneIndex | None, now: datetime | None = None) -> dict:
    """Validate ``doc`` and store counts per zone, the total and the positions; all or nothing."""
    now = now or datetime.now(UTC)
    parsed = parse_gbfs(doc)
    avail = [v for v in parsed["vehicles"] if not v["is_reserved"] and not v["is_disabled"]]
    per_zone: Counter[int] = Counter()
    if zones is not None and avail:
        for z in zones.assign([v["lon"] for v in avail], [v["lat"] for v in avail]):
            if z >= 0:
                per_zone[int(z)] += 1
    t = iso_z(min(parsed["last_updated"], now))
    interval = float(source.properties.get("expectedInterval_s") or 60.0)

    def prepare(conn):
        zone_keys = [f"zone:{z}" for z in sorted(per_zone)]
        new = [z for z in zone_keys if z not in source.streams]
        if new:
            add_streams(conn, svc, _WriteCtx(), source, [
                StreamSpec(key=k, name=f"{source.name} available vehicles in zone {k[5:]}", description="available vehicles in the zone",
                           observation_type=COUNT, unit=_COUNT_UNIT, observed_property=AVAILABLE,
                           properties={"expectedInterval_s": interval, "zone_id": int(k[5:])}) for k in new], sensor=SENSOR)
        items = [{"Datastream": {"@iot.id": ds}, "result": per_zone.get(int(k[5:]), 0), "phenomenonTime": t}
                 for k, ds in sorted(source.streams.items()) if k.startswith("zone:")]
        items.append({"Datastream": {"@iot.id": source.streams["total"]}, "result": len(avail), "phenomenonTime": t,
                      "parameters": {"gbfs_version": parsed["version"], "vehicles_in_feed": len(parsed["vehicles"])}})
        items.append({"Datastream": {"@iot.id": source.streams["positions"]}, "phenomenonTime": t,
                      "result": [[round(v["lon"], 6), round(v["lat"], 6), v["form_factor"]] for v in avail]})
        cutoff = now - timedelta(seconds=POSITIONS_RETENTION_S)
        gone = conn.execute(sta_observations.delete().where(
            sta_observations.c.datastream_id == source.streams["positions"], sta_observations.c.phenomenon_time < cutoff)).rowcount
        if gone:
            recompute_datastream_stats(conn, source.streams["positions"])
        return items

    before = dict(source.streams)
    try:
        publish(svc, [], prepare=prepare)
    except Exception:
        source.streams = before  # streams created in the rolled-back transaction do not exist
        raise
    return {"version": parsed["version"], "vehicles": len(parsed["vehicles"]), "available": len(avail),
            "zones": {str(k): v for k, v in sorted(per_zone.items())}}
