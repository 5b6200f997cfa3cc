"""The SensorThings service core: resource paths, query options, create/update/delete, dataArray.

It knows no web framework: :meth:`StaService.handle` takes a :class:`StaRequest` and returns a
:class:`StaResponse`; the FastAPI router, ``$batch`` and the MQTT bridge are adapters over it.
Write requests run in one transaction which commits before the response is returned (an
acknowledged Observation is durable); listeners (the MQTT bridge) are told about created
entities after the commit.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlencode

import sqlalchemy as sa
from shapely.geometry import shape
from sqlalchemy.ext.compiler import compiles

from citytwin.sensors import odata
from citytwin.sensors import schema as s
from citytwin.sensors.ingest import COLUMNS as OBS_COLUMNS
from citytwin.sensors.ingest import (
    IngestError,
    bbox_of,
    check_write_scope,
    ingest_data_array,
    ingest_observations,
    observation_values,
    recompute_datastream_stats,
    ref_id,
    result_value,
)
from citytwin.sensors.model import BY_PLURAL, ENTITIES, Entity, Prop, Rel, inverse
from citytwin.sensors.odata import QueryError

log = logging.getLogger(__name__)

CONFORMANCE = [
    "http://www.opengis.net/spec/iot_sensing/1.1/req/datamodel",
    "http://www.opengis.net/spec/iot_sensing/1.1/req/resource-path/resource-path-to-entities",
    "http://www.opengis.net/spec/iot_sensing/1.1/req/request-data",
    "http://www.opengis.net/spec/iot_sensing/1.1/req/create-update-delete",
    "http://www.opengis.net/spec/iot_sensing/1.1/req/batch-request/batch-request",
    "http://www.opengis.net/spec/iot_sensing/1.1/req/data-array/data-array",
    "http://www.opengis.net/spec/iot_sensing/1.1/req/create-observations-via-mqtt/observations-creation",
    "http://www.opengis.net/spec/iot_sensing/1.1/req/receive-updates-via-mqtt/receive-updates",
]
GEOJSON_TYPES = {"application/geo+json", "application/vnd.geo+json", "application/json"}
_SEGMENT = re.compile(r"^([A-Za-z]+)(?:\((?:'([^']*)'|(-?\d+))\))?$")


_DATA_ARRAY_COMPONENTS = frozenset({"phenomenonTime", "result", "resultTime", "resultQuality", "validTime",
                                    "parameters", "FeatureOfInterest/id", "id"})
_ROWS = "Observation rows"  #: event kind of Observations stored in bulk, see StaService.notify


class StaError(Exception):
    """An error with an HTTP status and a message for the client."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class StaRequest:
    method: str
    path: str  # relative to the service root, e.g. "Things(1)/Datastreams"
    query: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None
    content_type: str = "application/json"
    principal: Any = None
    base_url: str = "http://localhost/sta/v1.1"


@dataclass
class StaResponse:
    status: int
    body: Any = None  # JSON-serialisable, or bytes/str with media_type
    headers: dict[str, str] = field(default_factory=dict)
    media_type: str = "application/json"


@dataclass
class _WriteCtx:
    created: list[tuple[str, dict]] = field(default_factory=list)  # (entity name, id) → JSON later
    created_ids: list[tuple[Entity, int]] = field(default_factory=list)
    hl_pending: dict[int, set[int]] = field(default_factory=dict)
    observation_rows: list = field(default_factory=list)  # (id, row) of Observations stored in bulk


@dataclass
class _Target:
    entity: Entity
    id: int | None = None
    conds: list = field(default_factory=list)
    parent: tuple[Entity, int, Rel] | None = None
    prop: str | None = None
    value: bool = False
    ref: bool = False


def iso(t: datetime | None) -> str | None:
    if t is None:
        return None
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _interval(a: datetime | None, b: datetime | None) -> str | None:
    if a is None:
        return None
    if b is None or b == a:
        return iso(a)
    return f"{iso(a)}/{iso(b)}"


def _check_geometry(value: Any, field_name: str) -> None:
    if not isinstance(value, dict) or "type" not in value:
        raise StaError(400, f"{field_name}: expected a GeoJSON object with a 'type'")
    geom = value.get("geometry") if value.get("type") == "Feature" else value
    try:
        shape(geom)
    except Exception as exc:  # noqa: BLE001 - any parse failure is the client's
        raise StaError(400, f"{field_name}: invalid GeoJSON geometry: {exc}") from None


class StaService:
    """SensorThings API 1.1 over one database engine.

    Parameters
    ----------
    engine
        The store; tables from :mod:`citytwin.sensors.schema` must exist (migrated).
    default_top, max_top
        Page size when ``$top`` is absent, and the largest page served.
    """

    def __init__(self, engine: sa.Engine, *, default_top: int = 100, max_top: int = 10_000):
        self.engine = engine
        self.default_top = default_top
        self.max_top = max_top
        self.listeners: list[Callable[[str, dict], None]] = []
        #: ``f(rows, base_url)`` told about Observations stored in bulk, ``rows`` as ``(id, row)``
        #: with ``row`` in the order of :data:`citytwin.sensors.ingest.COLUMNS` (no JSON built)
        self.row_listeners: list[Callable[[list, str], None]] = []
        #: listeners that also have a row listener: they get bulk Observations as rows only
        self._rows_cover: list[Callable[[str, dict], None]] = []
        self.base_url = "http://localhost/sta/v1.1"
        self.mqtt_endpoint: str | None = None
        # SQLite allows one writer; serialising writers here avoids busy errors under load.
        self._write_lock = threading.Lock() if engine.dialect.name == "sqlite" else contextlib.nullcontext()

    # ------------------------------------------------------------------ entry points

    @contextlib.contextmanager
    def write_transaction(self):
        """One write transaction (serialised on SQLite); commits on exit, rolls back on error."""
        with self._write_lock, self.engine.begin() as conn:
            yield conn

    def handle(self, req: StaRequest) -> StaResponse:
        """Serve one request; errors become JSON ``{"code", "type", "message"}`` responses."""
        try:
            if req.method in ("GET", "HEAD"):
                with self.engine.connect() as conn:
                    return self.dispatch(conn, req, None)
            ctx = _WriteCtx()
            groups = None
            if req.method.upper() == "POST" and req.path.strip("/") == "CreateObservations":
                _require_read(req.principal)
                groups = self._data_array_groups(req)  # parsed before the write lock is taken
            with self.write_transaction() as conn:
                resp = self.dispatch(conn, req, ctx, groups=groups)
                self._flush(conn, ctx)
                events = self._events(conn, ctx, req.base_url)
            self.notify(events)
            return resp
        except StaError as exc:
            return error_response(exc.status, exc.message)
        except IngestError as exc:
            return error_response(exc.status, str(exc))
        except QueryError as exc:
            return error_response(400, str(exc))
        except sa.exc.IntegrityError as exc:
            return error_response(409, f"conflict with existing data: {exc.orig}")

    def add_listener(self, listener: Callable[[str, dict], None],
                     row_listener: Callable[[list, str], None] | None = None) -> None:
        """Tell ``listener(entity name, JSON)`` about every created entity after its commit.

        With ``row_listener(rows, base URL)``, Observations stored in bulk reach the pair once,
        as rows (no JSON built); without it the listener gets their JSON too.
        """
        self.listeners.append(listener)
        if row_listener is not None:
            self.row_listeners.append(row_listener)
            self._rows_cover.append(listener)

    def remove_listener(self, listener: Callable[[str, dict], None],
                        row_listener: Callable[[list, str], None] | None = None) -> None:
        for lst, item in ((self.listeners, listener), (self._rows_cover, listener), (self.row_listeners, row_listener)):
            if item in lst:
                lst.remove(item)

    def notify(self, events: list[tuple[str, dict]]) -> None:
        for entity_name, body in events:
            if entity_name == _ROWS:  # Observations stored in bulk: (rows, base URL)
                rows, base = body
                for row_listener in list(self.row_listeners):
                    try:
                        row_listener(rows, base)
                    except Exception:  # noqa: BLE001 - a failing listener must not fail the write
                        log.exception("row listener failed")
                plain = [lst for lst in self.listeners if lst not in self._rows_cover]
                if plain:
                    for name, js in self._observation_events(rows, base):
                        for listener in plain:
                            try:
                                listener(name, js)
                            except Exception:  # noqa: BLE001 - a failing listener must not fail the write
                                log.exception("listener failed for %s", name)
                continue
            for listener in list(self.listeners):
                try:
                    listener(entity_name, body)
                except Exception:  # noqa: BLE001 - a failing listener must not fail the write
                    log.exception("listener failed for %s", entity_name)

    def _wants_rows(self) -> bool:
        return bool(self.listeners or self.row_listeners)

    def _events(self, conn, ctx: _WriteCtx, base: str) -> list[tuple[str, dict]]:
        if not self._wants_rows():
            return []
        # Observations stored in bulk travel as rows; notify() builds their JSON only if needed
        out: list[tuple[str, Any]] = [(_ROWS, (ctx.observation_rows, base))] if ctx.observation_rows else []
        by_entity: dict[str, list[int]] = {}
        for ent, eid in ctx.created_ids:
            by_entity.setdefault(ent.name, []).append(eid)
        for name, ids in by_entity.items():  # one query per entity type and 1000 ids
            ent = ENTITIES[name]
            for b in range(0, len(ids), 1000):
                rows = conn.execute(sa.select(ent.table).where(ent.table.c.id.in_(ids[b : b + 1000]))
                                    .order_by(ent.table.c.id)).mappings()
                for row in rows:
                    js = self._json(ent, row, base)
                    js["__links__"] = {r.name: row[r.column] for r in ent.rels if not r.many}
                    out.append((ent.name, js))
        return out

    def ingest(self, items: list[dict], *, principal=None, base_url: str | None = None) -> list[int | IngestError]:
        """Create Observations through the shared ingest path in one committed transaction."""
        ctx = _WriteCtx()
        with self.write_transaction() as conn:
            results = ingest_observations(conn, items, principal=principal, create_feature=self._feature_creator(ctx),
                                          rows_out=ctx.observation_rows if self._wants_rows() else None)
            events = self._events(conn, ctx, base_url or self.base_url)
        self.notify(events)
        return results

    def _observation_events(self, rows: list, base: str) -> list[tuple[str, dict]]:
        """Notifications of Observations built from the rows just stored (no reading back)."""
        ent = ENTITIES["Observation"]
        out = []
        for oid, r in rows:
            row = dict(zip(OBS_COLUMNS, r, strict=True))
            row["id"] = oid
            js = self._json(ent, row, base)
            js["__links__"] = {"Datastream": r[0], "FeatureOfInterest": r[1]}
            out.append(("Observation", js))
        return out

    # ------------------------------------------------------------------ dispatch

    def dispatch(self, conn: sa.Connection, req: StaRequest, ctx: _WriteCtx | None, *,
                 groups: list | None = None) -> StaResponse:
        """Serve one request on ``conn``; ``groups``: a ``/CreateObservations`` body parsed already."""
        self.base_url = req.base_url
        path = req.path.strip("/")
        method = req.method.upper()
        _require_read(req.principal)
        if path == "":
            if method != "GET":
                raise StaError(405, "the service root is read-only")
            return StaResponse(200, self._root(req.base_url))
        if path == "CreateObservations":
            if method != "POST":
                raise StaError(405, "CreateObservations accepts POST only")
            return self._create_observations(conn, req, ctx, groups)
        target = self._resolve(conn, path)
        if method == "GET":
            return self._get(conn, target, req)
        assert ctx is not None
        if method == "POST":
            return self._post(conn, target, req, ctx)
        if method in ("PATCH", "PUT"):
            if target.id is None or target.prop is not None:
                raise StaError(400, f"{method} needs an entity path like Things(1)")
            _require_cud(req.principal, target.entity)
            self._update(conn, target.entity, target.id, req, ctx, put=method == "PUT")
            return StaResponse(200, self._json(target.entity, self._row(conn, target.entity, target.id), req.base_url))
        if method == "DELETE":
            if target.ref and target.parent is not None and target.id is not None:
                _require_cud(req.principal, target.entity)
                self._unlink(conn, target, ctx)
                return StaResponse(200, None)
            if target.id is None:
                raise StaError(400, "DELETE needs an entity path like Things(1)")
            _require_cud(req.principal, target.entity)
            self._delete(conn, target.entity, target.id)
            return StaResponse(200, None)
        raise StaError(405, f"method {method} not allowed")

    def _root(self, base: str) -> dict:
        settings: dict[str, Any] = {"conformance": CONFORMANCE}
        if self.mqtt_endpoint:
            settings[CONFORMANCE[6]] = {"endpoints": [self.mqtt_endpoint]}
            settings[CONFORMANCE[7]] = {"endpoints": [self.mqtt_endpoint]}
        return {
            "value": [{"name": e.plural, "url": f"{base}/{e.plural}"} for e in ENTITIES.values()],
            "serverSettings": settings,
        }

    # ------------------------------------------------------------------ resource paths

    def _exists(self, conn, ent: Entity, eid: int, extra: list | None = None) -> bool:
        q = sa.select(ent.table.c.id).where(ent.table.c.id == eid, *(extra or []))
        return conn.execute(q).first() is not None

    def _resolve(self, conn, path: str) -> _Target:
        segs = path.split("/")
        m = _SEGMENT.match(segs[0])
        if not m or m.group(1) not in BY_PLURAL:
            raise StaError(404, f"no such entity set: {segs[0]!r}; available: {', '.join(BY_PLURAL)}")
        ent = BY_PLURAL[m.group(1)]
        target = _Target(ent)
        if m.group(2) is not None or m.group(3) is not None:
            target.id = _int_id(m.group(2) if m.group(2) is not None else m.group(3))
            if not self._exists(conn, ent, target.id):
                raise StaError(404, f"no {ent.name} with @iot.id {target.id}")
        for seg in segs[1:]:
            if target.ref or target.value:
                raise StaError(400, f"nothing may follow $ref or $value (found {seg!r})")
            if seg == "$ref":
                target.ref = True
                continue
            if seg == "$value":
                if target.prop is None:
                    raise StaError(400, "$value must follow a property")
                target.value = True
                continue
            if target.prop is not None:
                raise StaError(400, f"cannot navigate below property {target.prop!r}")
            m = _SEGMENT.match(seg)
            if not m:
                raise StaError(400, f"cannot parse path segment {seg!r}")
            name = m.group(1)
            ent = target.entity
            if target.id is None:
                raise StaError(400, f"{seg!r} must follow a single entity, e.g. {ent.plural}(1)/{seg}")
            if name in ent.rel_by_name:
                rel = ent.rel_by_name[name]
                tgt = ENTITIES[rel.target]
                if not rel.many:
                    fk = conn.execute(sa.select(ent.table.c[rel.column]).where(ent.table.c.id == target.id)).scalar()
                    if fk is None:
                        raise StaError(404, f"{ent.name}({target.id}) has no {name}")
                    target = _Target(tgt, id=fk, parent=(ent, target.id, rel))
                else:
                    conds = [_many_cond(rel, tgt.table, target.id)]
                    new = _Target(tgt, conds=conds, parent=(ent, target.id, rel))
                    if m.group(2) is not None or m.group(3) is not None:
                        new.id = _int_id(m.group(2) if m.group(2) is not None else m.group(3))
                        if not self._exists(conn, tgt, new.id, conds):
                            raise StaError(404, f"no {tgt.name} with @iot.id {new.id} under {ent.name}({target.id})")
                    target = new
            elif name in ent.prop_by_name:
                target.prop = name
            else:
                raise StaError(404, f"{ent.name} has no property or navigation {name!r}")
        return target

    # ------------------------------------------------------------------ reading

    def _row(self, conn, ent: Entity, eid: int):
        return conn.execute(sa.select(ent.table).where(ent.table.c.id == eid)).mappings().first()

    def _get(self, conn, target: _Target, req: StaRequest) -> StaResponse:
        q = req.query
        if target.id is not None:
            row = self._row(conn, target.entity, target.id)
            if row is None:
                raise StaError(404, f"no {target.entity.name} with @iot.id {target.id}")
            if target.ref:
                return StaResponse(200, {"@iot.selfLink": f"{req.base_url}/{target.entity.plural}({target.id})"})
            if target.prop is not None:
                value = self._json(target.entity, row, req.base_url)[target.prop]
                if target.value:
                    text = value if isinstance(value, str) else json.dumps(value)
                    return StaResponse(200, text if text is not None else "", media_type="text/plain")
                return StaResponse(200, {target.prop: value})
            body = self._json(target.entity, row, req.base_url, select=_select(target.entity, q.get("$select")))
            self._expand(conn, target.entity, [body], q.get("$expand"), req.base_url)
            return StaResponse(200, body)
        page = self.collection(conn, target.entity, target.conds, q, req.base_url,
                               next_base=f"{req.base_url}/{req.path.strip('/')}", ref=target.ref)
        return StaResponse(200, page)

    def collection(self, conn, ent: Entity, conds: list, q: dict[str, str], base: str, *,
                   next_base: str | None = None, ref: bool = False) -> dict:
        """One page of a collection with ``$filter/$orderby/$top/$skip/$count/$select/$expand``."""
        table = ent.table
        top = _int_option(q, "$top", self.default_top)
        if top > self.max_top:
            top = self.max_top
        skip = _int_option(q, "$skip", 0)
        where = list(conds)
        py_filters: list = []
        if "$filter" in q:
            ast = odata.parse_filter(q["$filter"])
            comp = _Compiler(ent, table)
            for c in odata.conjuncts(ast):
                if odata.contains_python_only(c):
                    py_filters.append(c)
                    bb = _bbox_prefilter(ent, table, c)
                    if bb is not None:
                        where.append(bb)
                else:
                    where.append(comp.boolean(c))
        order = []
        if q.get("$orderby"):
            comp = _Compiler(ent, table)
            for expr, desc in odata.parse_orderby(q["$orderby"]):
                col = comp.order_expr(expr)
                order.append(col.desc() if desc else col.asc())
        order.append(table.c.id.asc())
        stmt = sa.select(table).where(*where).order_by(*order)
        count = None
        want_count = q.get("$count", "false").lower() == "true"
        if q.get("$count", "false").lower() not in ("true", "false"):
            raise StaError(400, "$count: expected true or false")
        if py_filters:
            rows = conn.execute(stmt).mappings().all()
            resolver = self._resolver(conn, base)
            kept = []
            for row in rows:
                js = self._json(ent, row, base)
                if all(odata.evaluate(f, js, resolve=resolver) for f in py_filters):
                    kept.append(row)
            count = len(kept)
            rows = kept[skip : skip + top + 1]
        else:
            rows = conn.execute(stmt.limit(top + 1).offset(skip)).mappings().all()
            if want_count:
                count = conn.execute(sa.select(sa.func.count()).select_from(table).where(*where)).scalar_one()
        more = len(rows) > top
        rows = rows[:top]
        out: dict[str, Any] = {}
        if want_count:
            out["@iot.count"] = count
        if ref:
            values = [{"@iot.selfLink": f"{base}/{ent.plural}({r['id']})"} for r in rows]
        elif q.get("$resultFormat") == "dataArray":
            if ent.name != "Observation":
                raise StaError(400, "$resultFormat=dataArray applies to Observations only")
            values = self._data_array(rows, q.get("$select"), base)
        else:
            sel = _select(ent, q.get("$select"))
            values = [self._json(ent, r, base, select=sel) for r in rows]
            self._expand(conn, ent, values, q.get("$expand"), base)
        if more and next_base is not None:
            nq = {k: v for k, v in q.items()}
            nq["$skip"] = str(skip + top)
            nq["$top"] = str(top)
            out["@iot.nextLink"] = f"{next_base}?{urlencode(nq, quote_via=quote)}"
        out["value"] = values
        if more and next_base is None:
            out["@iot.nextLink"] = None  # marker for expand callers
        return out

    def _data_array(self, rows, select: str | None, base: str) -> list[dict]:
        comps = odata.parse_select(select) if select else ["id", "phenomenonTime", "resultTime", "result"]
        allowed = {"id", "phenomenonTime", "resultTime", "result", "resultQuality", "validTime", "parameters"}
        bad = [c for c in comps if c not in allowed]
        if bad:
            raise StaError(400, f"$select: {bad[0]!r} is not a dataArray component; accepted: {', '.join(sorted(allowed))}")
        groups: dict[int, list] = {}
        ent = ENTITIES["Observation"]
        for r in rows:
            js = self._json(ent, r, base)
            js["id"] = js["@iot.id"]
            groups.setdefault(r["datastream_id"], []).append([js[c] for c in comps])
        return [
            {"Datastream@iot.navigationLink": f"{base}/Datastreams({ds})", "components": comps,
             "dataArray@iot.count": len(arr), "dataArray": arr}
            for ds, arr in groups.items()
        ]

    def _resolver(self, conn, base: str):
        cache: dict[tuple[str, int], dict | None] = {}

        def resolve(js: dict, rel_name: str):
            ent = BY_PLURAL.get(_plural_of_link(js.get("@iot.selfLink", "")))
            if ent is None or rel_name not in ent.rel_by_name:
                return None
            rel = ent.rel_by_name[rel_name]
            if rel.many:
                raise QueryError(f"$filter: cannot follow to-many {rel_name!r} inside a geospatial expression")
            fk = conn.execute(sa.select(ent.table.c[rel.column]).where(ent.table.c.id == js["@iot.id"])).scalar()
            if fk is None:
                return None
            key = (rel.target, fk)
            if key not in cache:
                tgt = ENTITIES[rel.target]
                row = self._row(conn, tgt, fk)
                cache[key] = None if row is None else self._json(tgt, row, base)
            return cache[key]

        return resolve

    def _json(self, ent: Entity, row, base: str, *, select: list[str] | None = None) -> dict:
        link = f"{base}/{ent.plural}({row['id']})"
        out: dict[str, Any] = {"@iot.id": row["id"], "@iot.selfLink": link}
        for p in ent.props:
            out[p.name] = _prop_value(ent, p, row)
        for r in ent.rels:
            out[f"{r.name}@iot.navigationLink"] = f"{link}/{r.name}"
        if select is not None:
            keep = set()
            for name in select:
                if name in ("id", "@iot.id"):
                    keep.add("@iot.id")
                elif name in ("selfLink", "@iot.selfLink"):
                    keep.add("@iot.selfLink")
                elif name in ent.rel_by_name:
                    keep.add(f"{name}@iot.navigationLink")
                else:
                    keep.add(name)
            out = {k: v for k, v in out.items() if k in keep}
        return out

    def _expand(self, conn, ent: Entity, items: list[dict], expand: str | None, base: str) -> None:
        if not expand or not items:
            return
        for spec in odata.parse_expand(expand):
            name = spec["name"]
            if name not in ent.rel_by_name:
                raise StaError(400, f"$expand: {ent.name} has no navigation property {name!r}; "
                                    f"available: {', '.join(ent.rel_by_name)}")
            rel = ent.rel_by_name[name]
            tgt = ENTITIES[rel.target]
            opts = dict(spec["options"])
            if spec["expand"]:
                nested = ",".join(_expand_text(e) for e in spec["expand"])
                opts["$expand"] = f"{opts['$expand']},{nested}" if opts.get("$expand") else nested
            for item in items:
                eid = item.get("@iot.id")
                if eid is None:
                    raise StaError(400, "$expand needs the id in $select")
                if not rel.many:
                    fk = conn.execute(sa.select(ent.table.c[rel.column]).where(ent.table.c.id == eid)).scalar()
                    row = None if fk is None else self._row(conn, tgt, fk)
                    if row is None:
                        item[name] = None
                        continue
                    js = self._json(tgt, row, base, select=_select(tgt, opts.get("$select")))
                    self._expand(conn, tgt, [js], opts.get("$expand"), base)
                    item[name] = js
                else:
                    page = self.collection(conn, tgt, [_many_cond(rel, tgt.table, eid)], opts, base,
                                           next_base=f"{base}/{ent.plural}({eid})/{name}")
                    item[name] = page["value"]
                    if "@iot.count" in page:
                        item[f"{name}@iot.count"] = page["@iot.count"]
                    if page.get("@iot.nextLink"):
                        item[f"{name}@iot.nextLink"] = page["@iot.nextLink"]

    # ------------------------------------------------------------------ creating

    def _post(self, conn, target: _Target, req: StaRequest, ctx: _WriteCtx) -> StaResponse:
        body = _json_body(req)
        if target.ref:
            # POST Things(1)/Locations/$ref {"@iot.id": 2}: link an existing entity
            if target.parent is None or not target.parent[2].many:
                raise StaError(400, "$ref POST needs a to-many navigation path")
            _require_cud(req.principal, target.parent[0])
            pent, pid, rel = target.parent
            tid = _ref(body, rel.target)
            self._link(conn, pent, pid, rel, tid, ctx)
            return StaResponse(204, None)
        if target.id is not None or target.prop is not None:
            raise StaError(400, "POST to a collection, e.g. Things or Things(1)/Datastreams")
        ent = target.entity
        inject = None
        if target.parent is not None:
            pent, pid, rel = target.parent
            inv = inverse(pent, rel)
            inject = {inv.name: [{"@iot.id": pid}] if inv.many else {"@iot.id": pid}}
        if ent.name == "Observation":
            if not isinstance(body, dict):
                raise StaError(400, "the body must be a JSON object")
            if inject:
                body = {**body, **inject}
            new_id = self._create_observation(conn, body, req.principal, ctx)
        else:
            _require_cud(req.principal, ent)
            new_id = self.create(conn, ent, body, ctx, inject=inject, principal=req.principal)
        self._flush(conn, ctx)
        link = f"{req.base_url}/{ent.plural}({new_id})"
        return StaResponse(201, self._json(ent, self._row(conn, ent, new_id), req.base_url), headers={"Location": link})

    def _feature_creator(self, ctx: _WriteCtx):
        def create_feature(conn, body):
            return self.create(conn, ENTITIES["FeatureOfInterest"], body, ctx)
        return create_feature

    def _create_observation(self, conn, body: dict, principal, ctx: _WriteCtx) -> int:
        if "Datastream" not in body:
            raise StaError(400, "Datastream: missing (required), e.g. \"Datastream\": {\"@iot.id\": 1}")
        ds = body["Datastream"]
        if isinstance(ds, dict) and "@iot.id" not in ds:
            # deep insert of a Datastream together with its first Observation
            _require_cud(principal, ENTITIES["Datastream"])
            body = {**body, "Datastream": {"@iot.id": self.create(conn, ENTITIES["Datastream"], ds, ctx, principal=principal)}}
        [res] = ingest_observations(conn, [body], principal=principal, create_feature=self._feature_creator(ctx))
        if isinstance(res, IngestError):
            raise res
        ctx.created_ids.append((ENTITIES["Observation"], res))
        return res

    def create(self, conn, ent: Entity, body: Any, ctx: _WriteCtx, *, inject: dict | None = None, principal=None) -> int:
        """Create an entity with deep insert of related entities; returns its id."""
        if not isinstance(body, dict):
            raise StaError(400, f"{ent.name}: the body must be a JSON object")
        if inject:
            body = {**body, **inject}
        if ent.name == "Observation":
            return self._create_observation(conn, body, principal, ctx)
        values, rels = _parse(ent, body, partial=False)
        for rel in ent.rels:
            if rel.many:
                continue
            if rel.name not in rels or rels[rel.name] is None:
                if rel.required:
                    raise StaError(400, f"{rel.name}: missing (required) for {ent.name}, e.g. \"{rel.name}\": {{\"@iot.id\": 1}}")
                continue
            values[rel.column] = self._ref_or_create(conn, ENTITIES[rel.target], rels[rel.name], rel.name, ctx, principal)
        new_id = conn.execute(ent.table.insert().values(**values)).inserted_primary_key[0]
        ctx.created_ids.append((ent, new_id))
        for rel in ent.rels:
            if not rel.many or rel.name not in rels:
                continue
            items = rels[rel.name]
            if not isinstance(items, list):
                raise StaError(400, f"{rel.name}: expected a JSON array")
            tgt = ENTITIES[rel.target]
            inv = inverse(ent, rel)
            for item in items:
                if isinstance(item, dict) and "@iot.id" in item:
                    self._link(conn, ent, new_id, rel, _ref(item, tgt.name), ctx)
                else:
                    inj = {inv.name: [{"@iot.id": new_id}] if inv.many else {"@iot.id": new_id}}
                    self.create(conn, tgt, item, ctx, inject=inj, principal=principal)
        return new_id

    def _ref_or_create(self, conn, tgt: Entity, value: Any, field_name: str, ctx, principal) -> int:
        if isinstance(value, dict) and "@iot.id" in value:
            tid = _ref(value, field_name)
            if not self._exists(conn, tgt, tid):
                raise StaError(400, f"{field_name}: no {tgt.name} with @iot.id {tid}")
            return tid
        return self.create(conn, tgt, value, ctx, principal=principal)

    def _link(self, conn, ent: Entity, eid: int, rel: Rel, tid: int, ctx: _WriteCtx) -> None:
        tgt = ENTITIES[rel.target]
        if not self._exists(conn, tgt, tid):
            raise StaError(400, f"{rel.name}: no {tgt.name} with @iot.id {tid}")
        if rel.via == "other":
            conn.execute(tgt.table.update().where(tgt.table.c.id == tid).values({rel.column: eid}))
            return
        link = rel.link
        exists = conn.execute(sa.select(link.c[rel.link_self]).where(
            link.c[rel.link_self] == eid, link.c[rel.link_other] == tid)).first()
        if not exists:
            conn.execute(link.insert().values({rel.link_self: eid, rel.link_other: tid}))
        if link is s.sta_thing_locations:
            thing, loc = (eid, tid) if ent.name == "Thing" else (tid, eid)
            ctx.hl_pending.setdefault(thing, set()).add(loc)

    def _unlink(self, conn, target: _Target, ctx) -> None:
        pent, pid, rel = target.parent
        if rel.via == "link":
            conn.execute(rel.link.delete().where(rel.link.c[rel.link_self] == pid, rel.link.c[rel.link_other] == target.id))
        else:
            raise StaError(400, f"{rel.name}: this relation is mandatory; delete the entity instead")

    def _flush(self, conn, ctx: _WriteCtx) -> None:
        """Create one HistoricalLocation per Thing whose Locations changed in this request."""
        now = datetime.now(UTC)
        for thing, locs in ctx.hl_pending.items():
            hid = conn.execute(s.sta_historical_locations.insert().values(thing_id=thing, time=now)).inserted_primary_key[0]
            conn.execute(s.sta_historical_location_locations.insert(),
                         [{"historical_location_id": hid, "location_id": loc} for loc in sorted(locs)])
            ctx.created_ids.append((ENTITIES["HistoricalLocation"], hid))
        ctx.hl_pending.clear()

    def _data_array_groups(self, req: StaRequest) -> list[tuple[int, list[str], list]]:
        """Parse and check a ``/CreateObservations`` body: ``(datastream id, components, rows)`` per group.

        A malformed group refuses the whole request (400), a Datastream the caller may not write
        too (403); single rows are checked by :func:`ingest_data_array`.
        """
        body = _json_body(req)
        if not isinstance(body, list):
            raise StaError(400, "CreateObservations: the body must be a JSON array of dataArray groups")
        groups: list[tuple[int, list[str], list]] = []
        for g, group in enumerate(body):
            if not isinstance(group, dict):
                raise StaError(400, f"CreateObservations[{g}]: expected an object")
            for key in ("Datastream", "components", "dataArray"):
                if key not in group:
                    raise StaError(400, f"CreateObservations[{g}].{key}: missing (required)")
            try:
                ds_id = ref_id(group["Datastream"], f"CreateObservations[{g}].Datastream")
            except IngestError as exc:
                raise StaError(400, str(exc)) from None
            check_write_scope(req.principal, ds_id)
            comps = group["components"]
            if not isinstance(comps, list) or any(c not in _DATA_ARRAY_COMPONENTS for c in comps):
                raise StaError(400, f"CreateObservations[{g}].components: accepted "
                                    f"{', '.join(sorted(_DATA_ARRAY_COMPONENTS))}")
            if "result" not in comps:
                raise StaError(400, f"CreateObservations[{g}].components: 'result' is required")
            if not isinstance(group["dataArray"], list):
                raise StaError(400, f"CreateObservations[{g}].dataArray: expected an array of arrays")
            groups.append((ds_id, comps, group["dataArray"]))
        return groups

    def _create_observations(self, conn, req: StaRequest, ctx: _WriteCtx,
                             groups: list[tuple[int, list[str], list]] | None = None) -> StaResponse:
        if groups is None:
            groups = self._data_array_groups(req)
        results = ingest_data_array(conn, groups, principal=req.principal,
                                    rows_out=ctx.observation_rows if self._wants_rows() else None)
        link = f"{req.base_url}/Observations("
        out: list[str] = []
        for res in results:
            if type(res) is int:
                out.append(f"{link}{res})")
                continue
            if res.status == 403:
                raise StaError(403, str(res))
            log.info("CreateObservations row refused: %s", res)
            out.append("error")
        return StaResponse(201, out)

    # ------------------------------------------------------------------ updating

    def _update(self, conn, ent: Entity, eid: int, req: StaRequest, ctx: _WriteCtx, *, put: bool) -> None:
        body = _json_body(req)
        if "json-patch" in req.content_type:
            if put:
                raise StaError(400, "JSON Patch needs PATCH, not PUT")
            current = self._json(ent, self._row(conn, ent, eid), req.base_url)
            patched = apply_json_patch(current, body)
            body = {k: v for k, v in patched.items() if k in ent.prop_by_name and v != current.get(k)}
            for k, v in patched.items():
                if k in ent.rel_by_name:
                    body[k] = v
        if not isinstance(body, dict):
            raise StaError(400, "the body must be a JSON object")
        if ent.name == "Observation":
            self._update_observation(conn, eid, body, req.principal, put=put)
            return
        values, rels = _parse(ent, body, partial=not put)
        if put:
            for p in ent.props:
                if p.kind != "ro" and p.column and p.name not in body and not p.required:
                    values[p.column] = None
        for rel in ent.rels:
            if rel.name not in rels:
                continue
            if not rel.many:
                if rels[rel.name] is None:
                    if rel.required:
                        raise StaError(400, f"{rel.name}: required, cannot be null")
                    values[rel.column] = None
                else:
                    values[rel.column] = self._ref_or_create(conn, ENTITIES[rel.target], rels[rel.name], rel.name, ctx, req.principal)
        if values:
            conn.execute(ent.table.update().where(ent.table.c.id == eid).values(**values))
        for rel in ent.rels:
            if not rel.many or rel.name not in rels:
                continue
            items = rels[rel.name]
            if not isinstance(items, list):
                raise StaError(400, f"{rel.name}: expected a JSON array")
            if rel.link is s.sta_thing_locations and ent.name == "Thing":
                conn.execute(rel.link.delete().where(rel.link.c.thing_id == eid))
            inv = inverse(ent, rel)
            for item in items:
                if isinstance(item, dict) and "@iot.id" in item:
                    self._link(conn, ent, eid, rel, _ref(item, rel.name), ctx)
                else:
                    inj = {inv.name: [{"@iot.id": eid}] if inv.many else {"@iot.id": eid}}
                    self.create(conn, ENTITIES[rel.target], item, ctx, inject=inj, principal=req.principal)

    def _update_observation(self, conn, eid: int, body: dict, principal, *, put: bool) -> None:
        ob, ds = s.sta_observations, s.sta_datastreams
        old_ds = conn.execute(sa.select(ob.c.datastream_id).where(ob.c.id == eid)).scalar_one()
        new_ds = ref_id(body["Datastream"], "Datastream") if "Datastream" in body else old_ds
        check_write_scope(principal, old_ds)
        check_write_scope(principal, new_ds)
        otype = conn.execute(sa.select(ds.c.observation_type).where(ds.c.id == new_ds)).scalar()
        if otype is None:
            raise StaError(400, f"Datastream: no Datastream with @iot.id {new_ds}")
        vals = observation_values({k: v for k, v in body.items() if k not in ("Datastream", "FeatureOfInterest")},
                                  observation_type=otype, now=datetime.now(UTC), partial=not put)
        vals["datastream_id"] = new_ds
        if "FeatureOfInterest" in body:
            vals["feature_id"] = ref_id(body["FeatureOfInterest"], "FeatureOfInterest")
        conn.execute(ob.update().where(ob.c.id == eid).values(**vals))
        for d in {old_ds, new_ds}:
            recompute_datastream_stats(conn, d)

    # ------------------------------------------------------------------ deleting

    def _delete(self, conn, ent: Entity, eid: int) -> None:
        """Delete with the standard's cascade (e.g. a Thing takes its Datastreams and their Observations)."""
        ob, ds = s.sta_observations, s.sta_datastreams
        hl, hll, tl = s.sta_historical_locations, s.sta_historical_location_locations, s.sta_thing_locations
        name = ent.name
        if name == "Observation":
            d = conn.execute(sa.select(ob.c.datastream_id).where(ob.c.id == eid)).scalar()
            conn.execute(ob.delete().where(ob.c.id == eid))
            if d is not None:
                recompute_datastream_stats(conn, d)
            return
        if name in ("Thing", "Sensor", "ObservedProperty"):
            col = {"Thing": ds.c.thing_id, "Sensor": ds.c.sensor_id, "ObservedProperty": ds.c.observed_property_id}[name]
            ids = list(conn.execute(sa.select(ds.c.id).where(col == eid)).scalars())
            if ids:
                conn.execute(ob.delete().where(ob.c.datastream_id.in_(ids)))
                conn.execute(ds.delete().where(ds.c.id.in_(ids)))
        if name == "Thing":
            hids = sa.select(hl.c.id).where(hl.c.thing_id == eid)
            conn.execute(hll.delete().where(hll.c.historical_location_id.in_(hids)))
            conn.execute(hl.delete().where(hl.c.thing_id == eid))
            conn.execute(tl.delete().where(tl.c.thing_id == eid))
        elif name == "Datastream":
            conn.execute(ob.delete().where(ob.c.datastream_id == eid))
        elif name == "Location":
            hids = list(conn.execute(sa.select(hll.c.historical_location_id).where(hll.c.location_id == eid)).scalars())
            conn.execute(tl.delete().where(tl.c.location_id == eid))
            conn.execute(hll.delete().where(hll.c.location_id == eid))
            if hids:
                conn.execute(hll.delete().where(hll.c.historical_location_id.in_(hids)))
                conn.execute(hl.delete().where(hl.c.id.in_(hids)))
        elif name == "HistoricalLocation":
            conn.execute(hll.delete().where(hll.c.historical_location_id == eid))
        elif name == "FeatureOfInterest":
            dss = list(conn.execute(sa.select(ob.c.datastream_id).where(ob.c.feature_id == eid).distinct()).scalars())
            conn.execute(ob.delete().where(ob.c.feature_id == eid))
            conn.execute(s.sta_locations.update().where(s.sta_locations.c.generated_foi_id == eid).values(generated_foi_id=None))
            for d in dss:
                recompute_datastream_stats(conn, d)
        conn.execute(ent.table.delete().where(ent.table.c.id == eid))


# ---------------------------------------------------------------------- helpers


def error_response(status: int, message: str) -> StaResponse:
    kinds = {400: "bad request", 401: "unauthorized", 403: "forbidden", 404: "not found", 405: "method not allowed",
             409: "conflict", 413: "payload too large", 415: "unsupported media type"}
    return StaResponse(status, {"code": status, "type": "error", "message": message, "detail": message,
                                "error": kinds.get(status, "error")})


def _require_read(principal) -> None:
    if principal is None:
        return
    if principal.role not in ("viewer", "analyst", "operator", "admin"):
        raise StaError(403, "reading requires role viewer or higher")


def _require_cud(principal, ent: Entity) -> None:
    if principal is None:
        return
    if principal.kind != "user" or principal.role not in ("operator", "admin"):
        what = "API keys may only create Observations" if principal.kind != "user" else \
            f"changing {ent.plural} requires role operator or higher"
        raise StaError(403, what)


def _int_id(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise StaError(404, f"ids are integers, got {text!r}") from None


def _int_option(q: dict, name: str, default: int) -> int:
    if name not in q:
        return default
    try:
        v = int(q[name])
    except ValueError:
        raise StaError(400, f"{name}: expected a non-negative integer, got {q[name]!r}") from None
    if v < 0:
        raise StaError(400, f"{name}: expected a non-negative integer, got {v}")
    return v


def _ref(value: Any, field_name: str) -> int:
    try:
        return ref_id(value, field_name)
    except IngestError as exc:
        raise StaError(400, str(exc)) from None


def _json_body(req: StaRequest) -> Any:
    if req.body is None or not req.body.strip():
        raise StaError(400, "the request body is empty; send JSON")
    try:
        return json.loads(req.body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise StaError(400, f"malformed JSON: {exc}") from None


def _plural_of_link(link: str) -> str:
    m = re.search(r"/([A-Za-z]+)\(\d+\)$", link)
    return m.group(1) if m else ""


def _select(ent: Entity, text: str | None) -> list[str] | None:
    if not text:
        return None
    names = odata.parse_select(text)
    for n in names:
        if n not in ent.prop_by_name and n not in ent.rel_by_name and n not in ("id", "@iot.id", "selfLink", "@iot.selfLink"):
            raise StaError(400, f"$select: {ent.name} has no property {n!r}")
    return names


def _expand_text(spec: dict) -> str:
    text = spec["name"]
    opts = [f"{k}={v}" for k, v in spec["options"].items()]
    if spec["expand"]:
        opts.append("$expand=" + ",".join(_expand_text(e) for e in spec["expand"]))
    return f"{text}({';'.join(opts)})" if opts else text


def _many_cond(rel: Rel, tgt_table: sa.Table, parent_id: int):
    if rel.via == "other":
        return tgt_table.c[rel.column] == parent_id
    link = rel.link
    return tgt_table.c.id.in_(sa.select(link.c[rel.link_other]).where(link.c[rel.link_self] == parent_id))


def _prop_value(ent: Entity, p: Prop, row) -> Any:
    k = p.kind
    if k in ("str", "json", "geo"):
        return row[p.column]
    if k == "time":
        return iso(row[p.column])
    if k == "ptime":
        return _interval(row["phenomenon_time"], row["phenomenon_time_end"])
    if k == "interval":
        return _interval(row["valid_time_start"], row["valid_time_end"])
    if k == "result":
        return result_value(row)
    if k == "ro":  # Datastream phenomenonTime / resultTime envelopes
        if p.name == "phenomenonTime":
            a, b = row["phenomenon_time_start"], row["phenomenon_time_end"]
        else:
            a, b = row["result_time_start"], row["result_time_end"]
        return None if a is None else f"{iso(a)}/{iso(b or a)}"
    raise AssertionError(k)


def _parse(ent: Entity, body: dict, *, partial: bool) -> tuple[dict, dict]:
    values: dict[str, Any] = {}
    rels: dict[str, Any] = {}
    for k, v in body.items():
        if k in ent.prop_by_name:
            p = ent.prop_by_name[k]
            if p.kind == "ro":
                continue
            values.update(_convert(ent, p, v))
        elif k in ent.rel_by_name:
            rels[k] = v
        elif k in ("@iot.id", "@iot.selfLink", "id") or k.endswith("@iot.navigationLink") or k.endswith("@iot.count"):
            continue
        else:
            accepted = [p.name for p in ent.props if p.kind != "ro"] + [r.name for r in ent.rels]
            raise StaError(400, f"{k}: unknown property of {ent.name}; accepted: {', '.join(accepted)}")
    if not partial:
        for p in ent.props:
            if p.required and p.kind != "ro" and body.get(p.name) is None:
                raise StaError(400, f"{p.name}: missing (required) for {ent.name}")
    return values, rels


def _convert(ent: Entity, p: Prop, v: Any) -> dict:
    if v is None:
        if p.required:
            raise StaError(400, f"{p.name}: required for {ent.name}, cannot be null")
        return {p.column: None} | ({"minx": None, "miny": None, "maxx": None, "maxy": None} if ent.bbox_prop == p.name else {})
    if p.kind == "str":
        if p.name == "metadata" and not isinstance(v, str):
            v = json.dumps(v)
        if not isinstance(v, str):
            raise StaError(400, f"{p.name}: expected a string, got {type(v).__name__}")
        if p.name == "encodingType" and ent.name in ("Location", "FeatureOfInterest") and v not in GEOJSON_TYPES:
            raise StaError(400, f"encodingType: accepted {', '.join(sorted(GEOJSON_TYPES))}")
        return {p.column: v}
    if p.kind == "json":
        if not isinstance(v, dict):
            raise StaError(400, f"{p.name}: expected a JSON object")
        return {p.column: v}
    if p.kind == "geo":
        _check_geometry(v, p.name)
        out = {p.column: v}
        if ent.bbox_prop == p.name:
            out.update(bbox_of(v))
        return out
    if p.kind == "time":
        try:
            return {p.column: odata.parse_datetime(v) if isinstance(v, str) else _bad_time(p.name)}
        except QueryError:
            raise StaError(400, f"{p.name}: not an ISO 8601 time: {v!r}") from None
    raise StaError(400, f"{p.name}: cannot be set")


def _bad_time(name):
    raise StaError(400, f"{name}: expected an ISO 8601 time string")


def _bbox_prefilter(ent: Entity, table, node):
    """Bounding-box overlap for st_within/st_intersects/... on the entity's own geometry."""
    if node[0] != "fn" or ent.bbox_prop is None:
        return None
    if node[1] not in {"st_within", "st_intersects", "geo.intersects", "st_equals", "st_overlaps",
                       "st_crosses", "st_touches", "st_contains"}:
        return None
    a, b = node[2][0], node[2][1]
    if a[0] == "geo":
        a, b = b, a
    if a[0] != "path" or a[1] != [ent.bbox_prop] or b[0] != "geo":
        return None
    minx, miny, maxx, maxy = b[1].bounds
    return sa.and_(table.c.maxx >= minx, table.c.minx <= maxx, table.c.maxy >= miny, table.c.miny <= maxy)


def apply_json_patch(doc: dict, ops: Any) -> dict:
    """Apply RFC 6902 operations (add, remove, replace, move, copy, test) to a copy of ``doc``."""
    import copy

    if not isinstance(ops, list):
        raise StaError(400, "JSON Patch: the body must be an array of operations")
    doc = copy.deepcopy(doc)

    def split(ptr: str) -> list[str]:
        if not isinstance(ptr, str) or not ptr.startswith("/"):
            raise StaError(400, f"JSON Patch: invalid path {ptr!r}")
        return [p.replace("~1", "/").replace("~0", "~") for p in ptr[1:].split("/")]

    def parent(path: list[str]):
        cur: Any = doc
        for key in path[:-1]:
            if isinstance(cur, list):
                cur = cur[int(key)]
            elif isinstance(cur, dict):
                if cur.get(key) is None:
                    cur[key] = {}
                cur = cur[key]
            else:
                raise StaError(400, f"JSON Patch: cannot descend into {key!r}")
        return cur, path[-1]

    def get(path):
        c, k = parent(path)
        try:
            return c[int(k)] if isinstance(c, list) else c[k]
        except (KeyError, IndexError, ValueError):
            raise StaError(400, f"JSON Patch: path /{'/'.join(path)} does not exist") from None

    def put(path, value, replace=False):
        c, k = parent(path)
        if isinstance(c, list):
            idx = len(c) if k == "-" else int(k)
            if replace:
                c[idx] = value
            else:
                c.insert(idx, value)
        else:
            c[k] = value

    def remove(path):
        c, k = parent(path)
        get(path)
        if isinstance(c, list):
            del c[int(k)]
        else:
            del c[k]

    for op in ops:
        if not isinstance(op, dict) or "op" not in op or "path" not in op:
            raise StaError(400, "JSON Patch: every operation needs 'op' and 'path'")
        path = split(op["path"])
        kind = op["op"]
        if kind == "add":
            put(path, op.get("value"))
        elif kind == "replace":
            get(path) if path[0] not in doc else None
            put(path, op.get("value"), replace=True)
        elif kind == "remove":
            remove(path)
        elif kind in ("move", "copy"):
            src = split(op.get("from", ""))
            value = get(src)
            if kind == "move":
                remove(src)
            put(path, copy.deepcopy(value))
        elif kind == "test":
            if get(path) != op.get("value"):
                raise StaError(409, f"JSON Patch: test failed at {op['path']}")
        else:
            raise StaError(400, f"JSON Patch: unknown op {kind!r}")
    return doc


# ---------------------------------------------------------------------- $filter → SQL


class _Compiler:
    """Compiles a ``$filter`` AST to a SQLAlchemy expression on ``table`` (navigation via EXISTS)."""

    def __init__(self, ent: Entity, table):
        self.ent = ent
        self.table = table
        self.now = datetime.now(UTC)

    def boolean(self, node):
        expr, conds, _ = self.expr(node, None)
        if conds:
            return sa.exists(sa.select(sa.literal(1)).where(*conds, expr))
        return expr

    def order_expr(self, node):
        if odata.contains_python_only(node):
            raise QueryError("$orderby: geospatial and math functions are not supported")
        expr, conds, _ = self.expr(node, None)
        if conds:
            return sa.select(expr).where(*conds).limit(1).scalar_subquery()
        return expr

    def _lit(self, value):
        if isinstance(value, datetime):
            return sa.literal(value, s.UTCDateTime()), "time"
        if value is None:
            return sa.null(), "null"
        if isinstance(value, bool):
            return sa.literal(value), "bool"
        if isinstance(value, int | float):
            return sa.literal(value), "num"
        return sa.literal(value, sa.String), "str"

    @staticmethod
    def _hint(node) -> str | None:
        if node[0] == "lit":
            v = node[1]
            if isinstance(v, bool):
                return "bool"
            if isinstance(v, int | float):
                return "num"
            if isinstance(v, str):
                return "str"
            if isinstance(v, datetime):
                return "time"
        if node[0] == "arith" or (node[0] == "fn" and node[1] in ("length", "indexof", "year", "month", "day",
                                                                    "hour", "minute", "second")):
            return "num"
        if node[0] == "fn" and node[1] in ("tolower", "toupper", "trim", "concat", "substring"):
            return "str"
        if node[0] == "fn" and node[1] == "now":
            return "time"
        return None

    def expr(self, node, hint):
        kind = node[0]
        if kind == "lit":
            e, k = self._lit(node[1])
            if hint == "result_bool" and isinstance(node[1], bool):
                return sa.literal(float(node[1])), [], "num"
            return e, [], k
        if kind == "path":
            return self.path(node[1], hint)
        if kind in ("and", "or"):
            a, b = self.boolean(node[1]), self.boolean(node[2])
            return (sa.and_(a, b) if kind == "and" else sa.or_(a, b)), [], "bool"
        if kind == "not":
            return sa.not_(self.boolean(node[1])), [], "bool"
        if kind == "neg":
            e, c, _ = self.expr(node[1], "num")
            return -e, c, "num"
        if kind == "cmp":
            op, left, right = node[1], node[2], node[3]
            lh, rh = self._hint(right), self._hint(left)
            if lh == "bool" and left[0] == "path" and left[1][-1] == "result":
                lh = rh = "result_bool"
            elif rh == "bool" and right[0] == "path" and right[1][-1] == "result":
                lh = rh = "result_bool"
            a, ca, ka = self.expr(left, lh)
            b, cb, kb = self.expr(right, rh)
            if ka == "null" or kb == "null":
                other = b if ka == "null" else a
                if op not in ("eq", "ne"):
                    raise QueryError(f"$filter: null can only be compared with eq or ne, not {op}")
                return (other.is_(None) if op == "eq" else other.is_not(None)), ca + cb, "bool"
            ops = {"eq": a == b, "ne": a != b, "gt": a > b, "ge": a >= b, "lt": a < b, "le": a <= b}
            return ops[op], ca + cb, "bool"
        if kind == "arith":
            a, ca, _ = self.expr(node[2], "num")
            b, cb, _ = self.expr(node[3], "num")
            op = node[1]
            e = {"add": lambda: a + b, "sub": lambda: a - b, "mul": lambda: a * b,
                 "div": lambda: sa.cast(a, sa.Float) / b, "mod": lambda: a % b}[op]()
            return e, ca + cb, "num"
        if kind == "fn":
            return self.function(node[1], node[2])
        if kind == "geo":
            raise QueryError("$filter: geometry literals only inside geospatial functions")
        raise QueryError(f"$filter: cannot translate {kind}")

    def function(self, name: str, args: list):
        if name == "now":
            return sa.literal(self.now, s.UTCDateTime()), [], "time"
        if name in ("mindatetime", "maxdatetime"):
            return sa.literal(odata._call(name, []), s.UTCDateTime()), [], "time"
        if name in ("year", "month", "day", "hour", "minute", "second"):
            e, c, _ = self.expr(args[0], "time")
            ex = sa.extract(name, e)
            if name == "second":
                ex = sa.cast(ex, sa.Integer)
            return ex, c, "num"
        compiled = [self.expr(a, "str") for a in args]
        conds = [c for _, cs, _ in compiled for c in cs]
        x = [e for e, _, _ in compiled]
        if name in ("substringof", "contains", "startswith", "endswith"):
            # case-sensitive on both databases (SQLite's LIKE is not)
            hay, needle = (x[1], x[0]) if name == "substringof" else (x[0], x[1])
            if name == "startswith":
                return _IndexOf(hay, needle) == 1, conds, "bool"
            if name == "endswith":
                return sa.func.substr(hay, sa.func.length(hay) - sa.func.length(needle) + 1) == needle, conds, "bool"
            return _IndexOf(hay, needle) > 0, conds, "bool"
        if name == "length":
            return sa.func.length(x[0]), conds, "num"
        if name == "tolower":
            return sa.func.lower(x[0]), conds, "str"
        if name == "toupper":
            return sa.func.upper(x[0]), conds, "str"
        if name == "trim":
            return sa.func.trim(x[0]), conds, "str"
        if name == "concat":
            return x[0].concat(x[1]), conds, "str"
        if name == "indexof":
            return _IndexOf(x[0], x[1]) - 1, conds, "num"
        if name == "substring":
            start, cs, _ = self.expr(args[1], "num")
            if len(args) == 3:
                length, cl, _ = self.expr(args[2], "num")
                return sa.func.substr(x[0], start + 1, length), conds + cs + cl, "str"
            return sa.func.substr(x[0], start + 1), conds + cs, "str"
        raise QueryError(f"$filter: function {name}() is not supported here")

    def path(self, segs: list[str], hint):
        ent, tbl, conds = self.ent, self.table, []
        i = 0
        while i < len(segs) and segs[i] in ent.rel_by_name:
            rel = ent.rel_by_name[segs[i]]
            tgt = ENTITIES[rel.target]
            alias = tgt.table.alias()
            if rel.via == "self":
                conds.append(alias.c.id == tbl.c[rel.column])
            elif rel.via == "other":
                conds.append(alias.c[rel.column] == tbl.c.id)
            else:
                link = rel.link.alias()
                conds += [link.c[rel.link_self] == tbl.c.id, link.c[rel.link_other] == alias.c.id]
            ent, tbl = tgt, alias
            i += 1
        rest = segs[i:]
        if not rest:
            raise QueryError(f"$filter: {'/'.join(segs)} names an entity, not a property")
        name = rest[0]
        if name in ("id", "@iot.id"):
            return tbl.c.id, conds, "num"
        p = ent.prop_by_name.get(name)
        if p is None:
            raise QueryError(f"$filter: {ent.name} has no property {name!r}")
        if p.kind == "result":
            if hint == "str":
                return tbl.c.result_string, conds, "str"
            return tbl.c.result_number, conds, "num"
        if p.kind in ("json", "geo"):
            col = tbl.c[p.column]
            if len(rest) == 1:
                if p.kind == "geo":
                    raise QueryError(f"$filter: {name} is a geometry; use a geospatial function")
                raise QueryError(f"$filter: {name} is an object; name a member, e.g. {name}/key")
            elem = col[tuple(rest[1:])] if len(rest) > 2 else col[rest[1]]
            if hint in ("num", "result_bool"):
                return elem.as_float(), conds, "num"
            if hint == "bool":
                return elem.as_boolean(), conds, "bool"
            return elem.as_string(), conds, "str"
        if len(rest) > 1:
            raise QueryError(f"$filter: {name} has no members")
        if p.kind == "ptime":
            return tbl.c.phenomenon_time, conds, "time"
        if p.kind == "interval":
            return tbl.c.valid_time_start, conds, "time"
        if p.kind == "ro":
            col = tbl.c.phenomenon_time_start if name == "phenomenonTime" else tbl.c.result_time_start
            return col, conds, "time"
        return tbl.c[p.column], conds, ("time" if p.kind == "time" else "str")


class _IndexOf(sa.sql.functions.GenericFunction):
    """1-based position of a substring: ``instr`` on SQLite, ``strpos`` on PostgreSQL."""

    type = sa.Integer()
    inherit_cache = True
    name = "ct_indexof"


@compiles(_IndexOf)
def _indexof_default(element, compiler, **kw):
    return "instr(%s)" % compiler.process(element.clauses, **kw)


@compiles(_IndexOf, "postgresql")
def _indexof_pg(element, compiler, **kw):
    return "strpos(%s)" % compiler.process(element.clauses, **kw)


__all__ = ["StaError", "StaRequest", "StaResponse", "StaService"]
