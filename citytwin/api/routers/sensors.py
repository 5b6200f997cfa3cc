"""SensorThings API 1.1 at ``/sta/v1.1`` and sensor health at ``/api/sensors``; a thin adapter.

Every STA route needs at least the viewer role (user bearer token, API key as bearer token, or
HTTP Basic with a key or a user's credentials, so that standard clients such as
``frost-sta-client`` work). Bodies are read with a size limit, so chunked uploads are capped too.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import time
from contextlib import asynccontextmanager

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from citytwin import security
from citytwin.api.deps import Principal, current_principal, require_role
from citytwin.sensors import batch, keys
from citytwin.sensors.service import StaRequest, StaResponse, StaService, error_response

STA_PREFIX = "/sta/v1.1"
router = APIRouter(tags=["sensors"])
_BASIC_CACHE_S = 300.0


def _service(request: Request) -> StaService:
    return request.app.state.sta


async def _read_body(request: Request) -> bytes:
    """The body, refusing more than ``max_body_bytes`` even without a Content-Length."""
    limit = request.app.state.settings.max_body_bytes
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HTTPException(413,
                                detail=f"request body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _to_response(resp: StaResponse) -> Response:
    if resp.status == 204 or (resp.body is None and resp.status == 200):
        return Response(status_code=resp.status if resp.status != 200 else 200, headers=resp.headers)
    if resp.media_type == "application/json":
        return JSONResponse(resp.body, status_code=resp.status, headers=resp.headers)
    body = resp.body if isinstance(resp.body, bytes | str) else json.dumps(resp.body)
    return Response(body, status_code=resp.status, headers=resp.headers, media_type=resp.media_type)


def _base_url(request: Request) -> str:
    return str(request.base_url).rstrip("/") + STA_PREFIX


async def _sta(request: Request, path: str, principal: Principal) -> Response:
    body = await _read_body(request) if request.method in ("POST", "PATCH", "PUT") else None
    svc = _service(request)
    if path.strip("/") == "$batch":
        if request.method != "POST":
            return _to_response(error_response(405, "$batch accepts POST only"))
        resp = await run_in_threadpool(
            batch.handle_batch, svc, body or b"", request.headers.get("content-type", ""),
            principal=principal, base_url=_base_url(request),
        )
        return _to_response(resp)
    req = StaRequest(
        method=request.method, path=path, query=dict(request.query_params), body=body,
        content_type=request.headers.get("content-type", "application/json"),
        principal=principal, base_url=_base_url(request),
    )
    return _to_response(await run_in_threadpool(svc.handle, req))


_METHODS = ["GET", "POST", "PATCH", "PUT", "DELETE"]


@router.api_route(STA_PREFIX, methods=["GET"], include_in_schema=False)
@router.api_route(STA_PREFIX + "/", methods=["GET"], include_in_schema=False)
async def sta_root(request: Request, principal: Principal = Depends(current_principal)) -> Response:
    """SensorThings service root: entity sets and conformance classes."""
    return await _sta(request, "", principal)


async def sta(path: str, request: Request, principal: Principal = Depends(current_principal)) -> Response:
    """OGC SensorThings API 1.1 (Part 1: Sensing) with dataArray, $batch and JSON Patch."""
    return await _sta(request, path, principal)


for _method in _METHODS:  # one route per method, so each has its own OpenAPI operation id
    router.add_api_route(
        STA_PREFIX + "/{path:path}", sta, methods=[_method], operation_id=f"sta_{_method.lower()}",
        summary=f"SensorThings API 1.1 ({_method})",
    )


@router.get("/api/sensors/quality")
def quality(request: Request, principal: Principal = Depends(require_role("viewer"))) -> dict:
    """Data quality per Datastream: last observation, age, staleness, flagged values, gaps."""
    from citytwin.sensors.quality import quality_report

    with request.app.state.engine.connect() as conn:
        return {"datastreams": quality_report(conn)}


# ---------------------------------------------------------------------- authentication


def _key_principal(row: dict) -> Principal:
    return Principal(name=f"key:{row['name']}", role=row["role"], kind="apikey",
                     datastreams=frozenset(int(d) for d in row["datastreams"]))


def make_authenticator(app: FastAPI):
    """API keys as bearer tokens anywhere; HTTP Basic (key or user password) on /sta only."""
    cache: dict[str, tuple[float, Principal]] = {}

    def authenticate(request: Request, token: str | None) -> Principal | None:
        engine = app.state.engine
        if token is not None:
            with engine.connect() as conn:
                row = keys.verify_key(conn, token)
            return _key_principal(row) if row else None
        header = request.headers.get("authorization", "")
        if not header.lower().startswith("basic ") or not request.url.path.startswith("/sta/"):
            return None
        try:
            user, _, password = base64.b64decode(header[6:].strip()).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        with engine.connect() as conn:
            row = keys.verify_key(conn, password)
        if row:
            return _key_principal(row)
        try:
            claims = security.decode_token(password, secret=app.state.secret_key)
            return Principal(name=claims["sub"], role=claims["role"])
        except security.AuthError:
            pass
        ck = hashlib.sha256(f"{user}\0{password}".encode()).hexdigest()
        hit = cache.get(ck)
        if hit and hit[0] > time.monotonic():
            return hit[1]
        with engine.connect() as conn:
            try:
                u = security.authenticate(conn, name=user, password=password)
            except security.AuthError:
                return None
        p = Principal(name=u["name"], role=u["role"])
        cache[ck] = (time.monotonic() + _BASIC_CACHE_S, p)
        return p

    return authenticate


def install(app: FastAPI) -> None:
    """Mount the SensorThings API, register API-key authentication and the MQTT bridge."""
    svc = StaService(app.state.engine)
    app.state.sta = svc
    app.state.authenticators.append(make_authenticator(app))
    app.include_router(router)

    settings = app.state.settings
    if settings.mqtt_url:
        from citytwin.sensors.mqtt import MqttBridge

        bridge = MqttBridge(svc, settings.mqtt_url, require_key=settings.mqtt_require_key)
        app.state.mqtt_bridge = bridge
        svc.mqtt_endpoint = settings.mqtt_url
        original = app.router.lifespan_context

        @asynccontextmanager
        async def lifespan(a):
            bridge.start()
            try:
                async with original(a) as state:
                    yield state
            finally:
                bridge.stop()

        app.router.lifespan_context = lifespan
