"""The base registry over HTTP: cities, buildings, street networks and zones (GeoJSON, WGS84)."""

from __future__ import annotations

from typing import Literal

import sqlalchemy as sa
from fastapi import APIRouter, Body, Depends, HTTPException, Query

from citytwin.api.deps import Principal, get_conn, require_role
from citytwin.city import service
from citytwin.city.osm import CityImportError, parse_bbox

router = APIRouter(prefix="/api/city", tags=["city"])


def _bbox(bbox: str | None):
    if bbox is None:
        return None
    try:
        return parse_bbox(bbox)
    except CityImportError as exc:
        raise HTTPException(422, detail=str(exc).replace("--bbox", "bbox")) from exc


def _city(conn: sa.Connection, city: str | None) -> dict:
    try:
        return service.resolve_city(conn, city)
    except service.NotFound as exc:
        raise HTTPException(404, detail=str(exc)) from exc


CityQ = Query(None, description="city name; default: the first imported city")
BBoxQ = Query(None, description="W,S,E,N in degrees (EPSG:4326)", examples=["24.93,60.16,24.96,60.18"])


@router.get("")
def cities(conn: sa.Connection = Depends(get_conn), _: Principal = Depends(require_role("viewer"))) -> list[dict]:
    """Imported cities with their bounding boxes and statistics."""
    return service.list_cities(conn)


@router.get("/buildings")
def buildings(
    city: str | None = CityQ,
    bbox: str | None = BBoxQ,
    safety_class: Literal["vulnerable", "hazardous", "ordinary"] | None = None,
    limit: int = Query(1000, ge=1, le=50000),
    offset: int = Query(0, ge=0),
    conn: sa.Connection = Depends(get_conn),
    _: Principal = Depends(require_role("viewer")),
) -> dict:
    """Buildings as GeoJSON with safety class, estimated occupants and height."""
    c = _city(conn, city)
    return service.query_buildings(conn, city_id=c["id"], bbox=_bbox(bbox), safety_class=safety_class, limit=limit, offset=offset)


@router.get("/buildings/{building_id}")
def building(
    building_id: int, city: str | None = CityQ, conn: sa.Connection = Depends(get_conn),
    _: Principal = Depends(require_role("viewer")),
) -> dict:
    """One building as a GeoJSON Feature."""
    c = _city(conn, city)
    try:
        return service.get_building(conn, city_id=c["id"], building_id=building_id)
    except service.NotFound as exc:
        raise HTTPException(404, detail=str(exc)) from exc


@router.get("/networks/{network}")
def network(
    network: Literal["walk", "drive"],
    city: str | None = CityQ,
    bbox: str | None = BBoxQ,
    limit: int = Query(1000, ge=1, le=50000),
    offset: int = Query(0, ge=0),
    conn: sa.Connection = Depends(get_conn),
    _: Principal = Depends(require_role("viewer")),
) -> dict:
    """Street-network edges (walk or drive) with length, width/lanes and capacity."""
    c = _city(conn, city)
    return service.query_network(conn, city_id=c["id"], network=network, bbox=_bbox(bbox), limit=limit, offset=offset)


@router.get("/zones")
def zones(
    city: str | None = CityQ,
    bbox: str | None = BBoxQ,
    kind: Literal["moving", "standing"] | None = None,
    limit: int = Query(1000, ge=1, le=50000),
    offset: int = Query(0, ge=0),
    conn: sa.Connection = Depends(get_conn),
    _: Principal = Depends(require_role("viewer")),
) -> dict:
    """Monitoring zones with usable area (m²) and kind (moving/standing)."""
    c = _city(conn, city)
    return service.query_zones(conn, city_id=c["id"], bbox=_bbox(bbox), kind=kind, limit=limit, offset=offset)


@router.post("/zones", status_code=201)
def add_zone(
    feature: dict = Body(..., examples=[{"type": "Feature", "properties": {"name": "Stage front", "kind": "standing"}, "geometry": {"type": "Polygon", "coordinates": [[[24.94, 60.17], [24.941, 60.17], [24.941, 60.171], [24.94, 60.17]]]}}]),
    city: str | None = CityQ,
    conn: sa.Connection = Depends(get_conn),
    _: Principal = Depends(require_role("operator")),
) -> dict:
    """Add a monitoring zone from a GeoJSON Feature (name, kind, optional usable_area_m2)."""
    c = _city(conn, city)
    try:
        zid = service.add_zone_geojson(conn, city_id=c["id"], feature=feature)
    except ValueError as exc:
        raise HTTPException(422, detail=str(exc)) from exc
    return {"id": zid}
