"""The feeds service core (no web framework): register sources, ingest payloads, read views.

The router (:mod:`citytwin.api.routers.feeds`) parses HTTP and calls these functions; the demo
generators (:mod:`citytwin.sensors.demo`) call the same registration and ingest functions.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from citytwin.sensors.feeds import appgps, cameras, gbfs, parking, traffic, weather
from citytwin.sensors.feeds._base import FeedError, Source, find_source
from citytwin.sensors.feeds._city import ZoneIndex, building_at, first_city
from citytwin.sensors.ingest import result_value
from citytwin.sensors.quality import quality_report
from citytwin.sensors.schema import (
    sta_datastreams,
    sta_locations,
    sta_observations,
    sta_observed_properties,
    sta_thing_locations,
    sta_things,
)
from citytwin.sensors.service import StaService
from citytwin.store.schema import network_edges

KINDS = ("camera", "parking", "traffic", "gbfs", "weather", "appgps")
STALE_FACTOR = 2.0  #: a stream is stale when its newest observation is older than this × its expected interval


def _num(spec: dict, key: str, default=None, *, kind=float):
    v = spec.get(key, default)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int | float) or (kind is int and not isinstance(v, int)):
        raise FeedError(f"{key}: expected {'an integer' if kind is int else 'a number'}, got {v!r}", fields=[key])
    return kind(v)


def register_from_spec(svc: StaService, spec: Any) -> Source:
    """Register a source from ``{"kind": ..., "name": ..., ...}`` (see docs/sensors.md §Feeds)."""
    if not isinstance(spec, dict):
        raise FeedError("the body must be a JSON object with kind and name", status=400)
    kind = spec.get("kind")
    if kind not in KINDS:
        raise FeedError(f"kind: one of {', '.join(KINDS)}, got {kind!r}", fields=["kind"])
    name = spec.get("name")
    if not isinstance(name, str) or not 2 <= len(name) <= 200:
        raise FeedError("name: 2–200 characters", fields=["name"])
    origin = spec.get("origin", "real")
    with svc.write_transaction() as conn:
        if kind == "traffic":
            return traffic.register_segment(svc, conn, segment_id=_num(spec, "segment_id", kind=int),
                                            interval_s=_num(spec, "interval_s", 60.0), origin=origin, name=name)
        lon, lat = spec.get("lon"), spec.get("lat")
        from citytwin.sensors.feeds._base import check_lon_lat

        check_lon_lat(lon, lat)
        if kind == "camera":
            return cameras.register_camera(svc, name=name, lon=lon, lat=lat, zone_id=_num(spec, "zone_id", kind=int),
                                           counting=spec.get("counting", "zone"),
                                           effective_width_m=_num(spec, "effective_width_m"),
                                           interval_s=_num(spec, "interval_s", 60.0), origin=origin, conn=conn)
        if kind == "parking":
            city = first_city(conn)
            b = spec.get("building_id")
            if b is None and city is not None:
                hit = building_at(conn, city_id=city["id"], lon=lon, lat=lat)
                b = hit["id"] if hit else None
            return parking.register_garage(svc, name=name, lon=lon, lat=lat, capacity=spec.get("capacity"),
                                           building_id=b, zone_id=_num(spec, "zone_id", kind=int),
                                           retention_days=_num(spec, "retention_days", parking.DEFAULT_RETENTION_DAYS),
                                           interval_s=_num(spec, "interval_s", 300.0), origin=origin, conn=conn)
        if kind == "weather":
            return weather.register_station(svc, name=name, lon=lon, lat=lat,
                                            interval_s=_num(spec, "interval_s", 3600.0 if spec.get("forecast") else 600.0),
                                            origin=origin, forecast=spec.get("forecast", False), conn=conn)
        if kind == "gbfs":
            city = first_city(conn)
            return gbfs.register_system(svc, name=name, lon=lon, lat=lat, city_id=city["id"] if city else None,
                                        interval_s=_num(spec, "interval_s", 60.0), origin=origin, conn=conn)
        return appgps.register_panel(svc, name=name, lon=lon, lat=lat, k=spec.get("k", appgps.DEFAULT_K), origin=origin,
                                     conn=conn)


def load_source(engine: sa.Engine, *, kind: str, source_id: int) -> Source:
    with engine.connect() as conn:
        src = find_source(conn, thing_id=source_id)
    if src is None or src.kind != kind:
        raise FeedError(f"source: no {kind} source with id {source_id} (register one with POST /api/feeds/sources)",
                        status=404, fields=["source"])
    return src


def check_scope(principal, source: Source) -> None:
    """Operators may post any source; an API key only a source one of whose Datastreams it may write."""
    if principal is None:
        return
    if principal.kind == "user":
        if principal.role not in ("operator", "admin"):
            raise FeedError("posting feed data requires role operator or an API key of the source", status=403)
        return
    if not principal.datastreams or not set(principal.datastreams) & set(source.streams.values()):
        raise FeedError(f"this API key may not write source {source.thing_id} ({source.name})", status=403)


def ingest_payload(svc: StaService, source: Source, payload: Any, *,
                   zone_index: Callable[[int | None], ZoneIndex | None] = lambda _c: None) -> dict:
    """Store one feed payload of ``source`` through the ingest path (all or nothing)."""
    if source.kind == "camera":
        return {"stored": len(cameras.ingest_counts(svc, source, payload))}
    if source.kind == "parking":
        return {"stored": len(parking.ingest_occupancy(svc, source, payload))}
    if source.kind == "traffic":
        return {"stored": len(traffic.ingest_traffic(svc, source, payload))}
    if source.kind == "weather":
        return {"stored": len(weather.ingest_weather(svc, source, payload))}
    if source.kind == "gbfs":
        return gbfs.ingest_gbfs(svc, source, payload, zones=zone_index(source.properties.get("city_id")))
    if source.kind == "appgps":
        return appgps.ingest_aggregates(svc, source, payload)
    raise FeedError(f"source {source.thing_id} is not a feed source", status=404)


# ------------------------------------------------------------------------------ read views


def origin_of(props: dict | None) -> str:
    p = props or {}
    if p.get("origin") in ("real", "replayed", "simulated"):
        return p["origin"]
    if p.get("simulated"):
        return "simulated"
    if p.get("replayed"):
        return "replayed"
    return "real"


def _age(t: datetime | None, now: datetime) -> float | None:
    return None if t is None else round((now - t).total_seconds(), 1)


def _stale(age: float | None, interval: float | None) -> bool | None:
    if interval is None:
        return None
    return age is None or age > STALE_FACTOR * float(interval)


def _things(conn) -> dict[int, dict]:
    out = {r.id: {"thing_id": r.id, "name": r.name, "description": r.description, "properties": r.properties or {}}
           for r in conn.execute(sa.select(sta_things.c.id, sta_things.c.name, sta_things.c.description, sta_things.c.properties))}
    tl, loc = sta_thing_locations, sta_locations
    for tid, geo in conn.execute(sa.select(tl.c.thing_id, loc.c.location).select_from(tl.join(loc, loc.c.id == tl.c.location_id))
                                 .order_by(tl.c.thing_id, loc.c.id)):
        t = out.get(tid)
        if t is not None and "location" not in t:
            g = geo.get("geometry", geo) if isinstance(geo, dict) else None
            t["location"] = g.get("coordinates") if isinstance(g, dict) and g.get("type") == "Point" else None
    return out


def _streams(conn, *, thing_ids: list[int] | None = None) -> list[dict]:
    ds, ob, op = sta_datastreams, sta_observations, sta_observed_properties
    q = (sa.select(ds.c.id, ds.c.name, ds.c.thing_id, ds.c.unit_of_measurement, ds.c.properties, ds.c.last_phenomenon_time,
                   ds.c.observation_type, op.c.name.label("op"), ob.c.result_kind, ob.c.result_number, ob.c.result_string,
                   ob.c.result_json, ob.c.result_quality, ob.c.parameters, ob.c.phenomenon_time_end)
         .select_from(ds.join(op, op.c.id == ds.c.observed_property_id).outerjoin(ob, ob.c.id == ds.c.last_observation_id))
         .order_by(ds.c.id))
    if thing_ids is not None:
        q = q.where(ds.c.thing_id.in_(thing_ids))
    return [dict(r) for r in conn.execute(q).mappings()]


def sensors_overview(conn: sa.Connection, *, now: datetime | None = None) -> dict:
    """Every Thing with its Datastreams: latest value, age, stale flag, quality flags, origin."""
    now = now or datetime.now(UTC)
    things = _things(conn)
    quality = {q["datastream_id"]: q for q in quality_report(conn, now=now)}
    for t in things.values():
        t["datastreams"] = []
    for s in _streams(conn):
        t = things.get(s["thing_id"])
        if t is None:
            continue
        props = s["properties"] or {}
        q = quality.get(s["id"], {})
        value = result_value(s) if s["result_kind"] is not None else None
        if props.get("stream") == "positions" and isinstance(value, list):
            value = len(value)
        last = s["last_phenomenon_time"]
        age = _age(last, now)
        interval = props.get("expectedInterval_s")
        flags = []
        if q.get("impossible"):
            flags.append("impossible")
        if q.get("outliers"):
            flags.append("outlier")
        if q.get("gaps"):
            flags.append("gaps")
        rq = s["result_quality"] or {}
        if isinstance(rq, dict):
            if rq.get("suppressed"):
                flags.append("suppressed")
            flags += [f"latest:{f}" for f in rq.get("flags", [])]
        t["datastreams"].append({
            "id": s["id"], "name": s["name"], "observed_property": s["op"], "stream": props.get("stream"),
            "unit": (s["unit_of_measurement"] or {}).get("symbol"), "value": value,
            "phenomenon_time": last.isoformat() if last else None, "age_s": age,
            "expected_interval_s": interval, "stale": _stale(age, interval), "flags": flags,
            "quality": {k: q.get(k) for k in ("n", "impossible", "outliers", "gaps", "valid_range")},
        })
    out = []
    for t in things.values():
        p = t["properties"]
        ages = [d["age_s"] for d in t["datastreams"] if d["age_s"] is not None]
        loc = t.get("location")
        out.append({
            "thing_id": t["thing_id"], "name": t["name"], "description": t["description"],
            "kind": p.get("kind"), "feed": p.get("feed"), "origin": origin_of(p),
            "zone_id": p.get("zone_id"), "segment_id": p.get("segment_id"), "building_id": p.get("building_id"),
            "lon": loc[0] if loc else None, "lat": loc[1] if loc else None,
            "age_s": min(ages) if ages else None,
            "stale": any(d["stale"] for d in t["datastreams"]),
            "flags": sorted({f for d in t["datastreams"] for f in d["flags"]}),
            "datastreams": t["datastreams"],
        })
    counts: dict[str, int] = {}
    for t in out:
        counts[t["origin"]] = counts.get(t["origin"], 0) + 1
    return {"generated_at": now.isoformat(), "origins": counts, "things": out}


def _feed_things(conn, feed: str) -> list[dict]:
    return [t for t in _things(conn).values() if t["properties"].get("feed") == feed]


def _downsample(rows: list, n: int) -> list:
    if len(rows) <= n:
        return rows
    step = len(rows) / n
    return [rows[int(i * step)] for i in range(n - 1)] + [rows[-1]]


def parking_view(conn: sa.Connection, *, now: datetime | None = None, hours: float = 24.0, points: int = 120) -> dict:
    """Garages: occupancy now, capacity, free spaces, age, stale flag and history (last ``hours`` h)."""
    now = now or datetime.now(UTC)
    things = _feed_things(conn, "parking")
    streams = {s["thing_id"]: s for s in _streams(conn, thing_ids=[t["thing_id"] for t in things])
               if (s["properties"] or {}).get("stream") == "occupancy"}
    ob = sta_observations
    out = []
    for t in things:
        p, s = t["properties"], streams.get(t["thing_id"])
        cap = int(p.get("capacity") or 0)
        occ = None if s is None or s["result_kind"] is None else result_value(s)
        age = _age(s["last_phenomenon_time"], now) if s else None
        hist = []
        if s is not None:
            rows = conn.execute(sa.select(ob.c.phenomenon_time, ob.c.result_number).where(
                ob.c.datastream_id == s["id"], ob.c.phenomenon_time >= now - timedelta(hours=hours))
                .order_by(ob.c.phenomenon_time)).all()
            hist = [[r[0].isoformat(), r[1]] for r in _downsample(rows, points)]
        loc = t.get("location") or [None, None]
        out.append({
            "thing_id": t["thing_id"], "name": t["name"], "origin": origin_of(p), "lon": loc[0], "lat": loc[1],
            "building_id": p.get("building_id"), "zone_id": p.get("zone_id"), "capacity": cap,
            "occupied": occ, "free": None if occ is None else cap - occ,
            "occupancy_ratio": None if occ is None or not cap else round(occ / cap, 3),
            "over_capacity": occ is not None and occ > cap,
            "observed_at": s["last_phenomenon_time"].isoformat() if s and s["last_phenomenon_time"] else None,
            "age_s": age, "stale": _stale(age, (s["properties"] or {}).get("expectedInterval_s") if s else None),
            "retention_days": p.get("retention_days"), "datastream_id": s["id"] if s else None, "history": hist,
        })
    return {"generated_at": now.isoformat(), "garages": out}


def traffic_view(conn: sa.Connection, *, now: datetime | None = None) -> dict:
    """Street segments with a traffic source: GeoJSON of the edges with level now and age."""
    now = now or datetime.now(UTC)
    things = _feed_things(conn, "traffic")
    by_thing: dict[int, dict[str, dict]] = {}
    for s in _streams(conn, thing_ids=[t["thing_id"] for t in things]):
        by_thing.setdefault(s["thing_id"], {})[(s["properties"] or {}).get("stream")] = s
    seg_ids = [t["properties"].get("segment_id") for t in things]
    edges = {r.id: r for r in conn.execute(sa.select(network_edges.c.id, network_edges.c.name, network_edges.c.geometry)
                                           .where(network_edges.c.id.in_([i for i in seg_ids if i is not None])))}
    feats = []
    for t in things:
        p = t["properties"]
        e = edges.get(p.get("segment_id"))
        if e is None:
            continue
        st = by_thing.get(t["thing_id"], {})
        sp, fl = st.get("speed"), st.get("flow")
        speed = result_value(sp) if sp and sp["result_kind"] is not None else None
        flow = result_value(fl) if fl and fl["result_kind"] is not None else None
        free = float(p.get("free_flow_kmh") or traffic.DEFAULT_FREE_FLOW_KMH)
        age = _age(sp["last_phenomenon_time"], now) if sp else None
        feats.append({"type": "Feature", "id": e.id, "geometry": json.loads(e.geometry), "properties": {
            "segment_id": e.id, "thing_id": t["thing_id"], "name": e.name or t["name"], "origin": origin_of(p),
            "speed_kmh": speed, "flow_veh_h": flow, "free_flow_kmh": free,
            "level": traffic.traffic_level(None if speed is None else max(speed, 0.0), free),
            "observed_at": sp["last_phenomenon_time"].isoformat() if sp and sp["last_phenomenon_time"] else None,
            "age_s": age, "stale": _stale(age, (sp["properties"] or {}).get("expectedInterval_s") if sp else None)}})
    return {"type": "FeatureCollection", "features": feats, "generated_at": now.isoformat(),
            "levels": {"free": f"speed >= {traffic.FREE_RATIO} x free-flow", "busy": f"{traffic.JAM_RATIO}-{traffic.FREE_RATIO}",
                       "jammed": f"< {traffic.JAM_RATIO}"}}


def vehicles_view(conn: sa.Connection, *, now: datetime | None = None) -> dict:
    """Available shared vehicles of the latest feed of every GBFS source (no ids)."""
    now = now or datetime.now(UTC)
    things = _feed_things(conn, "gbfs")
    feats = []
    systems = []
    for s in _streams(conn, thing_ids=[t["thing_id"] for t in things]):
        if (s["properties"] or {}).get("stream") != "positions":
            continue
        t = next(t for t in things if t["thing_id"] == s["thing_id"])
        age = _age(s["last_phenomenon_time"], now)
        stale = _stale(age, (s["properties"] or {}).get("expectedInterval_s"))
        rows = s["result_json"] if isinstance(s["result_json"], list) else []
        systems.append({"thing_id": t["thing_id"], "name": t["name"], "origin": origin_of(t["properties"]),
                        "available": len(rows), "age_s": age, "stale": stale})
        for i, r in enumerate(rows):
            feats.append({"type": "Feature", "id": len(feats), "geometry": {"type": "Point", "coordinates": [r[0], r[1]]},
                          "properties": {"system": t["name"], "form_factor": r[2] if len(r) > 2 else None,
                                         "origin": origin_of(t["properties"]), "age_s": age, "stale": stale}})
            del i
    return {"type": "FeatureCollection", "features": feats, "systems": systems, "generated_at": now.isoformat()}


def list_sources(conn: sa.Connection) -> list[dict]:
    out = []
    for t in _things(conn).values():
        if t["properties"].get("feed") in KINDS:
            src = find_source(conn, thing_id=t["thing_id"])
            if src is not None:
                out.append(src.as_json() | {"location": t.get("location")})
    return out
