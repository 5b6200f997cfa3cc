"""What every feed shares: SensorThings entity specs, idempotent registration, atomic ingest.

A feed *source* is one Thing (with a Location) whose Datastreams each carry a ``stream`` key
in their properties (``occupancy``, ``speed``, ``zone:12`` …). Sources are found again by their
Thing name, so registering twice returns the same ids. Every Thing, Sensor and Datastream says
where its data comes from in ``properties.origin`` (``real``, ``replayed`` or ``simulated``) and
the matching boolean (``simulated: true`` / ``replayed: true``), which
:mod:`citytwin.sensors.quality` and :func:`citytwin.hazard.weather.latest_wind` read.

Observations of a feed payload go through :func:`citytwin.sensors.ingest.ingest_observations`
(the one ingest path) in ONE transaction: a payload is stored entirely or not at all.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from citytwin.sensors.ingest import OM, IngestError, ingest_observations
from citytwin.sensors.model import ENTITIES
from citytwin.sensors.schema import (
    sta_datastreams,
    sta_observed_properties,
    sta_sensors,
    sta_things,
)
from citytwin.sensors.service import StaService, _WriteCtx

ORIGINS = ("real", "replayed", "simulated")
COUNT = OM + "OM_CountObservation"
MEASUREMENT = OM + "OM_Measurement"
ANY = OM + "OM_Observation"
UCUM = "http://unitsofmeasure.org/ucum.html"


class FeedError(ValueError):
    """A feed payload or source spec was refused; nothing was stored.

    ``status`` is the HTTP status (400 malformed, 403 scope, 404 unknown source, 422 invalid
    content); ``fields`` names the offending fields (e.g. ``data.bikes[3].lat``).
    """

    def __init__(self, message: str, *, status: int = 422, fields: list[str] | None = None):
        super().__init__(message)
        self.status = status
        self.fields = fields or []


@dataclass(frozen=True)
class StreamSpec:
    """One Datastream of a source (its Sensor and ObservedProperty are shared by name)."""

    key: str
    name: str
    description: str
    unit: dict
    observed_property: dict
    observation_type: str = MEASUREMENT
    properties: dict = field(default_factory=dict)


@dataclass
class Source:
    """A registered feed source: its Thing and Datastreams (by stream key)."""

    thing_id: int
    name: str
    kind: str
    properties: dict
    streams: dict[str, int]

    def as_json(self) -> dict:
        return {"thing_id": self.thing_id, "name": self.name, "kind": self.kind, "origin": self.properties.get("origin"),
                "properties": self.properties, "datastreams": self.streams}


def origin_labels(origin: str, *, detail: str | None = None) -> dict:
    """Properties that label where data comes from: ``origin`` plus ``simulated``/``replayed``."""
    if origin not in ORIGINS:
        raise FeedError(f"origin: must be one of {', '.join(ORIGINS)}, got {origin!r}", fields=["origin"])
    out: dict[str, Any] = {"origin": origin, "simulated": origin == "simulated", "replayed": origin == "replayed"}
    if detail:
        out["origin_detail"] = detail
    return out


def _label_text(origin: str) -> str:
    return {"simulated": " (SIMULATED data)", "replayed": " (REPLAYED real data)"}.get(origin, "")


def _sensor_ref(conn, svc: StaService, ctx, sensor: dict) -> dict:
    row = conn.execute(sa.select(sta_sensors.c.id).where(sta_sensors.c.name == sensor["name"],
                                                        sta_sensors.c.metadata == sensor["metadata"],
                                                        sta_sensors.c.description == sensor["description"])
                       .order_by(sta_sensors.c.id).limit(1)).scalar()
    if row is not None:
        return {"@iot.id": row}
    return {"@iot.id": svc.create(conn, ENTITIES["Sensor"], sensor, ctx)}


def _op_ref(conn, svc: StaService, ctx, op: dict) -> dict:
    row = conn.execute(sa.select(sta_observed_properties.c.id).where(
        sta_observed_properties.c.name == op["name"], sta_observed_properties.c.definition == op["definition"])
        .order_by(sta_observed_properties.c.id).limit(1)).scalar()
    if row is not None:
        return {"@iot.id": row}
    return {"@iot.id": svc.create(conn, ENTITIES["ObservedProperty"], op, ctx)}


def find_source(conn: sa.Connection, *, name: str | None = None, thing_id: int | None = None) -> Source | None:
    """A source by Thing name or id (None when absent or not a feed source)."""
    q = sa.select(sta_things.c.id, sta_things.c.name, sta_things.c.properties)
    q = q.where(sta_things.c.name == name) if thing_id is None else q.where(sta_things.c.id == thing_id)
    row = conn.execute(q.order_by(sta_things.c.id).limit(1)).first()
    if row is None:
        return None
    props = row.properties or {}
    streams: dict[str, int] = {}
    for ds_id, ds_props in conn.execute(sa.select(sta_datastreams.c.id, sta_datastreams.c.properties)
                                        .where(sta_datastreams.c.thing_id == row.id).order_by(sta_datastreams.c.id)):
        key = (ds_props or {}).get("stream")
        if key is not None:
            streams[key] = ds_id
    return Source(thing_id=row.id, name=row.name, kind=props.get("feed", props.get("kind", "")), properties=props,
                  streams=streams)


def add_streams(conn, svc: StaService, ctx, source: Source, specs: list[StreamSpec], *, sensor: dict) -> None:
    """Create the Datastreams of ``specs`` that ``source`` lacks (idempotent)."""
    origin = source.properties.get("origin", "real")
    labels = {k: source.properties[k] for k in ("origin", "simulated", "replayed") if k in source.properties}
    sensor_body = {**sensor, "properties": {**sensor.get("properties", {}), **labels}}
    sensor_body["description"] = sensor_body["description"] + _label_text(origin)
    sref = None
    for spec in specs:
        if spec.key in source.streams:
            continue
        sref = sref or _sensor_ref(conn, svc, ctx, sensor_body)
        body = {
            "name": spec.name, "description": spec.description + _label_text(origin),
            "observationType": spec.observation_type, "unitOfMeasurement": spec.unit,
            "properties": {**spec.properties, **labels, "stream": spec.key, "feed": source.kind},
            "Thing": {"@iot.id": source.thing_id}, "Sensor": sref,
            "ObservedProperty": _op_ref(conn, svc, ctx, spec.observed_property),
        }
        source.streams[spec.key] = svc.create(conn, ENTITIES["Datastream"], body, ctx)


def register_source(svc: StaService, *, kind: str, name: str, description: str, lon: float, lat: float,
                    properties: dict, origin: str, specs: list[StreamSpec], sensor: dict,
                    location_name: str | None = None, conn: sa.Connection | None = None) -> Source:
    """Create (or find) a feed source's Thing, Location and Datastreams; returns the Source."""
    check_lon_lat(lon, lat)
    properties = dict(properties)
    labels = origin_labels(origin, detail=properties.pop("origin_detail", None))
    props = {**properties, **labels, "feed": kind}

    def _do(c):
        ctx = _WriteCtx()
        src = find_source(c, name=name)
        if src is None:
            tid = svc.create(c, ENTITIES["Thing"], {
                "name": name, "description": description + _label_text(origin), "properties": props,
                "Locations": [{"name": location_name or name, "description": description,
                               "encodingType": "application/geo+json",
                               "location": {"type": "Point", "coordinates": [float(lon), float(lat)]}}],
            }, ctx)
            src = Source(thing_id=tid, name=name, kind=kind, properties=props, streams={})
        add_streams(c, svc, ctx, src, specs, sensor=sensor)
        svc._flush(c, ctx)
        return src

    if conn is not None:
        return _do(conn)
    with svc.write_transaction() as c:
        return _do(c)


def check_lon_lat(lon: Any, lat: Any, field_prefix: str = "") -> None:
    for name, v, lo, hi in (("lon", lon, -180, 180), ("lat", lat, -90, 90)):
        if isinstance(v, bool) or not isinstance(v, int | float) or not lo <= v <= hi:
            raise FeedError(f"{field_prefix}{name}: a number in degrees {lo}..{hi} (EPSG:4326), got {v!r}",
                            fields=[f"{field_prefix}{name}"])


def ingest_all(svc: StaService, conn: sa.Connection, items: list[dict]) -> list[int]:
    """Ingest ``items`` through the one ingest path inside ``conn``'s transaction, all or nothing.

    Raises FeedError (which rolls the caller's transaction back) when any row is refused.
    """
    if not items:
        return []
    res = ingest_observations(conn, items)
    errors = [(i, r) for i, r in enumerate(res) if isinstance(r, IngestError)]
    if errors:
        i, err = errors[0]
        raise FeedError(f"observation {i}: {err} ({len(errors)} of {len(items)} refused; nothing stored)",
                        status=err.status if err.status in (400, 403, 404) else 422)
    return [int(r) for r in res]


def publish(svc: StaService, items: list[dict], *, prepare=None) -> list[int]:
    """One transaction: ``prepare(conn) -> items`` (e.g. lazily created streams) then ingest.

    Listeners of the service (the MQTT bridge) are told after the commit, as for any ingest.
    """
    with svc.write_transaction() as conn:
        if prepare is not None:
            items = prepare(conn)
        ids = ingest_all(svc, conn, items)
        events = svc._events(conn, _WriteCtx(created_ids=[(ENTITIES["Observation"], i) for i in ids]), svc.base_url)
    svc.notify(events)
    return ids


def iso_z(t) -> str:
    return t.isoformat().replace("+00:00", "Z")
