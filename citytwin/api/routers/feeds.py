"""City feeds at ``/api/feeds``: register sources, post feed payloads, read views, live stream.

A thin adapter over :mod:`citytwin.sensors.feeds.service`. Reads need viewer; registering a
source needs operator; posting a payload needs operator or an API key scoped to one of the
source's Datastreams. A refused payload answers 4xx with ``detail`` naming the fields, and
nothing is stored.
"""

from __future__ import annotations

import asyncio
import json
import time
from contextlib import asynccontextmanager

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool

from citytwin.api.deps import Principal, current_principal, require_role
from citytwin.sensors.feeds import service as feeds
from citytwin.sensors.feeds._base import FeedError
from citytwin.sensors.feeds._city import ZoneIndex
from citytwin.sensors.live import Broadcaster

router = APIRouter(prefix="/api/feeds", tags=["feeds"])
SSE_MAX_S = 300.0  #: an SSE response ends after this; EventSource reconnects by itself
SSE_HEARTBEAT_S = 15.0


def _error(exc: FeedError) -> JSONResponse:
    return JSONResponse({"detail": str(exc), "fields": exc.fields}, status_code=exc.status)


async def _json_body(request: Request):
    limit = request.app.state.settings.max_body_bytes
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HTTPException(413, detail=f"request body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    try:
        return json.loads(b"".join(chunks) or b"null")
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise HTTPException(400, detail=f"malformed JSON: {exc}") from None


def _zone_index(app: FastAPI):
    cache: dict = app.state.feed_zone_cache

    def get(city_id):
        if city_id is None:
            return None
        if city_id not in cache:
            with app.state.engine.connect() as conn:
                cache[city_id] = ZoneIndex.load(conn, city_id)
        return cache[city_id]

    return get


def _viewer(principal: Principal = Depends(current_principal)) -> Principal:
    if principal.kind == "user":
        from citytwin import security

        if not security.has_role(principal.role, "viewer"):
            raise HTTPException(403, detail="requires role viewer or higher")
    return principal


@router.get("/sources")
def sources(request: Request, _: Principal = Depends(_viewer)) -> dict:
    """Registered feed sources with their Thing and Datastream ids."""
    with request.app.state.engine.connect() as conn:
        return {"sources": feeds.list_sources(conn)}


@router.post("/sources", status_code=201)
async def register(request: Request, _: Principal = Depends(require_role("operator"))):
    """Register a feed source (camera, parking, traffic, gbfs, weather, appgps); idempotent by name."""
    body = await _json_body(request)
    try:
        src = await run_in_threadpool(feeds.register_from_spec, request.app.state.sta, body)
    except FeedError as exc:
        return _error(exc)
    return JSONResponse(src.as_json(), status_code=201)


async def _post(kind: str, source: int, request: Request, principal: Principal):
    body = await _json_body(request)
    app = request.app
    try:
        src = await run_in_threadpool(feeds.load_source, app.state.engine, kind=kind, source_id=source)
        feeds.check_scope(principal, src)
        out = await run_in_threadpool(feeds.ingest_payload, app.state.sta, src, body, zone_index=_zone_index(app))
    except FeedError as exc:
        return _error(exc)
    app.state.live.wake()
    return JSONResponse({"source": source, **out}, status_code=201)


@router.post("/gbfs", status_code=201)
async def post_gbfs(request: Request, source: int = Query(..., description="the gbfs source's Thing id"),
                    principal: Principal = Depends(current_principal)):
    """Ingest a GBFS 2.3 free_bike_status or 3.0 vehicle_status document (counts per zone, positions)."""
    return await _post("gbfs", source, request, principal)


@router.post("/appgps", status_code=201)
async def post_appgps(request: Request, source: int = Query(..., description="the appgps source's Thing id"),
                      principal: Principal = Depends(current_principal)):
    """Ingest app-GPS aggregates per zone-hour; counts below k are suppressed, raw positions refused."""
    return await _post("appgps", source, request, principal)


@router.post("/{kind}/{source}", status_code=201)
async def post_feed(kind: str, source: int, request: Request, principal: Principal = Depends(current_principal)):
    """Ingest a payload of a camera, parking, traffic or weather source (see docs/sensors.md)."""
    if kind not in ("camera", "parking", "traffic", "weather", "gbfs", "appgps"):
        raise HTTPException(404, detail=f"unknown feed kind {kind!r}")
    return await _post(kind, source, request, principal)


@router.get("/sensors")
def sensors(request: Request, _: Principal = Depends(_viewer)) -> dict:
    """All Things and Datastreams: latest value, age, stale flag, quality flags, origin."""
    with request.app.state.engine.connect() as conn:
        return feeds.sensors_overview(conn)


@router.get("/parking")
def parking(request: Request, hours: float = Query(24.0, gt=0, le=24 * 31, description="history window (h)"),
            _: Principal = Depends(_viewer)) -> dict:
    """Garages with occupancy now, capacity, free spaces, age and history."""
    with request.app.state.engine.connect() as conn:
        return feeds.parking_view(conn, hours=hours)


@router.get("/traffic")
def traffic(request: Request, _: Principal = Depends(_viewer)) -> dict:
    """Street segments with a traffic source as GeoJSON: level now (free/busy/jammed) and age."""
    with request.app.state.engine.connect() as conn:
        return feeds.traffic_view(conn)


@router.get("/vehicles")
def vehicles(request: Request, _: Principal = Depends(_viewer)) -> dict:
    """Available shared vehicles of the latest GBFS feed as GeoJSON points (no ids)."""
    with request.app.state.engine.connect() as conn:
        return feeds.vehicles_view(conn)


@router.get("/stream")
async def stream(request: Request, max_events: int | None = Query(None, ge=1, description="close after this many events"),
                 _: Principal = Depends(_viewer)):
    """Server-sent events: a summary of new Observations (per Datastream: count, newest value)."""
    live: Broadcaster = request.app.state.live
    after = live.subscribe()

    async def gen():
        nonlocal after
        sent = 0
        start = last_beat = time.monotonic()
        try:
            yield "retry: 2000\n: connected\n\n"
            while time.monotonic() - start < SSE_MAX_S:
                events = live.events_after(after)
                for seq, ev in events:
                    after = seq
                    yield f"id: {seq}\nevent: observations\ndata: {json.dumps(ev, default=str)}\n\n"
                    sent += 1
                    if max_events is not None and sent >= max_events:
                        return
                if time.monotonic() - last_beat > SSE_HEARTBEAT_S:
                    last_beat = time.monotonic()
                    yield ": heartbeat\n\n"
                await asyncio.sleep(0.2)
        finally:
            live.unsubscribe()

    return StreamingResponse(gen(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


def install(app: FastAPI) -> None:
    """Mount ``/api/feeds`` and the live broadcaster (closed on shutdown)."""
    if not hasattr(app.state, "sta"):  # the SensorThings router installs the service first
        from citytwin.sensors.service import StaService

        app.state.sta = StaService(app.state.engine)
    app.state.live = Broadcaster(app.state.engine)
    app.state.feed_zone_cache = {}
    app.include_router(router)
    original = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(a):
        try:
            async with original(a) as state:
                yield state
        finally:
            app.state.live.close()

    app.router.lifespan_context = lifespan
