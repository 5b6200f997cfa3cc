"""The one ingest path for Observations: HTTP (single and dataArray), MQTT, replay and feeds.

:func:`ingest_observations` validates every row (result type against the Datastream's
``observationType``, times, scope of the caller), inserts the valid ones in one batch
(``executemany`` / multi-row ``INSERT``), updates each Datastream's latest observation and
time envelope, and returns per row either the new id or an :class:`IngestError`. The caller's
transaction commit is what acknowledges them.
"""

from __future__ import annotations

import itertools
import json
import math
import operator
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
        try:
            result = float(result)
        except OverflowError:
            raise IngestError("result: out of the range of a double (about ±1.8e308)") from None
        return {"result_kind": s.RESULT_NUMBER, "result_number": result, "result_string": None, "result_json": None}
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
    return _default_features(conn, [datastream_id]).get(datastream_id)


def _default_features(conn: sa.Connection, datastream_ids) -> dict[int, int | None]:
    """Per Datastream, the FeatureOfInterest generated from its Thing's first Location (one query)."""
    ds, tl, loc = s.sta_datastreams, s.sta_thing_locations, s.sta_locations
    out: dict[int, int | None] = dict.fromkeys(datastream_ids)
    rows = conn.execute(  # the Location itself is read only where its feature is still to be made
        sa.select(ds.c.id, loc.c.id, loc.c.generated_foi_id)
        .select_from(ds.join(tl, tl.c.thing_id == ds.c.thing_id).join(loc, loc.c.id == tl.c.location_id))
        .where(ds.c.id.in_(sorted(out))).order_by(ds.c.id, loc.c.id)
    ).all()
    made: dict[int, int] = {}  # Location id → FeatureOfInterest generated in this call
    seen: set[int] = set()
    for ds_id, loc_id, generated in rows:
        if ds_id in seen:
            continue  # the first Location (lowest id) of the Thing
        seen.add(ds_id)
        fid = generated or made.get(loc_id)
        if fid is None:
            row = conn.execute(sa.select(loc.c.name, loc.c.description, loc.c.encoding_type, loc.c.location)
                               .where(loc.c.id == loc_id)).one()
            fid = conn.execute(s.sta_features.insert().values(
                name=row.name, description=row.description, encoding_type=row.encoding_type,
                feature=row.location, properties=None, **bbox_of(row.location),
            )).inserted_primary_key[0]
            conn.execute(loc.update().where(loc.c.id == loc_id).values(generated_foi_id=fid))
            made[loc_id] = fid
        out[ds_id] = fid
    return out


#: Columns of an Observation row in the order of the tuples built by the ingest path.
COLUMNS = ("datastream_id", "feature_id", "phenomenon_time", "phenomenon_time_end", "result_time",
           "valid_time_start", "valid_time_end", "result_kind", "result_number", "result_string",
           "result_json", "result_quality", "parameters")
#: Keys handled by the fast path of :func:`ingest_observations`; anything else takes the general path.
_FAST_KEYS = frozenset({"Datastream", "datastream_id", "phenomenonTime", "result", "resultTime",
                        "FeatureOfInterest", "@iot.id", "@iot.selfLink"})
#: dataArray components read by the column fast path of :func:`ingest_data_array`.
_FAST_COMPONENTS = frozenset({"phenomenonTime", "result", "resultTime"})
_NUMERIC = frozenset({"number", "integer", "any"})
_DEFAULT_FOI = object()
_fromiso = datetime.fromisoformat


class _Slow(Exception):
    """The fast path does not apply; use :func:`observation_values` (exact errors)."""


def _fast_time(value: Any) -> datetime:
    if type(value) is not str or "/" in value:
        raise _Slow
    t = _fromiso(value[:-1] + "+00:00" if value[-1:] == "Z" else value)
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


def _row_of(vals: dict, ds_id: int, fid) -> list:
    return [ds_id, fid, vals["phenomenon_time"], vals["phenomenon_time_end"], vals["result_time"],
            vals.get("valid_time_start"), vals.get("valid_time_end"), vals["result_kind"], vals["result_number"],
            vals["result_string"], vals["result_json"], vals.get("result_quality"), vals.get("parameters")]


def ingest_observations(
    conn: sa.Connection,
    items: Sequence[dict],
    *,
    principal=None,
    now: datetime | None = None,
    create_feature=None,
    rows_out: list | None = None,
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
    rows_out
        If given, ``(id, row)`` of every stored Observation is appended (``row`` in the order of
        :data:`COLUMNS`, Python values), e.g. to build notifications without reading them back.

    Returns
    -------
    Per item, the new Observation id or the IngestError that refused it (nothing stored for it).

    Notes
    -----
    Common rows (a numeric or string ``result``, a ``phenomenonTime`` instant, ``resultTime``,
    a FeatureOfInterest by id or none) are validated inline; any other row goes through
    :func:`observation_values`, which also produces the error message of a refused row.
    """
    now = now or datetime.now(UTC)
    out, rows, positions = _prepare(conn, items, principal=principal, now=now, create_feature=create_feature)
    if rows:
        encode = _row_encoder(conn.dialect.name)
        _store(conn, [encode(r) for r in rows], positions, out, now=now, rows_out=rows_out, python_rows=rows)
    return out


def ingest_data_array(
    conn: sa.Connection,
    groups: Sequence[tuple[int, Sequence[str], Sequence]],
    *,
    principal=None,
    now: datetime | None = None,
    rows_out: list | None = None,
) -> list[int | IngestError]:
    """Validate and insert Observations given as dataArray groups (the body of ``/CreateObservations``).

    Parameters
    ----------
    conn
        A connection inside the caller's transaction; acknowledge only after it commits.
    groups
        ``(datastream id, components, rows)`` per group: components as in SensorThings
        (``phenomenonTime``, ``result``, ``resultTime``, ``resultQuality``, ``validTime``,
        ``parameters``, ``FeatureOfInterest/id``, ``id`` (ignored)), each row a list of as many
        values.
    principal, now, rows_out
        As for :func:`ingest_observations`.

    Returns
    -------
    Per row, in order over all groups, the new Observation id or the IngestError that refused it.

    Notes
    -----
    Rows of a group with components among ``phenomenonTime``, ``result`` and ``resultTime``, of a
    Datastream with a numeric, string or untyped ``observationType``, are validated column by
    column and built directly in the form the database stores (on SQLite the time text SQLAlchemy
    writes, cut from the input when it is already UTC). Any other row becomes an Observation dict
    for the general path of :func:`ingest_observations`, so both accept, refuse and store alike.
    """
    now = now or datetime.now(UTC)
    limit = now + MAX_FUTURE
    out: list[int | IngestError | None] = [None] * sum(len(g[2]) for g in groups)
    refused: dict[int, IngestError] = {}
    for ds_id, _, _ in groups:
        if ds_id not in refused:
            try:
                check_write_scope(principal, ds_id)
            except IngestError as exc:
                refused[ds_id] = exc
    types = _observation_types(conn, {d for d, _, _ in groups if d not in refused})
    expected_of = {d: OBSERVATION_TYPES.get(t, "any") for d, t in types.items()}
    fast_streams = {d for d, comps, arr in groups if arr and d in expected_of and not refused.get(d)
                    and _fast_group(comps, expected_of[d])}
    defaults = _default_features(conn, fast_streams) if fast_streams else {}
    time_text = _time_text_encoder(conn.dialect.name)
    encode = _row_encoder(conn.dialect.name)
    now_stored = encode([0, None, now, None, None, None, None, 0, None, None, None, None, None])[2]
    rows: list = []  # stored rows in input order; None where the general path decides
    positions: list[int] = []
    slow_items: list[dict] = []
    slow_at: list[int] = []  # index in rows of each slow item
    number, string, fromiso, isfinite, slow, utc = s.RESULT_NUMBER, s.RESULT_STRING, _fromiso, math.isfinite, _Slow, UTC
    pos = 0
    for ds_id, comps, arr in groups:
        n = len(comps)
        err = refused.get(ds_id)
        if err is None and ds_id not in expected_of:
            err = IngestError(f"Datastream: no Datastream with @iot.id {ds_id}", 404)
        if err is not None:
            out[pos : pos + len(arr)] = [err] * len(arr)
            pos += len(arr)
            continue
        fast = ds_id in fast_streams
        if fast:
            expected = expected_of[ds_id]
            numeric, integer, stringy = expected in _NUMERIC, expected == "integer", expected in ("string", "any")
            fid = defaults[ds_id]
            ir = comps.index("result")
            ip = comps.index("phenomenonTime") if "phenomenonTime" in comps else -1
            irt = comps.index("resultTime") if "resultTime" in comps else -1
            bulk = _bulk_rows(arr, n, ds_id, fid, ir, ip, irt, numeric=numeric, integer=integer, stringy=stringy,
                              limit=limit, now_stored=now_stored, sqlite=conn.dialect.name == "sqlite")
            if bulk is not None:
                rows.extend(bulk)
                positions.extend(range(pos, pos + len(arr)))
                pos += len(arr)
                continue
        for j, row in enumerate(arr):
            if type(row) is not list or len(row) != n:
                out[pos + j] = IngestError(f"dataArray: a row must be an array of {n} values, one per component")
                continue
            if fast:
                try:
                    r = row[ir]
                    tr = type(r)
                    if tr is float:
                        if not numeric or not isfinite(r) or (integer and not r.is_integer()):
                            raise slow
                        kind, num, text = number, r, None
                    elif tr is int:
                        if not numeric:
                            raise slow
                        kind, num, text = number, float(r), None
                    elif tr is str:
                        if not stringy:
                            raise slow
                        kind, num, text = string, None, r
                    else:
                        raise slow
                    pt = now_stored
                    if ip >= 0:
                        v = row[ip]
                        if v is not None:
                            if type(v) is not str or "/" in v:
                                raise slow
                            t = fromiso(v[:-1] + "+00:00" if v[-1:] == "Z" else v)
                            t = t.replace(tzinfo=utc) if t.tzinfo is None else t.astimezone(utc)
                            if t > limit:
                                raise slow
                            pt = time_text(v, t)
                    rt = None
                    if irt >= 0:
                        v = row[irt]
                        if v is not None:
                            if type(v) is not str or "/" in v:
                                raise slow
                            t = fromiso(v[:-1] + "+00:00" if v[-1:] == "Z" else v)
                            t = t.replace(tzinfo=utc) if t.tzinfo is None else t.astimezone(utc)
                            if t > limit:
                                raise slow
                            rt = time_text(v, t)
                    rows.append((ds_id, fid, pt, None, rt, None, None, kind, num, text, "null", "null", "null"))
                    positions.append(pos + j)
                    continue
                except (slow, ValueError, OverflowError):
                    pass
            item: dict[str, Any] = {"datastream_id": ds_id}
            for c, v in zip(comps, row, strict=True):
                if c == "FeatureOfInterest/id":
                    item["FeatureOfInterest"] = {"@iot.id": v}
                elif c != "id":
                    item[c] = v
            slow_at.append(len(rows))
            slow_items.append(item)
            rows.append(None)
            positions.append(pos + j)
        pos += len(arr)
    if slow_items:
        sout, srows, spos = _prepare(conn, slow_items, principal=principal, now=now, create_feature=None, types=types)
        for k, res in enumerate(sout):
            out[positions[slow_at[k]]] = res
        for r, k in zip(srows, spos, strict=True):
            rows[slow_at[k]] = encode(r)
        if len(srows) < len(slow_items):
            keep = [k for k, r in enumerate(rows) if r is not None]
            rows = [rows[k] for k in keep]
            positions = [positions[k] for k in keep]
    if rows:
        _store(conn, rows, positions, out, now=now, rows_out=rows_out)
    return out  # type: ignore[return-value]


_tzinfo = operator.attrgetter("tzinfo")
_is_integer = float.is_integer


def _bulk_rows(arr: list, n: int, ds_id: int, fid, ir: int, ip: int, irt: int, *, numeric: bool, integer: bool,
               stringy: bool, limit: datetime, now_stored, sqlite: bool) -> list[tuple] | None:
    """The stored rows of a whole fast-path group, checked column by column (loops in C).

    None when any row needs a closer look (a malformed row, a value of another type, a
    non-finite number, a time that is absent, an interval, not UTC, in the far future, or not in
    one of the layouts cut by :func:`_sqlite_time_text`): the caller then checks row by row, and
    accepts, refuses and stores exactly as that path does.
    """
    if not arr or set(map(type, arr)) != {list} or set(map(len, arr)) != {n}:
        return None
    vals = list(map(operator.itemgetter(ir), arr))
    kinds = set(map(type, vals))
    try:
        if numeric and kinds <= {float, int}:
            if not all(map(math.isfinite, vals)):
                return None
            if int in kinds:
                vals = list(map(float, vals))
            if integer and not all(map(_is_integer, vals)):
                return None
            kind, nums, texts = s.RESULT_NUMBER, vals, itertools.repeat(None)
        elif stringy and kinds == {str}:
            kind, nums, texts = s.RESULT_STRING, itertools.repeat(None), vals
        else:
            return None
        pts = itertools.repeat(now_stored)
        if ip >= 0:
            pts = _bulk_times(list(map(operator.itemgetter(ip), arr)), limit, sqlite)
            if pts is None:
                return None
        rts = itertools.repeat(None)
        if irt >= 0:
            rts = _bulk_times(list(map(operator.itemgetter(irt), arr)), limit, sqlite)
            if rts is None:
                return None
    except (TypeError, ValueError, OverflowError):
        return None
    rep, null = itertools.repeat, itertools.repeat("null")
    return list(zip(rep(ds_id), rep(fid), pts, rep(None), rts, rep(None), rep(None), rep(kind), nums, texts,
                    null, null, null))


def _bulk_times(values: list, limit: datetime, sqlite: bool) -> list | None:
    """Stored forms of a column of instants in UTC (see :func:`_time_text_encoder`), or None.

    Raises TypeError or ValueError for a value that is not an ISO 8601 instant.
    """
    times = list(map(_fromiso, values))
    if set(map(_tzinfo, times)) != {UTC} or max(times) > limit:
        return None
    if not sqlite:
        return times
    lengths = set(map(len, values))
    if len(lengths) != 1:
        return None
    size, k = lengths.pop(), len(values)
    joined = "".join(values)  # the j-th character of every value: joined[j::size]
    if joined[size - 1 :: size] == "Z" * k:
        m = size - 1
    elif size > 6 and not joined[size - 6 :: size].strip("+-") and joined[size - 3 :: size] == ":" * k:
        m = size - 6
    else:
        return None
    if any(joined[j::size] != c * k for j, c in ((4, "-"), (7, "-"), (13, ":"), (16, ":"))):
        return None
    if m == 19:
        return [f"{v[:10]} {v[11:19]}.000000" for v in values]
    if m in (23, 26) and joined[19::size] == "." * k:
        tail = "000" if m == 23 else ""
        return [f"{v[:10]} {v[11:m]}{tail}" for v in values]
    return None


def _fast_group(components: Sequence[str], expected: str) -> bool:
    """Whether the column fast path applies (else every row takes the general path)."""
    names = set(components)
    return ("result" in names and names <= _FAST_COMPONENTS and len(names) == len(components)
            and expected != "boolean")


def _observation_types(conn: sa.Connection, ids) -> dict[int, str]:
    """``observationType`` of the Datastreams that exist among ``ids`` (one query per 1,000)."""
    out: dict[int, str] = {}
    need = sorted(ids)
    ds = s.sta_datastreams
    for b in range(0, len(need), 1000):
        for row in conn.execute(sa.select(ds.c.id, ds.c.observation_type).where(ds.c.id.in_(need[b : b + 1000]))):
            out[row.id] = row.observation_type
    return out


def _prepare(conn: sa.Connection, items: Sequence[dict], *, principal, now: datetime, create_feature,
             types: dict[int, str] | None = None) -> tuple[list, list[list], list[int]]:
    """Validate Observation dicts: per item an IngestError, or a row (Python values) and its position."""
    limit = now + MAX_FUTURE
    out: list[int | IngestError] = [IngestError("not processed")] * len(items)
    scope: dict[int, IngestError | None] = {}
    pending: list[tuple[int, dict, int]] = []
    for i, item in enumerate(items):
        try:
            if not isinstance(item, dict):
                raise IngestError("an Observation must be a JSON object")
            ds_id = item.get("datastream_id")
            if ds_id is None:
                if "Datastream" not in item:
                    raise IngestError("Datastream: missing (required), e.g. \"Datastream\": {\"@iot.id\": 1}")
                ds_id = ref_id(item["Datastream"], "Datastream")
            if ds_id not in scope:
                try:
                    check_write_scope(principal, ds_id)
                    scope[ds_id] = None
                except IngestError as exc:
                    scope[ds_id] = exc
            if scope[ds_id] is not None:
                raise IngestError(str(scope[ds_id]), scope[ds_id].status)
            pending.append((i, item, ds_id))
        except IngestError as exc:
            out[i] = exc
    if not pending:
        return out, [], []
    streams = types if types is not None else _observation_types(conn, {d for _, _, d in pending})
    expected_of = {d: OBSERVATION_TYPES.get(t, "any") for d, t in streams.items()}
    rows: list[list] = []
    positions: list[int] = []
    explicit_foi: set[int] = set()
    need_default: set[int] = set()
    fast_keys, numeric, fromiso, slow = _FAST_KEYS, _NUMERIC, _fromiso, _Slow
    for i, item, ds_id in pending:
        try:
            expected = expected_of.get(ds_id)
            if expected is None:
                raise IngestError(f"Datastream: no Datastream with @iot.id {ds_id}", 404)
            row = None
            if item.keys() <= fast_keys:
                try:
                    r = item["result"]
                    tr = type(r)
                    if tr is float:
                        if expected not in numeric or not math.isfinite(r) or (expected == "integer" and not r.is_integer()):
                            raise slow
                        res = (s.RESULT_NUMBER, r, None)
                    elif tr is int:
                        if expected not in numeric:
                            raise slow
                        res = (s.RESULT_NUMBER, float(r), None)
                    elif tr is str:
                        if expected != "string" and expected != "any":
                            raise slow
                        res = (s.RESULT_STRING, None, r)
                    else:
                        raise slow
                    pt = item.get("phenomenonTime")
                    if pt is None:
                        pt = now
                    else:
                        if type(pt) is not str or "/" in pt:
                            raise slow
                        pt = fromiso(pt[:-1] + "+00:00" if pt[-1:] == "Z" else pt)
                        pt = pt.replace(tzinfo=UTC) if pt.tzinfo is None else pt.astimezone(UTC)
                        if pt > limit:
                            raise slow
                    rt = item.get("resultTime")
                    if rt is not None:
                        rt = _fast_time(rt)
                        if rt > limit:
                            raise slow
                    row = [ds_id, None, pt, None, rt, None, None, res[0], res[1], res[2], None, None, None]
                except (slow, KeyError, ValueError, IndexError, OverflowError):
                    row = None
            if row is None:
                body = {k: v for k, v in item.items() if k != "datastream_id"} if "datastream_id" in item else item
                row = _row_of(observation_values(body, observation_type=streams[ds_id], now=now), ds_id, None)
            foi = item.get("FeatureOfInterest")
            if foi is None:
                row[1] = _DEFAULT_FOI
                need_default.add(ds_id)
            elif isinstance(foi, dict) and "@iot.id" in foi:
                row[1] = ref_id(foi, "FeatureOfInterest")
                explicit_foi.add(row[1])
            elif isinstance(foi, dict) and create_feature is not None:
                row[1] = create_feature(conn, foi)
            else:
                raise IngestError("FeatureOfInterest: expected {\"@iot.id\": <id>} or an entity")
            rows.append(row)
            positions.append(i)
        except IngestError as exc:
            out[i] = exc
    if not rows:
        return out, [], []
    if need_default:
        defaults = _default_features(conn, need_default)
        for row in rows:
            if row[1] is _DEFAULT_FOI:
                row[1] = defaults[row[0]]
    if explicit_foi:
        fe = s.sta_features
        wanted = sorted(explicit_foi)
        found: set[int] = set()
        for b in range(0, len(wanted), 1000):
            found.update(conn.execute(sa.select(fe.c.id).where(fe.c.id.in_(wanted[b : b + 1000]))).scalars())
        bad = explicit_foi - found
        if bad:
            keep = []
            for r, p in zip(rows, positions, strict=True):
                if r[1] in bad:
                    out[p] = IngestError(f"FeatureOfInterest: no FeatureOfInterest with @iot.id {r[1]}", 404)
                else:
                    keep.append((r, p))
            rows = [r for r, _ in keep]
            positions = [p for _, p in keep]
            if not rows:
                return out, [], []
    return out, rows, positions


def _store(conn: sa.Connection, rows: list, positions: list[int], out: list, *, now: datetime,
           rows_out: list | None, python_rows: list | None = None) -> None:
    """Insert stored-form rows, put their ids into ``out`` at ``positions``, update the statistics."""
    ids = _insert_stored(conn, rows)
    for p, new_id in zip(positions, ids, strict=True):
        out[p] = new_id
    decode = _time_decoder(conn.dialect.name)
    per = _stats(rows, ids)  # on stored values: SQLite's time text sorts as the times do
    if conn.dialect.name in ("sqlite", "postgresql"):
        _update_stats_stored(conn, per, now=now)
    else:
        for st in per.values():
            st[0], st[1], st[2] = decode(st[0]), decode(st[1]), (decode(st[2][0]), st[2][1])
            st[3], st[4] = decode(st[3]), decode(st[4])
        _update_stats(conn, per, now=now)
    if rows_out is not None:
        if python_rows is None:
            python_rows = [_decode_row(r, decode, json_text=conn.dialect.name in ("sqlite", "postgresql"))
                           for r in rows]
        rows_out.extend(zip(ids, python_rows, strict=True))


def insert_rows(conn: sa.Connection, rows: list[dict]) -> list[int]:
    """Insert prepared observation rows (dicts of :data:`COLUMNS`) in one batch; ids in input order."""
    encode = _row_encoder(conn.dialect.name)
    return _insert_stored(conn, [encode([r.get(c) for c in COLUMNS]) for r in rows])


def _json_text(v: Any) -> str:
    return "null" if v is None else json.dumps(v)  # as SQLAlchemy's JSON type stores None


def _sqlite_time(t: datetime | None) -> str | None:
    """A time as SQLAlchemy stores it on SQLite: naive UTC text with microseconds."""
    if t is None:
        return None
    return (t.astimezone(UTC) if t.tzinfo is not None else t).isoformat(" ", "microseconds")[:26]


def _sqlite_time_text(text: str, t: datetime) -> str:
    """:func:`_sqlite_time` of ``t`` (UTC), cut from ``text`` (what ``t`` was parsed from) when that
    is extended ISO 8601 in UTC with 0, 3 or 6 decimals, else formatted."""
    n = len(text)
    if n >= 20 and text[4] == "-" and text[7] == "-" and text[13] == ":" and text[16] == ":":
        if text[-1] == "Z":
            n -= 1
        elif text.endswith("+00:00"):
            n -= 6
        else:
            n = 0
        if n == 26 and text[19] == ".":
            return f"{text[:10]} {text[11:26]}"
        if n == 23 and text[19] == ".":
            return f"{text[:10]} {text[11:23]}000"
        if n == 19:
            return f"{text[:10]} {text[11:19]}.000000"
    return t.isoformat(" ", "microseconds")[:26]


def _time_text_encoder(dialect: str):
    """``f(text, t)``: the stored form of time ``t`` (aware, UTC) parsed from ``text``."""
    if dialect == "sqlite":
        return _sqlite_time_text
    return lambda text, t: t


def _row_encoder(dialect: str):
    """``f(row)``: a row of Python values (in :data:`COLUMNS` order) in the form the driver stores.

    SQLite: times as text (:func:`_sqlite_time`), JSON as text; PostgreSQL: JSON as text; other
    databases: unchanged (inserted through SQLAlchemy).
    """
    if dialect == "sqlite":
        def encode(r):
            tt = _sqlite_time
            return (r[0], r[1], tt(r[2]), tt(r[3]), tt(r[4]), tt(r[5]), tt(r[6]), r[7], r[8], r[9],
                    _json_text(r[10]), _json_text(r[11]), _json_text(r[12]))
        return encode
    if dialect == "postgresql":
        def encode_pg(r):
            return (*r[:10], _json_text(r[10]), _json_text(r[11]), _json_text(r[12]))
        return encode_pg
    return tuple


def _time_decoder(dialect: str):
    """The inverse of the stored time form: an aware UTC datetime (None stays None)."""
    if dialect != "sqlite":
        return lambda t: t

    def decode(t):
        return None if t is None else _fromiso(t).replace(tzinfo=UTC)
    return decode


def _decode_row(r: Sequence, decode, *, json_text: bool) -> list:
    """A stored-form row back in Python values (for notifications)."""
    js = [None if v == "null" else json.loads(v) for v in r[10:13]] if json_text else list(r[10:13])
    return [r[0], r[1], decode(r[2]), decode(r[3]), decode(r[4]), decode(r[5]), decode(r[6]),
            r[7], r[8], r[9], *js]


def _insert_stored(conn: sa.Connection, rows: list) -> list[int]:
    """Insert stored-form rows (see :func:`_row_encoder`) through the driver; ids in input order.

    SQLite: the first row's id comes from ``lastrowid``; this transaction then holds the write
    lock and that id is the table's largest, so SQLite gives the rest the following ids (one
    larger than the largest), inserted like the plain driver ``executemany`` and checked
    afterwards. PostgreSQL: ids are drawn from the table's sequence in one query and the rows
    sent with ``COPY``.
    """
    if not rows:
        return []
    dialect = conn.dialect.name
    dbapi = conn.connection.driver_connection
    cols = ", ".join(COLUMNS)
    if dialect == "sqlite":
        sql = f"INSERT INTO sta_observations ({cols}) VALUES ({', '.join('?' * len(COLUMNS))})"
        cur = dbapi.cursor()
        try:
            cur.execute(sql, rows[0])
            first = cur.lastrowid
            if len(rows) > 1:
                cur.executemany(sql, itertools.islice(rows, 1, None))
                last = cur.execute("SELECT max(id) FROM sta_observations").fetchone()[0]
                if last != first + len(rows) - 1:  # cannot happen below SQLite's largest rowid
                    raise RuntimeError(f"sta_observations: expected ids {first}..{first + len(rows) - 1}, "
                                       f"the largest is {last}")
        finally:
            cur.close()
        return list(range(first, first + len(rows)))
    if dialect == "postgresql" and hasattr(dbapi, "pgconn"):  # psycopg 3
        info = conn.connection.info  # lives as long as the database connection
        with dbapi.cursor() as cur:
            # nextval() of a constant name: ~10x faster than of a name looked up per row
            seq = info.get("sta_observations_seq")
            if seq is None:
                seq = cur.execute("SELECT pg_get_serial_sequence('sta_observations', 'id')").fetchone()[0]
                info["sta_observations_seq"] = seq
            ids = sorted(cur.execute("SELECT array_agg(nextval(%s::regclass)) FROM generate_series(1, %s)",
                                     (seq, len(rows))).fetchone()[0])
            with cur.copy(f"COPY sta_observations (id, {cols}) FROM STDIN") as cp:
                write = cp.write_row
                for oid, r in zip(ids, rows, strict=True):
                    write((oid, *r))
        return ids
    stmt = s.sta_observations.insert().returning(s.sta_observations.c.id, sort_by_parameter_order=True)
    params = [dict(zip(COLUMNS, r, strict=True)) for r in rows]
    if len(params) == 1:
        return [conn.execute(stmt, params[0]).scalar_one()]
    return list(conn.execute(stmt, params).scalars())


def _stats(rows: Iterable[Sequence], ids: Iterable[int]) -> dict[int, list]:
    """Per Datastream: [min time, max time, (latest time, its id), min resultTime, max resultTime].

    Rows come in runs of one Datastream (a dataArray group is one run); each run is reduced with
    ``min``/``max`` over its columns (loops in C), ties of the latest time going to the larger id.
    """
    rows = rows if isinstance(rows, list) else list(rows)
    ids = ids if isinstance(ids, list) else list(ids)
    per: dict[int, list] = {}
    start = 0
    for ds_id, run in itertools.groupby(rows, key=_first):
        n = len(run := list(run))
        run_ids = ids[start : start + n]
        start += n
        t0s = [r[2] for r in run]
        ends = [r[3] for r in run]
        lt = max(t0s)
        lid = max(itertools.compress(run_ids, map(operator.eq, t0s, itertools.repeat(lt))))
        t1 = lt if ends.count(None) == n else max(t0 if e is None else e for t0, e in zip(t0s, ends, strict=True))
        rts = [r[4] for r in run if r[4] is not None]
        st = [min(t0s), t1, (lt, lid), min(rts) if rts else None, max(rts) if rts else None]
        old = per.get(ds_id)
        if old is None:
            per[ds_id] = st
            continue
        old[0], old[1], old[2] = min(old[0], st[0]), max(old[1], st[1]), max(old[2], st[2])
        if st[3] is not None:
            old[3] = st[3] if old[3] is None else min(old[3], st[3])
            old[4] = st[4] if old[4] is None else max(old[4], st[4])
    return per


_first = operator.itemgetter(0)


def update_datastream_stats(conn: sa.Connection, rows: Iterable[dict], ids: Iterable[int], *, now: datetime) -> None:
    """Per Datastream: extend the time envelope and move the latest observation forward."""
    tuples = [(r["datastream_id"], None, r["phenomenon_time"], r["phenomenon_time_end"], r["result_time"]) for r in rows]
    _update_stats(conn, _stats(tuples, ids), now=now)


# One UPDATE per Datastream, all in one driver executemany, in id order (the lock order on
# PostgreSQL). Every expression sees the row as it was before the statement, and PostgreSQL
# re-evaluates them on the newest committed row when another transaction updated it meanwhile,
# so concurrent writers cannot lose each other's envelope or latest observation.
_STATS_SQL = """UPDATE sta_datastreams SET
 phenomenon_time_start = CASE WHEN phenomenon_time_start IS NULL OR {t} < phenomenon_time_start
                              THEN {t} ELSE phenomenon_time_start END,
 phenomenon_time_end = CASE WHEN phenomenon_time_end IS NULL OR {t} > phenomenon_time_end
                            THEN {t} ELSE phenomenon_time_end END,
 last_observation_id = CASE WHEN last_phenomenon_time IS NULL OR {t} >= last_phenomenon_time
                            THEN {p} ELSE last_observation_id END,
 last_phenomenon_time = CASE WHEN last_phenomenon_time IS NULL OR {t} >= last_phenomenon_time
                             THEN {t} ELSE last_phenomenon_time END,
 result_time_start = CASE WHEN {t} IS NOT NULL AND (result_time_start IS NULL OR {t} < result_time_start)
                          THEN {t} ELSE result_time_start END,
 result_time_end = CASE WHEN {t} IS NOT NULL AND (result_time_end IS NULL OR {t} > result_time_end)
                        THEN {t} ELSE result_time_end END,
 last_received_at = {t}
WHERE id = {p}"""


def _update_stats_stored(conn: sa.Connection, per: dict[int, list], *, now: datetime) -> None:
    """:func:`_update_stats` for SQLite and PostgreSQL on stored values, through the driver."""
    if not per:
        return
    sqlite = conn.dialect.name == "sqlite"
    # PostgreSQL cannot infer the type of a NULL parameter compared with IS NOT NULL
    sql = _STATS_SQL.format(p="?", t="?") if sqlite else _STATS_SQL.format(p="%s", t="%s::timestamptz")
    now_v = _sqlite_time(now) if sqlite else now
    params = []
    for ds_id in sorted(per):
        tmin, tmax, (lt, lid), rmin, rmax = per[ds_id]
        params.append((tmin, tmin, tmax, tmax, lt, lid, lt, lt, rmin, rmin, rmin, rmax, rmax, rmax, now_v, ds_id))
    cur = conn.connection.driver_connection.cursor()
    try:
        cur.executemany(sql, params)
    finally:
        cur.close()


def _update_stats(conn: sa.Connection, per: dict[int, list], *, now: datetime) -> None:
    """One SELECT (rows locked on PostgreSQL) and one executemany UPDATE for all Datastreams."""
    if not per:
        return
    ds = s.sta_datastreams
    keys = sorted(per)
    params = []
    for b in range(0, len(keys), 1000):
        cur_rows = conn.execute(
            sa.select(ds.c.id, ds.c.phenomenon_time_start, ds.c.phenomenon_time_end, ds.c.last_phenomenon_time,
                      ds.c.last_observation_id, ds.c.result_time_start, ds.c.result_time_end)
            .where(ds.c.id.in_(keys[b : b + 1000])).order_by(ds.c.id).with_for_update(key_share=True)  # FOR NO KEY UPDATE
        ).all()
        for cur in cur_rows:
            tmin, tmax, (lt, lid), rmin, rmax = per[cur.id]
            pts = tmin if cur.phenomenon_time_start is None or tmin < cur.phenomenon_time_start else cur.phenomenon_time_start
            pte = tmax if cur.phenomenon_time_end is None or tmax > cur.phenomenon_time_end else cur.phenomenon_time_end
            if cur.last_phenomenon_time is None or lt >= cur.last_phenomenon_time:
                last_t, last_id = lt, lid
            else:
                last_t, last_id = cur.last_phenomenon_time, cur.last_observation_id
            rts, rte = cur.result_time_start, cur.result_time_end
            if rmin is not None and (rts is None or rmin < rts):
                rts = rmin
            if rmax is not None and (rte is None or rmax > rte):
                rte = rmax
            params.append({"k_id": cur.id, "k_pts": pts, "k_pte": pte, "k_lt": last_t, "k_lid": last_id,
                           "k_rts": rts, "k_rte": rte, "k_now": now})
    if params:
        conn.execute(
            ds.update().where(ds.c.id == sa.bindparam("k_id")).values(
                phenomenon_time_start=sa.bindparam("k_pts"), phenomenon_time_end=sa.bindparam("k_pte"),
                last_phenomenon_time=sa.bindparam("k_lt"), last_observation_id=sa.bindparam("k_lid"),
                result_time_start=sa.bindparam("k_rts"), result_time_end=sa.bindparam("k_rte"),
                last_received_at=sa.bindparam("k_now"),
            ),
            params,
        )


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
