"""The one ingest path for Observations: HTTP (single and dataArray), MQTT, replay and feeds.

:func:`ingest_observations` validates every row (result type against the Datastream's
``observationType``, times, scope of the caller), inserts the valid ones in one batch
(``executemany`` / multi-row ``INSERT``), updates each Datastream's latest observation and
time envelope, and returns per row either the new id or an :class:`IngestError`. The caller's
transaction commit is what acknowledges them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from shapely.geometry import shape

from citytwin.sensors import schema as s

#: Observations may not lie further in the future than this (clock skew allowance).
MAX_FUTURE = timedelta(days=1)

OM = "http://www.opengis.net/def/observationType/OGC-OM/2.0/"
OBSERVATION_TYPES = {
    OM + "OM_Measurement": "number",
    OM + "OM_CountObservation": "integer",
    OM + "OM_TruthObservation": "boolean",
    OM + "OM_CategoryObservation": "string",
    OM + "OM_Observation": "any",
}
_OBS_KEYS = {
    "phenomenonTime", "resultTime", "result", "resultQuality", "validTime", "parameters",
    "Datastream", "FeatureOfInterest", "@iot.id", "@iot.selfLink",
}


class IngestError(ValueError):
    """One observation was refused; ``status`` is the HTTP status it maps to (400 or 403)."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


@dataclass
class Principal:
    """The minimal view of a caller the service needs (duck-compatible with api.deps.Principal)."""

    name: str
    role: str
    kind: str = "user"
    datastreams: frozenset[int] | None = None


def parse_time(value: Any, field: str) -> datetime:
    if not isinstance(value, str):
        raise IngestError(f"{field}: expected an ISO 8601 time string, got {type(value).__name__}")
    try:
        t = datetime.fromisoformat(value[:-1] + "+00:00" if value.endswith("Z") else value)
    except ValueError:
        raise IngestError(f"{field}: not an ISO 8601 time: {value!r}") from None
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


def parse_interval(value: Any, field: str) -> tuple[datetime, datetime | None]:
    """``t`` or ``start/end`` → (start, end or None)."""
    if isinstance(value, str) and "/" in value:
        a, b = value.split("/", 1)
        start, end = parse_time(a, field), parse_time(b, field)
        if end < start:
            raise IngestError(f"{field}: interval end {b} is before its start {a}")
        return start, end
    return parse_time(value, field), None


def result_columns(result: Any, observation_type: str) -> dict:
    """Split a result into kind/number/string/json columns, checking it against the type."""
    expected = OBSERVATION_TYPES.get(observation_type, "any")
    if expected in ("number", "integer"):
        if isinstance(result, bool) or not isinstance(result, int | float):
            raise IngestError(
                f"result: the Datastream's observationType {observation_type.rsplit('/', 1)[-1]} "
                f"needs a number, got {type(result).__name__} {result!r}"[:300]
            )
        if isinstance(result, float) and not math.isfinite(result):
            raise IngestError("result: must be a finite number")
        if expected == "integer" and isinstance(result, float) and not result.is_integer():
            raise IngestError(f"result: OM_CountObservation needs an integer, got {result}")
    elif expected == "boolean" and not isinstance(result, bool):
        raise IngestError(f"result: OM_TruthObservation needs true or false, got {result!r}"[:300])
    elif expected == "string" and not isinstance(result, str):
        raise IngestError(f"result: OM_CategoryObservation needs a string, got {result!r}"[:300])
    if result is None:
        return {"result_kind": s.RESULT_NULL, "result_number": None, "result_string": None, "result_json": None}
    if isinstance(result, bool):
        return {"result_kind": s.RESULT_BOOL, "result_number": float(result), "result_string": None, "result_json": None}
    if isinstance(result, int | float):
        return {"result_kind": s.RESULT_NUMBER, "result_number": float(result), "result_string": None, "result_json": None}
    if isinstance(result, str):
        return {"result_kind": s.RESULT_STRING, "result_number": None, "result_string": result, "result_json": None}
    return {"result_kind": s.RESULT_JSON, "result_number": None, "result_string": None, "result_json": result}


def result_value(row) -> Any:
    kind = row["result_kind"]
    if kind == s.RESULT_NUMBER:
        v = row["result_number"]
        return int(v) if v is not None and v.is_integer() and abs(v) < 2**53 else v
    if kind == s.RESULT_BOOL:
        return bool(row["result_number"])
    if kind == s.RESULT_STRING:
        return row["result_string"]
    if kind == s.RESULT_JSON:
        return row["result_json"]
    return None


def observation_values(body: dict, *, observation_type: str, now: datetime, partial: bool = False) -> dict:
    """Columns of an Observation from its JSON (without the Datastream/FOI links)."""
    unknown = set(body) - _OBS_KEYS
    if unknown:
        raise IngestError(f"{sorted(unknown)[0]}: unknown property of Observation; accepted: "
                          "phenomenonTime, resultTime, result, resultQuality, validTime, parameters, "
                          "Datastream, FeatureOfInterest")
    vals: dict[str, Any] = {}
    if "result" in body:
        vals.update(result_columns(body["result"], observation_type))
    elif not partial:
        raise IngestError("result: missing (required)")
    if "phenomenonTime" in body and body["phenomenonTime"] is not None:
        start, end = parse_interval(body["phenomenonTime"], "phenomenonTime")
        if start > now + MAX_FUTURE:
            raise IngestError(f"phenomenonTime: {body['phenomenonTime']} lies more than 1 day in the future")
        vals["phenomenon_time"], vals["phenomenon_time_end"] = start, end
    elif not partial:
        vals["phenomenon_time"], vals["phenomenon_time_end"] = now, None
    if "resultTime" in body:
        rt = None if body["resultTime"] is None else parse_time(body["resultTime"], "resultTime")
        if rt is not None and rt > now + MAX_FUTURE:
            raise IngestError(f"resultTime: {body['resultTime']} lies more than 1 day in the future")
        vals["result_time"] = rt
    elif not partial:
        vals["result_time"] = None
    if "validTime" in body:
        if body["validTime"] is None:
            vals["valid_time_start"] = vals["valid_time_end"] = None
        else:
            vals["valid_time_start"], vals["valid_time_end"] = parse_interval(body["validTime"], "validTime")
    for key, col in (("resultQuality", "result_quality"), ("parameters", "parameters")):
        if key in body:
            if key == "parameters" and body[key] is not None and not isinstance(body[key], dict):
                raise IngestError("parameters: must be a JSON object")
            vals[col] = body[key]
    return vals


def ref_id(value: Any, field: str) -> int:
    if not isinstance(value, dict) or "@iot.id" not in value:
        raise IngestError(f"{field}: expected {{\"@iot.id\": <id>}}")
    v = value["@iot.id"]
    if isinstance(v, bool) or not isinstance(v, int | str):
        raise IngestError(f"{field}: @iot.id must be an integer")
    try:
        return int(v)
    except ValueError:
        raise IngestError(f"{field}: @iot.id must be an integer, got {v!r}") from None


def check_write_scope(principal, datastream_id: int) -> None:
    """Raise IngestError(403) unless the caller may write Observations of this Datastream."""
    if principal is None:
        return
    if principal.kind == "user":
        if principal.role not in ("operator", "admin"):
            raise IngestError("creating Observations requires role operator or higher", 403)
        return
    if principal.datastreams is None or datastream_id not in principal.datastreams:
        raise IngestError(f"this API key may not write Datastream {datastream_id}", 403)


def bbox_of(geojson: Any) -> dict:
    try:
        geom = geojson.get("geometry") if isinstance(geojson, dict) and geojson.get("type") == "Feature" else geojson
        minx, miny, maxx, maxy = shape(geom).bounds
        return {"minx": minx, "miny": miny, "maxx": maxx, "maxy": maxy}
    except Exception:  # noqa: BLE001 - unparseable geometries have no bbox; validated elsewhere
        return {"minx": None, "miny": None, "maxx": None, "maxy": None}


def _default_feature(conn: sa.Connection, datastream_id: int) -> int | None:
    """The FeatureOfInterest generated from the Datastream's Thing's Location (created once)."""
    ds, tl, loc = s.sta_datastreams, s.sta_thing_locations, s.sta_locations
    row = conn.execute(
        sa.select(loc.c.id, loc.c.name, loc.c.description, loc.c.encoding_type, loc.c.location,
                  loc.c.generated_foi_id)
        .select_from(ds.join(tl, tl.c.thing_id == ds.c.thing_id).join(loc, loc.c.id == tl.c.location_id))
        .where(ds.c.id == datastream_id).order_by(loc.c.id).limit(1)
    ).mappings().first()
    if row is None:
        return None
    if row["generated_foi_id"] is not None:
        return row["generated_foi_id"]
    fid = conn.execute(s.sta_features.insert().values(
        name=row["name"], description=row["description"], encoding_type=row["encoding_type"],
        feature=row["location"], properties=None, **bbox_of(row["location"]),
    )).inserted_primary_key[0]
    conn.execute(loc.update().where(loc.c.id == row["id"]).values(generated_foi_id=fid))
    return fid


def ingest_observations(
    conn: sa.Connection,
    items: Sequence[dict],
    *,
    principal=None,
    now: datetime | None = None,
    create_feature=None,
) -> list[int | IngestError]:
    """Validate and insert Observations given in their STA JSON form.

    Parameters
    ----------
    conn
        A connection inside the caller's transaction; acknowledge only after it commits.
    items
        Observations as dicts, each with ``Datastream: {"@iot.id": n}`` (or a ``datastream_id``
        key set by the caller) and ``result``.
    principal
        The caller; None for trusted internal callers (replay, feeds).
    create_feature
        ``f(conn, body) -> id`` for a nested FeatureOfInterest (deep insert); refused when None.

    Returns
    -------
    Per item, the new Observation id or the IngestError that refused it (nothing stored for it).
    """
    now = now or datetime.now(UTC)
    out: list[int | IngestError] = [IngestError("not processed")] * len(items)
    streams: dict[int, tuple[str, int | None] | None] = {}
    default_foi: dict[int, int | None] = {}
    rows: list[dict] = []
    positions: list[int] = []
    pending: list[tuple[int, dict]] = []
    for i, item in enumerate(items):
        try:
            if not isinstance(item, dict):
                raise IngestError("an Observation must be a JSON object")
            ds_id = item.get("datastream_id")
            if ds_id is None:
                if "Datastream" not in item:
                    raise IngestError("Datastream: missing (required), e.g. \"Datastream\": {\"@iot.id\": 1}")
                ds_id = ref_id(item["Datastream"], "Datastream")
            check_write_scope(principal, ds_id)
            pending.append((i, item | {"datastream_id": ds_id}))
        except IngestError as exc:
            out[i] = exc
    need = {it["datastream_id"] for _, it in pending} - set(streams)
    if need:
        ds = s.sta_datastreams
        for row in conn.execute(sa.select(ds.c.id, ds.c.observation_type).where(ds.c.id.in_(sorted(need)))):
            streams[row.id] = (row.observation_type, None)
    for i, item in pending:
        try:
            ds_id = item.pop("datastream_id")
            meta = streams.get(ds_id)
            if meta is None:
                raise IngestError(f"Datastream: no Datastream with @iot.id {ds_id}", 404)
            vals = observation_values(item, observation_type=meta[0], now=now)
            foi = item.get("FeatureOfInterest")
            if foi is None:
                if ds_id not in default_foi:
                    default_foi[ds_id] = _default_feature(conn, ds_id)
                fid = default_foi[ds_id]
            elif isinstance(foi, dict) and "@iot.id" in foi:
                fid = ref_id(foi, "FeatureOfInterest")
            elif isinstance(foi, dict) and create_feature is not None:
                fid = create_feature(conn, foi)
            else:
                raise IngestError("FeatureOfInterest: expected {\"@iot.id\": <id>} or an entity")
            vals["datastream_id"] = ds_id
            vals["feature_id"] = fid
            vals.setdefault("valid_time_start", None)
            vals.setdefault("valid_time_end", None)
            vals.setdefault("result_quality", None)
            vals.setdefault("parameters", None)
            rows.append(vals)
            positions.append(i)
        except IngestError as exc:
            out[i] = exc
    if not rows:
        return out
    fois = {r["feature_id"] for r in rows if r["feature_id"] is not None}
    if fois:
        found = set(conn.execute(sa.select(s.sta_features.c.id).where(s.sta_features.c.id.in_(sorted(fois)))).scalars())
        if fois - found:
            bad = fois - found
            keep = [(r, p) for r, p in zip(rows, positions, strict=True) if r["feature_id"] not in bad]
            for r, p in zip(rows, positions, strict=True):
                if r["feature_id"] in bad:
                    out[p] = IngestError(f"FeatureOfInterest: no FeatureOfInterest with @iot.id {r['feature_id']}", 404)
            rows = [r for r, _ in keep]
            positions = [p for _, p in keep]
            if not rows:
                return out
    ids = insert_rows(conn, rows)
    for p, new_id in zip(positions, ids, strict=True):
        out[p] = new_id
    update_datastream_stats(conn, rows, ids, now=now)
    return out


def insert_rows(conn: sa.Connection, rows: list[dict]) -> list[int]:
    """Insert prepared observation rows in one batch; returns their ids in input order."""
    stmt = s.sta_observations.insert().returning(s.sta_observations.c.id, sort_by_parameter_order=True)
    if len(rows) == 1:
        return [conn.execute(stmt, rows[0]).scalar_one()]
    return list(conn.execute(stmt, rows).scalars())


def update_datastream_stats(conn: sa.Connection, rows: Iterable[dict], ids: Iterable[int], *, now: datetime) -> None:
    """Per Datastream: extend the time envelope and move the latest observation forward."""
    per: dict[int, dict] = {}
    for r, oid in zip(rows, ids, strict=True):
        st = per.get(r["datastream_id"])
        t0 = r["phenomenon_time"]
        t1 = r["phenomenon_time_end"] or t0
        rt = r["result_time"]
        if st is None:
            per[r["datastream_id"]] = {"min": t0, "max": t1, "last": (t0, oid), "rmin": rt, "rmax": rt}
            continue
        st["min"] = min(st["min"], t0)
        st["max"] = max(st["max"], t1)
        if (t0, oid) > st["last"]:
            st["last"] = (t0, oid)
        if rt is not None:
            st["rmin"] = rt if st["rmin"] is None else min(st["rmin"], rt)
            st["rmax"] = rt if st["rmax"] is None else max(st["rmax"], rt)
    ds = s.sta_datastreams
    for ds_id, st in per.items():
        cur = conn.execute(
            sa.select(ds.c.phenomenon_time_start, ds.c.phenomenon_time_end, ds.c.last_phenomenon_time,
                      ds.c.result_time_start, ds.c.result_time_end).where(ds.c.id == ds_id)
        ).first()
        vals: dict[str, Any] = {"last_received_at": now}
        if cur.phenomenon_time_start is None or st["min"] < cur.phenomenon_time_start:
            vals["phenomenon_time_start"] = st["min"]
        if cur.phenomenon_time_end is None or st["max"] > cur.phenomenon_time_end:
            vals["phenomenon_time_end"] = st["max"]
        if cur.last_phenomenon_time is None or st["last"][0] >= cur.last_phenomenon_time:
            vals["last_phenomenon_time"], vals["last_observation_id"] = st["last"]
        if st["rmin"] is not None and (cur.result_time_start is None or st["rmin"] < cur.result_time_start):
            vals["result_time_start"] = st["rmin"]
        if st["rmax"] is not None and (cur.result_time_end is None or st["rmax"] > cur.result_time_end):
            vals["result_time_end"] = st["rmax"]
        conn.execute(ds.update().where(ds.c.id == ds_id).values(**vals))


def recompute_datastream_stats(conn: sa.Connection, datastream_id: int) -> None:
    """Recompute the envelope and latest observation from scratch (after updates or deletes)."""
    ob, ds = s.sta_observations, s.sta_datastreams
    agg = conn.execute(
        sa.select(sa.func.min(ob.c.phenomenon_time), sa.func.max(sa.func.coalesce(ob.c.phenomenon_time_end, ob.c.phenomenon_time)),
                  sa.func.min(ob.c.result_time), sa.func.max(ob.c.result_time))
        .where(ob.c.datastream_id == datastream_id)
    ).first()
    last = conn.execute(
        sa.select(ob.c.id, ob.c.phenomenon_time).where(ob.c.datastream_id == datastream_id)
        .order_by(ob.c.phenomenon_time.desc(), ob.c.id.desc()).limit(1)
    ).first()
    conn.execute(ds.update().where(ds.c.id == datastream_id).values(
        phenomenon_time_start=agg[0], phenomenon_time_end=agg[1], result_time_start=agg[2], result_time_end=agg[3],
        last_observation_id=last.id if last else None, last_phenomenon_time=last.phenomenon_time if last else None,
    ))
