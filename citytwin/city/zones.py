"""Monitoring zones: where crowds gather and how much usable area they have.

Sources, in a projected metric CRS:

* squares (``place=square``) and pedestrian areas (polygons with ``highway=pedestrian``,
  ``area:highway=pedestrian``) — ``standing`` for squares, ``moving`` for pedestrian areas;
* pedestrian streets (lines with ``highway=pedestrian``) dissolved by name and buffered to
  their width (tag, else 8 m) — ``moving``;
* main shopping streets: named streets with at least ``min_shops`` shops, cafés or restaurants
  within 25 m, their sidewalks buffered 5 m — ``moving``;
* user GeoJSON polygons (kind and usable area given or derived).

Usable area is the zone polygon minus building footprints, in m².
"""

from __future__ import annotations

import geopandas as gpd
import pandas as pd
import shapely

#: Zones smaller than this usable area are dropped as slivers (m²).
MIN_ZONE_AREA_M2 = 150.0
ZONE_KINDS = ("moving", "standing")


def _usable(geom: shapely.Geometry, buildings_union: shapely.Geometry | None) -> shapely.Geometry:
    if buildings_union is None or buildings_union.is_empty:
        return geom
    return geom.difference(buildings_union)


def derive_zones(
    *,
    areas: gpd.GeoDataFrame,
    streets: gpd.GeoDataFrame,
    pois: gpd.GeoDataFrame | None,
    buildings: gpd.GeoDataFrame,
    min_shops: int = 12,
) -> gpd.GeoDataFrame:
    """Derive zones; all inputs in the same projected metric CRS. Returns name/kind/category/
    usable_area_m2/osm_id/geometry rows in that CRS."""
    crs = buildings.crs
    bunion = shapely.union_all(buildings.geometry.values) if len(buildings) else None
    rows: list[dict] = []

    poly = areas[areas.geometry.geom_type.isin(["Polygon", "MultiPolygon"])]
    for _, r in poly.iterrows():
        is_square = r.get("place") == "square"
        name = r.get("name") if isinstance(r.get("name"), str) else None
        rows.append(
            {
                "name": name or ("square" if is_square else "pedestrian area"),
                "kind": "standing" if is_square else "moving",
                "category": "square" if is_square else "pedestrian_area",
                "osm_id": str(r.get("id")),
                "geometry": r.geometry,
            }
        )

    lines = areas[areas.geometry.geom_type.isin(["LineString", "MultiLineString"])]
    if len(lines):
        lines = lines.assign(name=lines["name"].fillna("pedestrian street"))
        for name, grp in lines.groupby("name"):
            geom = shapely.union_all(grp.geometry.values).buffer(4.0, cap_style="flat")
            rows.append(
                {
                    "name": name,
                    "kind": "moving",
                    "category": "pedestrian_street",
                    "osm_id": ",".join(str(i) for i in grp["id"].tolist()[:20]),
                    "geometry": geom,
                }
            )

    if pois is not None and len(pois) and len(streets):
        named = streets[streets["name"].notna()]
        shopish = pois.get("shop", pd.Series(index=pois.index, dtype=object)).notna()
        if "amenity" in pois.columns:
            shopish |= pois["amenity"].isin(["restaurant", "cafe", "bar", "pub", "fast_food"])
        pts = gpd.GeoDataFrame(geometry=pois.loc[shopish].geometry.representative_point(), crs=pois.crs)
        near = gpd.sjoin_nearest(pts, named[["name", "geometry"]], max_distance=25.0, how="inner")
        counts = near.groupby("name").size()
        covered = {r["name"] for r in rows}
        for name, n in counts.items():
            if n < min_shops or name in covered:
                continue
            geom = shapely.union_all(named[named["name"] == name].geometry.values).buffer(
                5.0, cap_style="flat"
            )
            rows.append(
                {
                    "name": name,
                    "kind": "moving",
                    "category": "shopping_street",
                    "osm_id": None,
                    "geometry": geom,
                }
            )

    if not rows:
        return gpd.GeoDataFrame(
            {"name": [], "kind": [], "category": [], "usable_area_m2": [], "osm_id": []},
            geometry=[],
            crs=crs,
        )
    out = gpd.GeoDataFrame(pd.DataFrame(rows), geometry="geometry", crs=crs)
    out["geometry"] = [_usable(g, bunion) for g in out.geometry]
    out["geometry"] = out.geometry.make_valid()
    out["usable_area_m2"] = out.geometry.area
    out = out[out["usable_area_m2"] >= MIN_ZONE_AREA_M2].reset_index(drop=True)
    return out
