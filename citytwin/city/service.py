"""City services: import a city into the store (one transaction) and query it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from citytwin.city import osm
from citytwin.city.builder import CityModel, build_city, build_from_geojson
from citytwin.city.classify import SAFETY_CLASSES
from citytwin.store.schema import buildings, cities, network_edges, network_nodes, zones

NETWORKS = ("walk", "drive")


class NotFound(LookupError):
    """A requested city or object does not exist."""


def _geom_records(gdf: gpd.GeoDataFrame) -> pd.DataFrame:
    """Attributes plus ``geometry`` as GeoJSON text and bbox columns."""
    bounds = gdf.geometry.bounds
    df = pd.DataFrame(gdf.drop(columns="geometry"))
    df["minx"], df["miny"], df["maxx"], df["maxy"] = (bounds[c].to_numpy() for c in ("minx", "miny", "maxx", "maxy"))
    df["geometry"] = shapely.to_geojson(gdf.geometry.values)
    return df


def _insert(conn: sa.Connection, table: sa.Table, df: pd.DataFrame, **extra) -> None:
    if len(df) == 0:
        return
    cols = {c.name for c in table.columns}
    records = []
    for rec in df.to_dict("records"):
        row = {k: (None if isinstance(v, float) and v != v else v) for k, v in rec.items() if k in cols}
        row.update(extra)
        records.append(row)
    for start in range(0, len(records), 5000):
        conn.execute(table.insert(), records[start : start + 5000])


def store_city(engine: Engine, model: CityModel, *, replace: bool = True) -> int:
    """Write a city model in ONE transaction (all or nothing). Returns the city id."""
    with engine.begin() as conn:
        existing = conn.execute(sa.select(cities.c.id).where(cities.c.name == model.name)).scalar()
        if existing is not None:
            if not replace:
                raise ValueError(f"a city named {model.name!r} exists; use another --name")
            for t in (buildings, network_edges, network_nodes, zones):
                conn.execute(t.delete().where(t.c.city_id == existing))
            conn.execute(cities.delete().where(cities.c.id == existing))
        w, s, e, n = model.bbox
        b0 = model.buildings
        city_id = conn.execute(
            cities.insert().values(
                name=model.name, source=model.source, crs_epsg=model.crs_epsg, country=None,
                minx=w, miny=s, maxx=e, maxy=n, imported_at=datetime.now(UTC), stats=model.stats(),
            )
        ).inserted_primary_key[0]
        _insert(conn, buildings, _geom_records(b0), city_id=city_id)
        for net in NETWORKS:
            e_df = model.edges.get(net)
            if e_df is not None and len(e_df):
                _insert(conn, network_edges, _geom_records(e_df), city_id=city_id, network=net)
            n_df = model.nodes.get(net)
            if n_df is not None and len(n_df):
                _insert(conn, network_nodes, n_df, city_id=city_id, network=net)
        if model.zones is not None and len(model.zones):
            _insert(conn, zones, _geom_records(model.zones), city_id=city_id)
    return int(city_id)


@dataclass
class ImportReport:
    city_id: int
    name: str
    stats: dict
    seconds: float


def import_osm(
    engine: Engine, *, path: Path, name: str, bbox: osm.BBox | None = None, progress=None
) -> ImportReport:
    """Read, build and store a city from an OSM PBF; the database is unchanged on error."""
    import time

    t0 = time.perf_counter()
    step = progress or (lambda msg: None)
    step("reading OSM extract")
    raw = osm.read_pbf(path, bbox=bbox)
    step("classifying buildings, estimating occupants, building networks and zones")
    model = build_city(raw, name=name, source=f"osm:{Path(path).name}" + (f" bbox={bbox}" if bbox else ""))
    step("writing to the database (one transaction)")
    city_id = store_city(engine, model)
    return ImportReport(city_id, name, model.stats(), time.perf_counter() - t0)


def import_buildings_geojson(engine: Engine, *, path: Path, name: str) -> ImportReport:
    """Import a city of buildings from GeoJSON; the database is unchanged on error."""
    import time

    t0 = time.perf_counter()
    gdf = osm.read_buildings_geojson(path)
    model = build_from_geojson(gdf, name=name, source=f"geojson:{Path(path).name}")
    city_id = store_city(engine, model)
    return ImportReport(city_id, name, model.stats(), time.perf_counter() - t0)


# ----------------------------------------------------------------------------- queries


def list_cities(conn: sa.Connection) -> list[dict]:
    rows = conn.execute(sa.select(cities).order_by(cities.c.id)).mappings().all()
    return [
        {
            "id": r["id"], "name": r["name"], "source": r["source"], "crs_epsg": r["crs_epsg"],
            "bbox": [r["minx"], r["miny"], r["maxx"], r["maxy"]],
            "imported_at": r["imported_at"].isoformat() if r["imported_at"] else None,
            "stats": r["stats"],
        }
        for r in rows
    ]


def resolve_city(conn: sa.Connection, name: str | None) -> dict:
    """The named city, or the first imported one when ``name`` is None."""
    q = sa.select(cities).order_by(cities.c.id)
    if name is not None:
        q = q.where(cities.c.name == name)
    row = conn.execute(q.limit(1)).mappings().first()
    if row is None:
        raise NotFound(f"no city named {name!r}" if name else "no city imported yet; run `citytwin import`")
    return dict(row)


def _bbox_filter(table: sa.Table, bbox: osm.BBox | None):
    if bbox is None:
        return sa.true()
    w, s, e, n = bbox
    return sa.and_(table.c.maxx >= w, table.c.minx <= e, table.c.maxy >= s, table.c.miny <= n)


def _feature(row: sa.RowMapping, props: list[str], fid: str = "id") -> dict:
    return {
        "type": "Feature",
        "id": row[fid],
        "geometry": json.loads(row["geometry"]),
        "properties": {p: row[p] for p in props},
    }


BUILDING_PROPS = [
    "id", "osm_id", "name", "address", "building", "use_class", "safety_class", "safety_reason",
    "height_m", "height_source", "levels", "footprint_m2", "floor_area_m2", "occupants_day", "occupants_night",
]
EDGE_PROPS = [
    "id", "u", "v", "osm_id", "name", "highway", "oneway", "length_m", "width_m", "width_source",
    "lanes", "maxspeed_kmh", "capacity_per_h",
]
ZONE_PROPS = ["id", "name", "kind", "category", "usable_area_m2", "source", "osm_id", "thresholds"]


def _collection(conn, table, props, where, *, limit: int, offset: int, order) -> dict:
    total = conn.execute(sa.select(sa.func.count()).select_from(table).where(where)).scalar_one()
    rows = conn.execute(sa.select(table).where(where).order_by(order).limit(limit).offset(offset)).mappings().all()
    return {
        "type": "FeatureCollection",
        "features": [_feature(r, props) for r in rows],
        "numberMatched": int(total),
        "numberReturned": len(rows),
    }


def query_buildings(
    conn: sa.Connection, *, city_id: int, bbox: osm.BBox | None = None,
    safety_class: str | None = None, limit: int = 1000, offset: int = 0,
) -> dict:
    """Buildings as a GeoJSON FeatureCollection (WGS84)."""
    where = sa.and_(buildings.c.city_id == city_id, _bbox_filter(buildings, bbox))
    if safety_class is not None:
        if safety_class not in SAFETY_CLASSES:
            raise ValueError(f"safety_class must be one of {', '.join(SAFETY_CLASSES)}")
        where = sa.and_(where, buildings.c.safety_class == safety_class)
    return _collection(conn, buildings, BUILDING_PROPS, where, limit=limit, offset=offset, order=buildings.c.id)


def get_building(conn: sa.Connection, *, city_id: int, building_id: int) -> dict:
    row = conn.execute(
        sa.select(buildings).where(buildings.c.city_id == city_id, buildings.c.id == building_id)
    ).mappings().first()
    if row is None:
        raise NotFound(f"no building {building_id} in this city")
    return _feature(row, BUILDING_PROPS)


def query_network(
    conn: sa.Connection, *, city_id: int, network: str, bbox: osm.BBox | None = None,
    limit: int = 1000, offset: int = 0,
) -> dict:
    if network not in NETWORKS:
        raise ValueError(f"network must be one of {', '.join(NETWORKS)}")
    where = sa.and_(network_edges.c.city_id == city_id, network_edges.c.network == network, _bbox_filter(network_edges, bbox))
    return _collection(conn, network_edges, EDGE_PROPS, where, limit=limit, offset=offset, order=network_edges.c.id)


def query_zones(
    conn: sa.Connection, *, city_id: int, bbox: osm.BBox | None = None, kind: str | None = None,
    limit: int = 1000, offset: int = 0,
) -> dict:
    where = sa.and_(zones.c.city_id == city_id, _bbox_filter(zones, bbox))
    if kind is not None:
        if kind not in ("moving", "standing"):
            raise ValueError("kind must be one of moving, standing")
        where = sa.and_(where, zones.c.kind == kind)
    return _collection(conn, zones, ZONE_PROPS, where, limit=limit, offset=offset, order=zones.c.id)


def buildings_frame(conn: sa.Connection, *, city_id: int) -> gpd.GeoDataFrame:
    """All buildings of a city as a GeoDataFrame in WGS84 (for models: hazard, evacuation)."""
    rows = conn.execute(sa.select(buildings).where(buildings.c.city_id == city_id).order_by(buildings.c.id)).mappings().all()
    df = pd.DataFrame([dict(r) for r in rows])
    if len(df) == 0:
        return gpd.GeoDataFrame({"id": []}, geometry=[], crs=4326)
    geom = shapely.from_geojson(df.pop("geometry").to_numpy())
    return gpd.GeoDataFrame(df, geometry=geom, crs=4326)


def network_frames(conn: sa.Connection, *, city_id: int, network: str) -> tuple[gpd.GeoDataFrame, pd.DataFrame]:
    """Edges (GeoDataFrame, WGS84) and nodes (lon/lat) of one network."""
    rows = conn.execute(
        sa.select(network_edges).where(network_edges.c.city_id == city_id, network_edges.c.network == network)
    ).mappings().all()
    df = pd.DataFrame([dict(r) for r in rows])
    geom = shapely.from_geojson(df.pop("geometry").to_numpy()) if len(df) else []
    edges = gpd.GeoDataFrame(df, geometry=geom, crs=4326)
    nodes = pd.read_sql(
        sa.select(network_nodes.c.node_id, network_nodes.c.lon, network_nodes.c.lat).where(
            network_nodes.c.city_id == city_id, network_nodes.c.network == network
        ),
        conn,
    )
    return edges, nodes


def add_zone_geojson(conn: sa.Connection, *, city_id: int, feature: dict) -> int:
    """Add a user zone from a GeoJSON Feature (Polygon); properties: name, kind, usable_area_m2."""
    from citytwin.city.crs import transformer

    props = feature.get("properties") or {}
    name = props.get("name")
    kind = props.get("kind")
    if not name or not isinstance(name, str):
        raise ValueError("properties.name is required (a non-empty string)")
    if kind not in ("moving", "standing"):
        raise ValueError("properties.kind must be 'moving' or 'standing'")
    try:
        geom = shapely.geometry.shape(feature.get("geometry"))
    except Exception as exc:
        raise ValueError(f"geometry: not a valid GeoJSON geometry ({exc})") from exc
    if geom.geom_type not in ("Polygon", "MultiPolygon") or geom.is_empty:
        raise ValueError("geometry must be a non-empty Polygon or MultiPolygon in lon/lat (EPSG:4326)")
    city = conn.execute(sa.select(cities).where(cities.c.id == city_id)).mappings().one()
    area = props.get("usable_area_m2")
    if area is None:
        t = transformer(4326, city["crs_epsg"])
        area = shapely.transform(geom, lambda xy: np.column_stack(t.transform(xy[:, 0], xy[:, 1]))).area
    area = float(area)
    if not area > 0:
        raise ValueError("properties.usable_area_m2 must be > 0 (m²)")
    b = geom.bounds
    return int(
        conn.execute(
            zones.insert().values(
                city_id=city_id, name=name, kind=kind, category=props.get("category", "user"),
                usable_area_m2=area, source="user", osm_id=None, thresholds=props.get("thresholds"),
                minx=b[0], miny=b[1], maxx=b[2], maxy=b[3], geometry=shapely.to_geojson(geom),
            )
        ).inserted_primary_key[0]
    )
