"""Evacuation over HTTP: network evacuation of an area, venue simulations as background jobs.

A thin adapter over :mod:`citytwin.evacuation.service` and :mod:`citytwin.evacuation.jobs`:
parse the body, call the service, serialise. Bad input answers 422 with
``{"detail": {"field": ..., "message": ...}}`` before anything runs. Venue runs and what-ifs
take seconds to minutes, so they are jobs: ``POST`` answers 202 with the job, ``GET`` polls
its status, progress and (once done) result.
"""

from __future__ import annotations

import os
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from fastapi import APIRouter, Body, Depends, FastAPI, HTTPException, Request
from pydantic import BaseModel, ConfigDict, Field

from citytwin.api.deps import Principal, get_conn, require_role
from citytwin.api.routers.hazard import _FieldErrorRoute
from citytwin.evacuation.jobs import JobNotFound, JobRunner

# The evacuation service (NumPy, SciPy, JuPedSim) is imported inside the handlers: the app
# starts fast, and the other domains keep working should the evacuation stack fail to import.

#: Limits of one venue job over the API (the CLI has none).
MAX_AGENTS = 5000
MAX_SEEDS = 100
MAX_PROCESSES = max(1, min(4, os.cpu_count() or 1))


def _unprocessable(field: str, message: str) -> HTTPException:
    return HTTPException(422, detail={"field": field, "message": message})


# --------------------------------------------------------------------------- bodies
class NetworkRequest(BaseModel):
    """An area to evacuate over the street network."""

    model_config = ConfigDict(extra="forbid")

    area: dict[str, Any] = Field(
        description="GeoJSON Polygon/MultiPolygon, Feature or FeatureCollection, WGS84"
    )
    mode: str = Field("walk", description="walk | drive")
    at: datetime | None = Field(
        None, description="time, ISO 8601; 07–19 h local = day occupants (default: now)"
    )
    local_tz: str | None = Field(None, description="IANA time zone for day/night occupancy")
    city: str | None = Field(None, description="city name (default: the first imported city)")
    margin_m: float = Field(100.0, description="safe = this far outside the area, m (0–5000)")
    assembly_points: list[list[float]] | None = Field(
        None, description="[[lon, lat, capacity_persons?], ...]; ids are the row numbers"
    )
    closed_edges: list[int] = Field(default_factory=list, description="street edge ids closed")
    closed_assembly_points: list[int] = Field(
        default_factory=list, description="assembly point row numbers closed"
    )


class FromZoneRequest(BaseModel):
    """A venue from the twin: a zone (square) or a polygon, minus building footprints."""

    model_config = ConfigDict(extra="forbid")

    zone_id: int | None = Field(None, description="a zone of the city (GET /api/city/zones)")
    polygon: dict[str, Any] | None = Field(None, description="or a GeoJSON Polygon, WGS84")
    city: str | None = None


# --------------------------------------------------------------------------- helpers
def _jobs(request: Request) -> JobRunner:
    return request.app.state.evacuation_jobs


def _scenario_error(exc: Exception) -> HTTPException:
    return _unprocessable(getattr(exc, "field", "scenario"), getattr(exc, "message", str(exc)))


def _validated(doc: Any, field_prefix: str = "") -> Any:
    """Check a scenario document from the body: ScenarioError → 422 naming the field."""
    from citytwin.evacuation import pedsim, service

    try:
        doc = service.check_scenario_document(doc)
        sc = pedsim.validate_scenario(doc)
    except pedsim.ScenarioError as exc:
        raise _unprocessable(field_prefix + exc.field, exc.message) from None
    if sc.agent_count > MAX_AGENTS:
        raise _unprocessable(field_prefix + "agents",
                             f"{sc.agent_count} agents; at most {MAX_AGENTS} per API job "
                             "(use the CLI for larger crowds)")
    return sc


def _run_options(body: dict[str, Any]) -> tuple[list[int] | None, int]:
    seeds = body.get("seeds")
    if seeds is not None:
        if (not isinstance(seeds, list) or not seeds or len(seeds) > MAX_SEEDS
                or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0
                           for s in seeds) or len(set(seeds)) != len(seeds)):
            raise _unprocessable("seeds", f"expected 1–{MAX_SEEDS} distinct integers ≥ 0")
    processes = body.get("processes", 1)
    if not isinstance(processes, int) or isinstance(processes, bool) or not (
        1 <= processes <= MAX_PROCESSES
    ):
        raise _unprocessable("processes", f"expected an integer 1–{MAX_PROCESSES}")
    return seeds, processes


def _accepted(job: Any) -> dict[str, Any]:
    return {"id": job.id, "job_id": job.id, "kind": job.kind, "status": job.status,
            "url": f"/api/evacuation/venue/jobs/{job.id}"}


# --------------------------------------------------------------------------- routes
router = APIRouter(prefix="/api/evacuation", tags=["evacuation"], route_class=_FieldErrorRoute)


@router.post("/network")
def network(
    body: NetworkRequest,
    request: Request,
    conn: sa.Connection = Depends(get_conn),
    _: Principal = Depends(require_role("analyst")),
) -> dict:
    """Capacity-aware evacuation of an area: clearance times, routes, bottlenecks (WGS84)."""
    from citytwin.evacuation import service
    from citytwin.evacuation.network import EvacuationInputError

    try:
        return service.evacuate_area(
            conn,
            area=body.area,
            mode=body.mode,
            at=body.at,
            city=body.city,
            local_tz=body.local_tz,
            margin_m=body.margin_m,
            assembly_points=body.assembly_points,
            closed_edges=body.closed_edges,
            closed_assembly_points=body.closed_assembly_points,
            cache=request.app.state.evacuation_cache,
        )
    except EvacuationInputError as exc:
        raise HTTPException(422, detail=service.error_detail(exc)) from None


@router.post("/venue/validate")
def venue_validate(
    scenario: dict[str, Any] = Body(..., description="a venue scenario (docs/pedsim.md)"),
    _: Principal = Depends(require_role("analyst")),
) -> dict:
    """Check a venue scenario without running it; 422 names the first bad field."""
    sc = _validated(scenario)
    return {
        "valid": True,
        "name": sc.name,
        "agents": sc.agent_count,
        "exits": [{"name": e.name, "width_m": round(e.width_m, 2), "closed": e.closed}
                  for e in sc.exits],
        "walkable_area_m2": round(sc.free_area.area, 1),
        "model": sc.model,
        "seeds": list(sc.seeds),
    }


@router.post("/venue/jobs", status_code=202)
def venue_job(
    request: Request,
    body: dict[str, Any] = Body(
        ..., description='{"scenario": {...}, "seeds"?: [...], "processes"?: n} or a scenario'
    ),
    _: Principal = Depends(require_role("analyst")),
) -> dict:
    """Start a venue simulation (all seeds, p95, playback of the representative seed)."""
    wrapped = "scenario" in body and "schema_version" not in body
    doc = body["scenario"] if wrapped else body
    prefix = "scenario." if wrapped else ""
    seeds, processes = _run_options(body if wrapped else {})
    sc = _validated(doc, prefix)
    playback = bool(body.get("playback", True)) if wrapped else True
    from citytwin.evacuation import service

    job = _jobs(request).submit(
        "venue",
        lambda progress: service.run_venue(sc, seeds=seeds, processes=processes,
                                           progress=progress, playback=playback),
        meta={"scenario": sc.name, "agents": sc.agent_count,
              "seeds": list(seeds or sc.seeds)},
    )
    return _accepted(job)


@router.post("/venue/compare", status_code=202)
def venue_compare(
    request: Request,
    body: dict[str, Any] = Body(..., description='{"a": scenario, "b": scenario, "seeds"?: []}'),
    _: Principal = Depends(require_role("analyst")),
) -> dict:
    """Start a what-if: two variants on the same seeds, both summaries and the differences."""
    for k in ("a", "b"):
        if not isinstance(body.get(k), dict):
            raise _unprocessable(k, "required: a scenario object")
    seeds, processes = _run_options(body)
    sa_ = _validated(body["a"], "a.")
    sb_ = _validated(body["b"], "b.")
    from citytwin.evacuation import service

    job = _jobs(request).submit(
        "compare",
        lambda progress: service.compare_venues(sa_, sb_, seeds=seeds, processes=processes,
                                                progress=progress),
        meta={"a": sa_.name, "b": sb_.name, "seeds": list(seeds or sa_.seeds)},
    )
    return _accepted(job)


@router.get("/venue/jobs")
def venue_jobs(request: Request, _: Principal = Depends(require_role("analyst"))) -> list[dict]:
    """Known jobs (without results), oldest first."""
    return _jobs(request).list()


@router.get("/venue/jobs/{job_id}")
def venue_job_status(
    job_id: str, request: Request, _: Principal = Depends(require_role("analyst"))
) -> dict:
    """A job's status, progress (0–1) and message; the result once done, the error if failed."""
    try:
        return _jobs(request).get(job_id)
    except JobNotFound:
        raise HTTPException(404, detail={"field": "job_id", "message": "no such job"}) from None


@router.delete("/venue/jobs/{job_id}")
def venue_job_cancel(
    job_id: str, request: Request, _: Principal = Depends(require_role("analyst"))
) -> dict:
    """Cancel a queued or running job."""
    try:
        return _jobs(request).cancel(job_id)
    except JobNotFound:
        raise HTTPException(404, detail={"field": "job_id", "message": "no such job"}) from None


@router.post("/venue/from-zone")
def venue_from_zone(
    body: FromZoneRequest,
    request: Request,
    conn: sa.Connection = Depends(get_conn),
    _: Principal = Depends(require_role("analyst")),
) -> dict:
    """A scenario skeleton: the zone or polygon minus buildings, local metres with origin."""
    from citytwin.evacuation import service
    from citytwin.evacuation.network import EvacuationInputError

    try:
        return service.venue_from_zone(
            conn, zone_id=body.zone_id, polygon=body.polygon, city=body.city,
            cache=request.app.state.evacuation_cache,
        )
    except EvacuationInputError as exc:
        raise HTTPException(422, detail=service.error_detail(exc)) from None


def install(app: FastAPI) -> None:
    """Add the evacuation routes, the per-city network cache and the job runner (closed on
    shutdown) to ``app``."""
    app.state.evacuation_cache = {}
    app.state.evacuation_jobs = JobRunner(max_workers=2, keep=50)
    app.include_router(router)
    original = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(a):
        try:
            async with original(a) as state:
                yield state
        finally:
            app.state.evacuation_jobs.close()

    app.router.lifespan_context = lifespan
