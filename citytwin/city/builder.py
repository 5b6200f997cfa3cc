"""One builder for every source: raw OSM-like records → the city's base registry.

The PBF path (:func:`citytwin.city.osm.read_pbf`) and the GeoJSON path both feed
:func:`build_city`. Metric quantities (areas, lengths, buffers) are computed in the UTM zone of
the city's centre; geometries are kept in WGS84 for serving.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from citytwin.city import classify, networks, occupancy
from citytwin.city.crs import utm_epsg
from citytwin.city.osm import CityImportError, RawCity, tags_of
from citytwin.city.zones import derive_zones


@dataclass
class CityModel:
    """The base registry of one city. GeoDataFrames are in WGS84 (EPSG:4326)."""

    name: str
    source: str
    crs_epsg: int
    buildings: gpd.GeoDataFrame
    edges: dict[str, gpd.GeoDataFrame] = field(default_factory=dict)
    nodes: dict[str, pd.DataFrame] = field(default_factory=dict)
    zones: gpd.GeoDataFrame | None = None

    @property
    def bbox(self) -> tuple[float, float, float, float]:
        b = self.buildings.total_bounds
        return float(b[0]), float(b[1]), float(b[2]), float(b[3])

    def stats(self) -> dict:
        counts = self.buildings["safety_class"].value_counts().to_dict()
        return {
            "buildings": int(len(self.buildings)),
            "safety_classes": {k: int(counts.get(k, 0)) for k in classify.SAFETY_CLASSES},
            "occupants_day": float(self.buildings["occupants_day"].sum()),
            "occupants_night": float(self.buildings["occupants_night"].sum()),
            "walk_edges": int(len(self.edges.get("walk", []))),
            "drive_edges": int(len(self.edges.get("drive", []))),
            "zones": int(0 if self.zones is None else len(self.zones)),
        }


def _polygonal(geom):
    """The polygonal part of a (repaired) geometry; make_valid can yield collections."""
    if geom.geom_type in ("Polygon", "MultiPolygon"):
        return geom
    parts = [g for g in getattr(geom, "geoms", []) if g.geom_type in ("Polygon", "MultiPolygon")]
    return shapely.union_all(parts) if parts else shapely.Polygon()


def _poi_tags_by_building(buildings_m: gpd.GeoDataFrame, pois_m: gpd.GeoDataFrame) -> dict[int, list[tuple[str, dict]]]:
    """Tags of point POIs that lie inside building footprints, keyed by building index."""
    if pois_m is None or len(pois_m) == 0:
        return {}
    pts = pois_m[pois_m.geometry.geom_type == "Point"]
    if len(pts) == 0:
        return {}
    joined = gpd.sjoin(pts[["geometry"]].assign(_poi=np.arange(len(pts))), buildings_m[["geometry"]], predicate="within")
    out: dict[int, list[tuple[str, dict]]] = {}
    for poi_pos, b_idx in zip(joined["_poi"].to_numpy(), joined["index_right"].to_numpy(), strict=True):
        row = pts.iloc[int(poi_pos)]
        out.setdefault(int(b_idx), []).append((f"{row.get('osm_type', 'node')}/{row.get('id')}", tags_of(row)))
    return out


def _address(tags: dict[str, str]) -> str | None:
    street = tags.get("addr:street")
    number = tags.get("addr:housenumber")
    city = tags.get("addr:city")
    if not street:
        return None
    text = street + (f" {number}" if number else "")
    return text + (f", {city}" if city else "")


def build_buildings(raw: gpd.GeoDataFrame, pois: gpd.GeoDataFrame | None, *, epsg: int) -> gpd.GeoDataFrame:
    """Classify buildings and estimate occupants. Input WGS84; output WGS84 with attributes."""
    b = raw[raw.geometry.notna() & raw.geometry.geom_type.isin(["Polygon", "MultiPolygon"])].copy()
    b = b.reset_index(drop=True)
    if len(b) == 0:
        raise CityImportError("no building footprints (Polygon/MultiPolygon) in the input")
    b["geometry"] = [_polygonal(g) for g in b.geometry.make_valid()]
    b = b[~b.geometry.is_empty].reset_index(drop=True)
    bm = b.to_crs(epsg)
    poi_tags = _poi_tags_by_building(bm, pois.to_crs(epsg) if pois is not None and len(pois) else None)

    records = []
    for i, row in b.iterrows():
        tags = tags_of(row)
        merged = dict(tags)
        reasons_extra: list[str] = []
        for poi_id, ptags in poi_tags.get(int(i), []):
            cls_p, why_p = classify.safety_class(ptags)
            if why_p:
                reasons_extra += [f"{w} ({poi_id} inside)" for w in why_p]
            for k, v in ptags.items():
                merged.setdefault(k, v)
        cls, why = classify.safety_class(merged)
        use = classify.use_class(tags)
        if use == "mixed" and poi_tags.get(int(i)):
            poi_uses = [classify.use_class(pt) for _, pt in poi_tags[int(i)]]
            poi_uses = [u for u in poi_uses if u != "mixed"]
            if poi_uses:
                counts = Counter(poi_uses)
                use = sorted(counts, key=lambda u: (-counts[u], u))[0]
        own = set(classify.safety_class(tags)[1])
        reasons = sorted(own) + [r for r in reasons_extra if r.split(" (")[0] not in own]
        levels, height, hsrc = occupancy.levels_and_height(
            height_tag=networks.parse_number(tags.get("height")),
            levels_tag=networks.parse_number(tags.get("building:levels")),
        )
        records.append(
            {
                "osm_id": f"{row.get('osm_type', 'way')}/{row.get('id')}",
                "name": tags.get("name"),
                "address": _address(tags),
                "building": tags.get("building"),
                "use_class": use,
                "safety_class": cls,
                "safety_reason": reasons if cls != classify.ORDINARY else [],
                "levels": levels,
                "height_m": height,
                "height_source": hsrc,
            }
        )
    attrs = pd.DataFrame.from_records(records)
    footprint = bm.geometry.area.to_numpy()
    attrs["footprint_m2"] = footprint
    attrs["floor_area_m2"] = footprint * attrs["levels"].to_numpy()
    day, night = occupancy.occupants(
        floor_area_m2=attrs["floor_area_m2"].to_numpy(), use_classes=attrs["use_class"].tolist()
    )
    attrs["occupants_day"] = np.round(day, 1)
    attrs["occupants_night"] = np.round(night, 1)
    cent = bm.geometry.representative_point().to_crs(4326)
    attrs["lon"] = cent.x.to_numpy()
    attrs["lat"] = cent.y.to_numpy()
    return gpd.GeoDataFrame(attrs, geometry=b.geometry.values, crs=4326)


def build_network(edges: gpd.GeoDataFrame, nodes: gpd.GeoDataFrame, *, kind: str, epsg: int) -> tuple[gpd.GeoDataFrame, pd.DataFrame]:
    """Edges with length, width/lanes and capacity; nodes with lon/lat. WGS84 in and out."""
    if edges is None or len(edges) == 0:
        return gpd.GeoDataFrame({"u": []}, geometry=[], crs=4326), pd.DataFrame({"node_id": [], "lon": [], "lat": []})
    e = edges[edges.geometry.notna()].reset_index(drop=True)
    lengths = e.to_crs(epsg).geometry.length.to_numpy()
    rows = []
    for i, r in e.iterrows():
        hw = r.get("highway") if isinstance(r.get("highway"), str) else None
        oneway = str(r.get("oneway") or "no") in ("yes", "true", "1", "-1")
        if kind == "walk":
            width, wsrc, cap = networks.walk_capacity(highway=hw, width_tag=r.get("width") if r.get("width") is not None else r.get("est_width"))
            lanes = None
            oneway = False
        else:
            lanes, wsrc, cap = networks.drive_capacity(highway=hw, lanes_tag=r.get("lanes"), oneway=oneway)
            width = networks.parse_number(r.get("width"))
        name = r.get("name") if isinstance(r.get("name"), str) else None
        rows.append(
            {
                "u": int(r["u"]),
                "v": int(r["v"]),
                "osm_id": f"way/{r.get('id')}",
                "name": name,
                "highway": hw,
                "oneway": oneway,
                "length_m": float(lengths[i]),
                "width_m": width,
                "width_source": wsrc,
                "lanes": lanes,
                "maxspeed_kmh": networks.parse_number(r.get("maxspeed")),
                "capacity_per_h": float(cap),
            }
        )
    out = gpd.GeoDataFrame(pd.DataFrame(rows), geometry=e.geometry.values, crs=4326)
    n = pd.DataFrame(
        {"node_id": nodes["id"].astype("int64").to_numpy(), "lon": nodes["lon"].to_numpy(), "lat": nodes["lat"].to_numpy()}
    ).drop_duplicates("node_id")
    return out, n


def build_city(raw: RawCity, *, name: str, source: str) -> CityModel:
    """Build the base registry from a raw OSM read."""
    b0 = raw.buildings.total_bounds
    epsg = utm_epsg(lon=(b0[0] + b0[2]) / 2, lat=(b0[1] + b0[3]) / 2)
    buildings = build_buildings(raw.buildings, raw.pois, epsg=epsg)
    edges, nodes = {}, {}
    for kind, e, n in (("walk", raw.walk_edges, raw.walk_nodes), ("drive", raw.drive_edges, raw.drive_nodes)):
        edges[kind], nodes[kind] = build_network(e, n, kind=kind, epsg=epsg)
    walk_m = edges["walk"].to_crs(epsg) if len(edges["walk"]) else edges["walk"]
    zones = derive_zones(
        areas=raw.zone_areas.to_crs(epsg) if len(raw.zone_areas) else raw.zone_areas,
        streets=walk_m,
        pois=raw.pois.to_crs(epsg) if len(raw.pois) else None,
        buildings=buildings.to_crs(epsg),
    )
    zones = zones.to_crs(4326) if len(zones) else zones.set_crs(4326, allow_override=True)
    zones["source"] = "osm"
    return CityModel(name=name, source=source, crs_epsg=epsg, buildings=buildings, edges=edges, nodes=nodes, zones=zones)


def build_from_geojson(gdf: gpd.GeoDataFrame, *, name: str, source: str) -> CityModel:
    """A city of buildings only, from GeoJSON (networks and zones empty)."""
    b0 = gdf.total_bounds
    epsg = utm_epsg(lon=(b0[0] + b0[2]) / 2, lat=(b0[1] + b0[3]) / 2)
    buildings = build_buildings(gdf, None, epsg=epsg)
    empty_e = gpd.GeoDataFrame({"u": []}, geometry=[], crs=4326)
    empty_n = pd.DataFrame({"node_id": [], "lon": [], "lat": []})
    zones = gpd.GeoDataFrame({"name": [], "kind": [], "category": [], "usable_area_m2": [], "osm_id": [], "source": []}, geometry=[], crs=4326)
    return CityModel(
        name=name, source=source, crs_epsg=epsg, buildings=buildings,
        edges={"walk": empty_e, "drive": empty_e.copy()}, nodes={"walk": empty_n, "drive": empty_n.copy()}, zones=zones,
    )
