"""Crowd safety at ``/api/crowd``: nowcast, forecast, skill, events, alerts, parking.

A thin adapter over :class:`citytwin.crowd.service.CrowdService`. Reads need viewer; writing
events, acknowledging alerts and retraining need operator. Errors answer 4xx with ``detail``
and ``field`` naming the culprit.
"""

from __future__ import annotations

from contextlib import asynccontextmanager

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from citytwin.api.deps import Principal, require_role
from citytwin.crowd import alerts as A
from citytwin.crowd.levels import DEFAULT_THRESHOLDS, LEVELS, SOURCES
from citytwin.crowd.service import CrowdError, CrowdScheduler, CrowdService, default_settings

router = APIRouter(prefix="/api/crowd", tags=["crowd"])


def _svc(request: Request) -> CrowdService:
    return request.app.state.crowd


def _error(exc: CrowdError | A.AlertError) -> JSONResponse:
    return JSONResponse({"detail": str(exc), "field": exc.field}, status_code=exc.status)


async def _body(request: Request):
    try:
        return await request.json()
    except ValueError:
        return JSONResponse({"detail": "malformed JSON body", "field": "body"}, status_code=400)


@router.get("/levels")
def levels(_: Principal = Depends(require_role("viewer"))) -> dict:
    """Level names, default density thresholds (persons/m²) per zone kind and their sources."""
    return {"levels": list(LEVELS), "thresholds": DEFAULT_THRESHOLDS, "sources": SOURCES}


@router.get("/nowcast")
async def nowcast(request: Request, _: Principal = Depends(require_role("viewer"))):
    """Every zone now: people, density (persons/m²) with range, level, trend, data age, flags."""
    try:
        return await run_in_threadpool(_svc(request).nowcast)
    except CrowdError as exc:
        return _error(exc)


@router.get("/forecast")
async def forecast(
    request: Request,
    zone_id: int = Query(..., description="zone id"),
    allow_stale: bool = Query(False, description="forecast even when the input is stale"),
    _: Principal = Depends(require_role("viewer")),
):
    """Next 24 h for a zone: density with 80/95 % bands, level probabilities, history, events, skill."""
    try:
        return await run_in_threadpool(
            _svc(request).forecast_zone, zone_id, allow_stale=allow_stale
        )
    except CrowdError as exc:
        return _error(exc)


@router.get("/forecast/all")
async def forecast_all(
    request: Request,
    allow_stale: bool = Query(False, description="forecast even when the input is stale"),
    _: Principal = Depends(require_role("viewer")),
):
    """Next 24 h for every zone with counting cameras, in one batch (same shape per zone as
    ``/forecast``). Zones that cannot be forecast are listed under ``errors`` with ``detail``,
    ``field`` and ``status``; when none can, the first refusal is the answer (e.g. 409
    ``allow_stale`` on stale input)."""
    try:
        out = await run_in_threadpool(lambda: _svc(request).forecast_all(allow_stale=allow_stale))
    except CrowdError as exc:
        return _error(exc)
    zones = [z for z in out.values() if "error" not in z]
    errors = [{"zone_id": z["zone_id"], **z["error"]} for z in out.values() if "error" in z]
    if not zones and errors:
        stale = [e for e in errors if e["field"] == "allow_stale"]
        e = (stale or errors)[0]
        return JSONResponse(
            {"detail": e["detail"], "field": e["field"], "errors": errors}, status_code=e["status"]
        )
    return {"zones": zones, "errors": errors}


@router.get("/forecast/zones")
async def forecast_zones(request: Request, _: Principal = Depends(require_role("viewer"))):
    """Level per zone and hour from the latest stored forecast of each zone (for the time slider)."""
    return await run_in_threadpool(_latest_levels, _svc(request))


def _latest_levels(svc: CrowdService) -> dict:
    import sqlalchemy as sa

    from citytwin.crowd.schema import crowd_forecasts as f

    with svc.engine.connect() as conn:
        last = (
            sa.select(f.c.zone_id, sa.func.max(f.c.issued_at).label("issued"))
            .where(f.c.datastream_id.is_(None))
            .group_by(f.c.zone_id)
            .subquery()
        )
        rows = conn.execute(
            sa.select(
                f.c.zone_id,
                f.c.lead_h,
                f.c.target_time,
                f.c.level,
                f.c.point,
                f.c.p_levels,
                f.c.issued_at,
                f.c.model_version,
            )
            .join(last, sa.and_(last.c.zone_id == f.c.zone_id, last.c.issued == f.c.issued_at))
            .where(f.c.datastream_id.is_(None))
            .order_by(f.c.zone_id, f.c.lead_h)
        ).all()
    zones: dict[int, dict] = {}
    for r in rows:
        z = zones.setdefault(
            r.zone_id,
            {
                "zone_id": r.zone_id,
                "issued_at": r.issued_at.isoformat(),
                "model_version": r.model_version,
                "hours": [],
            },
        )
        z["hours"].append(
            {
                "lead_h": r.lead_h,
                "time": r.target_time.isoformat(),
                "level": r.level,
                "density": r.point,
                "p_levels": r.p_levels,
            }
        )
    return {"zones": list(zones.values())}


@router.get("/skill")
async def skill(request: Request, _: Principal = Depends(require_role("viewer"))):
    """Backtest skill (MAE, MASE, 80/95 % coverage) per zone and per sensor."""
    return await run_in_threadpool(_svc(request).skill)


@router.get("/model")
async def model(request: Request, _: Principal = Depends(require_role("viewer"))):
    """The current model: version, training window, created_at (null before the first training)."""
    info = await run_in_threadpool(_svc(request).model_info)
    if info is not None:
        info = {**info, "created_at": info["created_at"].isoformat()}
        info.pop("path", None)
    sched = getattr(request.app.state, "crowd_scheduler", None)
    return {
        "model": info,
        "scheduler": None if sched is None else {"last": sched.last, "error": sched.error},
    }


@router.post("/train")
async def train(
    request: Request,
    skill: bool = Query(True, description="also backtest the last week"),
    _: Principal = Depends(require_role("operator")),
):
    """Retrain the global model now (on demand), then refresh forecasts and alerts."""
    svc = _svc(request)
    try:
        out = {"model": await run_in_threadpool(svc.train)}
        if skill:
            try:
                out["skill"] = await run_in_threadpool(svc.compute_skill)
            except (CrowdError, ValueError) as exc:
                out["skill"] = {"error": str(exc), "field": getattr(exc, "field", None)}
        out["refresh"] = await run_in_threadpool(svc.refresh)
    except CrowdError as exc:
        return _error(exc)
    return out


@router.post("/refresh")
async def refresh(request: Request, _: Principal = Depends(require_role("operator"))):
    """Forecast every zone with counters now, store the forecasts, raise or close alerts."""
    try:
        return await run_in_threadpool(_svc(request).refresh)
    except CrowdError as exc:
        return _error(exc)


# ---------------------------------------------------------------------------- events
@router.get("/events")
async def list_events(
    request: Request,
    zone_id: int | None = Query(None),
    _: Principal = Depends(require_role("viewer")),
):
    """Planned events (zone, start, end, expected visitors)."""
    return {"events": await run_in_threadpool(lambda: _svc(request).list_events(zone_id=zone_id))}


@router.post("/events", status_code=201)
async def create_event(request: Request, principal: Principal = Depends(require_role("operator"))):
    """Add a planned event; end before start → 422 naming ``end``."""
    body = await _body(request)
    if isinstance(body, JSONResponse):
        return body
    try:
        ev = await run_in_threadpool(_svc(request).create_event, body, user=principal.name)
    except CrowdError as exc:
        return _error(exc)
    return JSONResponse(ev, status_code=201)


@router.put("/events/{event_id}")
async def update_event(
    event_id: int, request: Request, _: Principal = Depends(require_role("operator"))
):
    """Change a planned event (fields given replace the stored ones)."""
    body = await _body(request)
    if isinstance(body, JSONResponse):
        return body
    try:
        return await run_in_threadpool(_svc(request).update_event, event_id, body)
    except CrowdError as exc:
        return _error(exc)


@router.delete("/events/{event_id}", status_code=204)
async def delete_event(
    event_id: int, request: Request, _: Principal = Depends(require_role("operator"))
):
    """Remove a planned event."""
    try:
        await run_in_threadpool(_svc(request).delete_event, event_id)
    except CrowdError as exc:
        return _error(exc)
    return JSONResponse(None, status_code=204)


# ---------------------------------------------------------------------------- alerts
@router.get("/alerts")
async def list_alerts(
    request: Request,
    status: str | None = Query(None, description="open|acknowledged|closed|active"),
    zone_id: int | None = Query(None),
    with_forecast: bool = Query(False),
    _: Principal = Depends(require_role("viewer")),
):
    """Alerts, newest first (the alert log), with lead time and the forecast behind each."""

    def run():
        with _svc(request).engine.connect() as conn:
            return A.list_alerts(conn, status=status, zone_id=zone_id, with_forecast=with_forecast)

    try:
        return {"alerts": await run_in_threadpool(run)}
    except A.AlertError as exc:
        return _error(exc)


@router.post("/alerts/{alert_id}/ack")
async def acknowledge(
    alert_id: int, request: Request, principal: Principal = Depends(require_role("operator"))
):
    """Acknowledge an alert (operator); logged with who and when."""

    def run():
        with _svc(request).engine.begin() as conn:
            return A.acknowledge(conn, alert_id=alert_id, operator=principal.name)

    try:
        return await run_in_threadpool(run)
    except A.AlertError as exc:
        return _error(exc)


@router.get("/parking")
async def parking(request: Request, _: Principal = Depends(require_role("viewer"))):
    """Garages: occupancy, free spaces, fill trend and minutes until full."""
    try:
        return await run_in_threadpool(_svc(request).parking)
    except CrowdError as exc:
        return _error(exc)


def install(app: FastAPI) -> None:
    """Mount ``/api/crowd`` and start the forecast/alert scheduler with the app's lifespan."""
    svc = CrowdService(app.state.engine, default_settings(app.state.settings))
    app.state.crowd = svc
    scheduler = CrowdScheduler(svc)
    app.state.crowd_scheduler = scheduler
    app.include_router(router)
    original = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(a):
        scheduler.start()
        try:
            async with original(a) as state:
                yield state
        finally:
            scheduler.stop()

    app.router.lifespan_context = lifespan
