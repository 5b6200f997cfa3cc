"""Incident response over HTTP: threat zones, affected buildings and reports for a release or fire.

A thin adapter over :mod:`citytwin.hazard`: parse the body, resolve the city, its buildings
(cached per city in ``app.state``) and the wind (manual, else live from the weather streams),
call :func:`~citytwin.hazard.service.assess_incident`, serialise. Bad input answers 422 with
``{"detail": {"field": ..., "message": ...}}`` naming the field, and nothing else.
"""

from __future__ import annotations

import io
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import numpy as np
import pandas as pd
import sqlalchemy as sa
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field

from citytwin.api.deps import Principal, get_conn, require_role
from citytwin.city import service as city_service
from citytwin.hazard import (
    BuildingArrays,
    HazardInputError,
    IncidentResult,
    UnknownSubstanceError,
    assess_incident,
    list_substances,
    prepare_buildings,
    threat_at_point,
    to_geojson,
    to_kml,
    write_xlsx,
)
from citytwin.hazard.weather import latest_wind, wind_inputs

XLSX_MEDIA = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
KML_MEDIA = "application/vnd.google-earth.kml+xml"
#: service argument names → request body names
_FIELD_NAMES = {"source_lon": "lon", "source_lat": "lat", "source_lon/source_lat": "lon/lat"}
AFFECTED_LIMIT = 5000


# --------------------------------------------------------------------------- errors
def _field_error(field: str, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"detail": {"field": field, "message": message, **extra}}, status_code=422)


class _FieldErrorRoute(APIRoute):
    """Body validation errors in the same shape as the service's: one field, one message."""

    def get_route_handler(self) -> Callable:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except RequestValidationError as exc:
                errs = exc.errors()
                err = errs[0] if errs else {"loc": ("body",), "msg": "invalid body"}
                loc = [str(p) for p in err.get("loc", ()) if p != "body"]
                field = ".".join(loc) or "body"
                msg = err.get("msg", "invalid")
                if err.get("type") == "missing":
                    msg = "required"
                elif err.get("type") == "extra_forbidden":
                    msg = "unknown field"
                return _field_error(field, msg)

        return route


def _http_error(exc: HazardInputError) -> HTTPException:
    detail: dict[str, Any] = {
        "field": _FIELD_NAMES.get(exc.field, exc.field),
        "message": exc.message,
    }
    if isinstance(exc, UnknownSubstanceError):
        detail["suggestions"] = exc.suggestions
    return HTTPException(422, detail=detail)


# --------------------------------------------------------------------------- bodies
class IncidentRequest(BaseModel):
    """An incident: where, what, how much, and (optionally) the wind."""

    model_config = ConfigDict(extra="forbid")

    lon: float = Field(description="source longitude, WGS84 degrees")
    lat: float = Field(description="source latitude, WGS84 degrees")
    substance: str = Field(description='substance name, alias or CAS number, or "fire"')
    rate_g_s: float | None = Field(
        None, description="release rate, g/s (> 0; fire: burning rate, optional)"
    )
    duration_min: float | None = Field(
        None, description="release duration, min (0 < d ≤ 60); none = continuous"
    )
    heat_mw: float | None = Field(None, description="fire: heat release rate, MW")
    wind_speed_m_s: float | None = Field(
        None, description="manual wind speed at 10 m, m/s; none = live wind"
    )
    wind_from_deg: float | None = Field(
        None, description="manual wind direction (from), degrees from north"
    )
    sigma_theta_deg: float | None = Field(None, description="σθ of the wind direction, degrees")
    cloud_cover_octas: float | None = Field(None, description="cloud cover, octas (0–8)")
    at: datetime | None = Field(None, description="incident time, ISO 8601 (default: now)")
    city: str | None = Field(None, description="city name (default: the first imported city)")
    local_tz: str | None = Field(None, description="IANA time zone for day/night occupancy")
    release_height_m: float = Field(0.0, description="release height above ground, m")
    loc_duration: Literal["10min", "30min", "60min", "4h", "8h"] = "60min"
    band_method: Literal["sigma_theta", "ensemble"] = "sigma_theta"
    urban: bool = True


class ThreatRequest(BaseModel):
    """A point of interest under an incident: a building, or a position."""

    model_config = ConfigDict(extra="forbid")

    incident: IncidentRequest
    building_id: int | None = Field(None, description="a building of the city")
    lon: float | None = Field(None, description="or a position: longitude, WGS84 degrees")
    lat: float | None = Field(None, description="latitude, WGS84 degrees")
    use_class: str | None = Field(
        None, description="use class for air changes (default: the building's, or residential)"
    )


# --------------------------------------------------------------------------- building cache
@dataclass(frozen=True)
class _CityBuildings:
    imported_at: Any
    arrays: BuildingArrays
    address: dict[int, str]


class BuildingCache:
    """Prepared building arrays per city, rebuilt when the city's ``imported_at`` changes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_city: dict[int, _CityBuildings] = {}

    def get(self, conn: sa.Connection, city: dict[str, Any]) -> _CityBuildings:
        entry = self._by_city.get(city["id"])
        if entry is not None and entry.imported_at == city["imported_at"]:
            return entry
        with self._lock:
            entry = self._by_city.get(city["id"])
            if entry is None or entry.imported_at != city["imported_at"]:
                entry = load_city_buildings(conn, city)
                self._by_city[city["id"]] = entry
        return entry


def load_city_buildings(conn: sa.Connection, city: dict[str, Any]) -> _CityBuildings:
    """The city's buildings as :class:`BuildingArrays`; unnamed buildings show their address."""
    gdf = city_service.buildings_frame(conn, city_id=city["id"])
    if len(gdf):
        name = gdf["name"].where(gdf["name"].notna() & (gdf["name"] != ""), gdf["address"])
        gdf = gdf.assign(name=name.fillna(""))
        address = {
            int(i): a
            for i, a in zip(gdf["id"], gdf["address"], strict=True)
            if isinstance(a, str) and a
        }
    else:
        address = {}
    return _CityBuildings(city["imported_at"], prepare_buildings(gdf), address)


def _cache(request: Request) -> BuildingCache:
    return request.app.state.hazard_buildings


# --------------------------------------------------------------------------- the one call
@dataclass
class _Run:
    result: IncidentResult
    wind: dict[str, Any]
    city: dict[str, Any]
    buildings: _CityBuildings
    seconds: float


def _resolve_city(conn: sa.Connection, name: str | None) -> dict[str, Any]:
    try:
        return city_service.resolve_city(conn, name)
    except city_service.NotFound as exc:
        raise HTTPException(422, detail={"field": "city", "message": str(exc)}) from exc


def _assess(request: Request, conn: sa.Connection, body: IncidentRequest) -> _Run:
    t0 = time.perf_counter()
    city = _resolve_city(conn, body.city)
    blds = _cache(request).get(conn, city)
    at = body.at or datetime.now(UTC)
    try:
        wind_kw, wind = wind_inputs(
            conn,
            city_id=city["id"],
            wind_speed_m_s=body.wind_speed_m_s,
            wind_from_deg=body.wind_from_deg,
            sigma_theta_deg=body.sigma_theta_deg,
            cloud_cover_octas=body.cloud_cover_octas,
        )
        result = assess_incident(
            buildings=blds.arrays,
            source_lon=body.lon,
            source_lat=body.lat,
            substance=body.substance,
            rate_g_s=body.rate_g_s,
            duration_min=body.duration_min,
            heat_mw=body.heat_mw,
            at=at,
            local_tz=body.local_tz,
            release_height_m=body.release_height_m,
            loc_duration=body.loc_duration,
            band_method=body.band_method,
            urban=body.urban,
            **wind_kw,
        )
    except HazardInputError as exc:
        raise _http_error(exc) from exc
    _note_wind(result, wind)
    return _Run(result, wind, city, blds, time.perf_counter() - t0)


def _note_wind(result: IncidentResult, wind: dict[str, Any]) -> None:
    """Put the wind's origin in the result; a stale live wind is always a visible warning."""
    result.weather["wind"] = {k: v for k, v in wind.items() if k != "values"}
    if wind.get("simulated"):
        result.warnings.append("The live wind comes from a SIMULATED weather stream.")
    if wind.get("stale"):
        result.weather["stale"] = True
        age = wind.get("age_s") or 0.0
        msg = (
            f"Live wind is stale: observed {age / 60:.0f} min ago; "
            "check it or enter the wind by hand."
        )
        result.warnings.insert(0, msg)


def _payload(run: _Run) -> dict[str, Any]:
    out = run.result.to_dict(limit=AFFECTED_LIMIT)
    for rec in out["affected"]:
        rec["address"] = run.buildings.address.get(rec["id"]) if rec.get("id") is not None else None
    out["wind"] = run.wind
    out["city"] = {"id": run.city["id"], "name": run.city["name"]}
    out["elapsed_s"] = round(run.seconds, 4)
    return out


def _filename(run: _Run, ext: str) -> str:
    sub = re.sub(r"[^a-z0-9]+", "-", str(run.result.incident["substance"]).lower()).strip("-")
    stamp = datetime.fromisoformat(run.result.incident["at"]).strftime("%Y%m%dT%H%M")
    return f"incident-{sub or 'release'}-{stamp}.{ext}"


def _attachment(content: bytes | str, media: str, filename: str) -> Response:
    return Response(
        content,
        media_type=media,
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


# --------------------------------------------------------------------------- routes
router = APIRouter(prefix="/api/incident", tags=["incident"], route_class=_FieldErrorRoute)


@router.get("/substances")
def substances(_: Principal = Depends(require_role("viewer"))) -> list[dict]:
    """Built-in substances with molar mass, levels of concern and their sources."""
    out = [
        {
            "key": "fire",
            "name": "fire",
            "description": "fire smoke as PM2.5 and CO, plume rise from the heat release (MW)",
            "needs": ["heat_mw"],
        }
    ]
    for s in list_substances():
        if s.key == "smoke_pm":
            continue
        out.append(s.to_dict() | {"needs": ["rate_g_s"]})
    return out


@router.get("/wind")
def wind(
    city: str | None = Query(None, description="city name; default: the first imported city"),
    conn: sa.Connection = Depends(get_conn),
    _: Principal = Depends(require_role("viewer")),
) -> dict:
    """The live wind from the twin's weather streams (value, age, stale flag), if any."""
    c = _resolve_city(conn, city)
    live = latest_wind(conn, city_id=c["id"])
    if live is None:
        return {"available": False, "message": "no weather stream — enter the wind by hand"}
    return {"available": True, **live}


@router.post("/assess")
def assess(
    body: IncidentRequest,
    request: Request,
    conn: sa.Connection = Depends(get_conn),
    _: Principal = Depends(require_role("analyst")),
) -> dict:
    """Threat zones (GeoJSON), affected buildings (vulnerable first), counts, warnings."""
    return _payload(_assess(request, conn, body))


@router.post(
    "/report.xlsx", response_class=Response, responses={200: {"content": {XLSX_MEDIA: {}}}}
)
def report_xlsx(
    body: IncidentRequest,
    request: Request,
    conn: sa.Connection = Depends(get_conn),
    _: Principal = Depends(require_role("analyst")),
) -> Response:
    """The incident report as an Excel workbook (Summary, Affected buildings, Zones)."""
    run = _assess(request, conn, body)
    buf = io.BytesIO()
    write_xlsx(run.result, buf)
    return _attachment(buf.getvalue(), XLSX_MEDIA, _filename(run, "xlsx"))


@router.post(
    "/zones.geojson",
    response_class=Response,
    responses={200: {"content": {"application/geo+json": {}}}},
)
def zones_geojson(
    body: IncidentRequest,
    request: Request,
    buildings: bool = Query(False, description="also the affected buildings as points"),
    conn: sa.Connection = Depends(get_conn),
    _: Principal = Depends(require_role("analyst")),
) -> Response:
    """The zones and "possibly affected" bands as a GeoJSON file (WGS84)."""
    import json

    run = _assess(request, conn, body)
    fc = to_geojson(run.result, include_buildings=buildings)
    data = json.dumps(fc, ensure_ascii=False, default=_json_default)
    return _attachment(data, "application/geo+json", _filename(run, "geojson"))


@router.post("/zones.kml", response_class=Response, responses={200: {"content": {KML_MEDIA: {}}}})
def zones_kml(
    body: IncidentRequest,
    request: Request,
    conn: sa.Connection = Depends(get_conn),
    _: Principal = Depends(require_role("analyst")),
) -> Response:
    """The zones and bands as a KML file."""
    run = _assess(request, conn, body)
    return _attachment(to_kml(run.result), KML_MEDIA, _filename(run, "kml"))


@router.post("/threat")
def threat(
    body: ThreatRequest,
    request: Request,
    conn: sa.Connection = Depends(get_conn),
    _: Principal = Depends(require_role("analyst")),
) -> dict:
    """Concentration and dose over time, outdoors and indoors, at a building or a point."""
    run = _assess(request, conn, body.incident)
    b = run.buildings.arrays
    building: dict[str, Any] | None = None
    if body.building_id is not None:
        hit = np.flatnonzero(b.id == body.building_id)
        if hit.size == 0:
            raise HTTPException(
                422,
                detail={
                    "field": "building_id",
                    "message": f"no building {body.building_id} in {run.city['name']}",
                },
            )
        i = int(hit[0])
        lon, lat = float(b.lon[i]), float(b.lat[i])
        use = body.use_class or str(b.use_class[i])
        building = {
            "id": body.building_id,
            "name": b.name[i],
            "safety_class": b.safety_class[i],
            "use_class": b.use_class[i],
        }
    elif body.lon is not None and body.lat is not None:
        lon, lat, use = body.lon, body.lat, body.use_class or "residential"
    else:
        raise HTTPException(
            422, detail={"field": "building_id", "message": "give a building_id, or lon and lat"}
        )
    try:
        out = threat_at_point(run.result, lon=lon, lat=lat, use_class=use)
    except HazardInputError as exc:
        raise _http_error(exc) from exc
    return out | {
        "lon": lon,
        "lat": lat,
        "use_class": use,
        "building": building,
        "wind": run.wind,
        "warnings": run.result.warnings,
    }


def _json_default(v: Any) -> Any:
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, pd.Timestamp | datetime):
        return v.isoformat()
    raise TypeError(f"not JSON serialisable: {type(v).__name__}")


def install(app: FastAPI) -> None:
    """Add the incident routes and the per-city building cache to ``app``."""
    app.state.hazard_buildings = BuildingCache()
    app.include_router(router)
