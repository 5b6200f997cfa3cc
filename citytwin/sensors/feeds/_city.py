"""Ties to the city model: which zone a point lies in, street segments, buildings.

Distances are computed in the city's projected CRS (``cities.crs_epsg``, metres).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import shapely
import sqlalchemy as sa

from citytwin.city.crs import transformer
from citytwin.store.schema import buildings, cities, network_edges, zones

#: A vehicle or visitor outside every zone counts for the nearest zone within this distance (m).
ZONE_SNAP_M = 250.0


@dataclass
class ZoneIndex:
    """The zones of one city in metres, for point-in-zone look-ups."""

    city_id: int
    epsg: int
    ids: np.ndarray
    names: list[str]
    geoms: np.ndarray  # shapely geometries in the projected CRS
    tree: shapely.STRtree

    @classmethod
    def load(cls, conn: sa.Connection, city_id: int) -> ZoneIndex:
        epsg = conn.execute(sa.select(cities.c.crs_epsg).where(cities.c.id == city_id)).scalar_one()
        rows = conn.execute(sa.select(zones.c.id, zones.c.name, zones.c.geometry)
                            .where(zones.c.city_id == city_id).order_by(zones.c.id)).all()
        t = transformer(4326, epsg)
        geoms = [shapely.transform(shapely.from_geojson(r.geometry),
                                   lambda xy: np.column_stack(t.transform(xy[:, 0], xy[:, 1]))) for r in rows]
        arr = np.array(geoms, dtype=object)
        return cls(city_id, epsg, np.array([r.id for r in rows], dtype=int), [r.name for r in rows], arr,
                   shapely.STRtree(arr))

    def project(self, lon, lat) -> tuple[np.ndarray, np.ndarray]:
        return transformer(4326, self.epsg).transform(np.asarray(lon, float), np.asarray(lat, float))

    def assign(self, lon, lat, *, snap_m: float = ZONE_SNAP_M) -> np.ndarray:
        """Zone id per point (lon/lat degrees): the containing zone, else the nearest within
        ``snap_m`` metres, else -1."""
        lon = np.atleast_1d(np.asarray(lon, float))
        out = np.full(lon.shape, -1, dtype=int)
        if lon.size == 0 or self.ids.size == 0:
            return out
        x, y = self.project(lon, np.atleast_1d(np.asarray(lat, float)))
        pts = shapely.points(x, y)
        idx, dist = self.tree.query_nearest(pts, max_distance=snap_m, return_distance=True, all_matches=False)
        out[idx[0]] = self.ids[idx[1]]
        return out

    def centroid(self, zone_id: int) -> tuple[float, float]:
        """A point inside the zone (lon, lat)."""
        g = self.geoms[int(np.nonzero(self.ids == zone_id)[0][0])]
        p = g.representative_point()
        lon, lat = transformer(self.epsg, 4326).transform(p.x, p.y)
        return float(lon), float(lat)


def first_city(conn: sa.Connection, name: str | None = None) -> dict | None:
    q = sa.select(cities).order_by(cities.c.id)
    if name:
        q = q.where(cities.c.name == name)
    row = conn.execute(q.limit(1)).mappings().first()
    return None if row is None else dict(row)


def zone_exists(conn: sa.Connection, zone_id: int) -> bool:
    return conn.execute(sa.select(zones.c.id).where(zones.c.id == zone_id)).first() is not None


def edge_row(conn: sa.Connection, edge_id: int) -> dict | None:
    row = conn.execute(sa.select(network_edges).where(network_edges.c.id == edge_id)).mappings().first()
    return None if row is None else dict(row)


def edge_midpoint(row: dict) -> tuple[float, float]:
    g = shapely.from_geojson(row["geometry"])
    p = g.interpolate(0.5, normalized=True)
    return float(p.x), float(p.y)


def building_at(conn: sa.Connection, *, city_id: int, lon: float, lat: float) -> dict | None:
    """The building whose footprint contains the point (lon/lat), or None."""
    rows = conn.execute(sa.select(buildings.c.id, buildings.c.name, buildings.c.geometry).where(
        buildings.c.city_id == city_id, buildings.c.minx <= lon, buildings.c.maxx >= lon,
        buildings.c.miny <= lat, buildings.c.maxy >= lat)).all()
    pt = shapely.Point(lon, lat)
    for r in rows:
        if shapely.from_geojson(r.geometry).contains(pt):
            return {"id": r.id, "name": r.name}
    return None


def geometry_of(row_geometry: str) -> dict:
    return json.loads(row_geometry)
