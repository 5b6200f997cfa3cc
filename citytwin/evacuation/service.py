"""The twin-facing evacuation service: city data in, network and venue evacuations out (WGS84).

It knows no web framework; the API router and the CLI parse, call these functions and
serialise. Two parts:

* **Network evacuation** (:func:`evacuate_area`): load the city's walk or drive network and its
  buildings (prepared once per city and kept in a ``cache`` dict the caller owns), project them
  to the city's UTM CRS, pick the occupants by time of day, call
  :func:`citytwin.evacuation.network.evacuate` and convert its GeoJSON back to WGS84.
* **Venue simulation** (:func:`run_venue`, :func:`compare_venues`, :func:`venue_from_zone`):
  the JuPedSim adapter :mod:`citytwin.evacuation.pedsim` with a **local frame**: a scenario is in
  local metres; an optional ``origin: [lon, lat]`` places its ``(0, 0)`` on the map, x east and
  y north (a transverse Mercator centred on the origin, :class:`LocalFrame`). Results then
  carry WGS84 copies of the venue, the trajectories, the maps and the bottlenecks for display.

Occupants by time of day: ``at`` between 07:00 and 19:00 local time uses ``occupants_day``,
otherwise ``occupants_night`` (the Incident service's rule). Local time is ``at`` in
``local_tz`` when given; else the wall-clock time of ``at`` when it carries a non-zero UTC
offset or no zone at all (naive = local); else (UTC, or no ``at``: now) the mean solar time
from the area's longitude.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import shapely
import sqlalchemy as sa
from pyproj import CRS, Transformer
from shapely.geometry import mapping, shape

from citytwin.city import service as city_service
from citytwin.city.crs import WGS84, transformer

from .network import EvacuationInputError, evacuate

__all__ = [
    "DAY_START_H",
    "DAY_END_H",
    "MAX_VENUE_AREA_M2",
    "LocalFrame",
    "occupancy_period",
    "parse_area",
    "evacuate_area",
    "error_detail",
    "check_scenario_document",
    "run_venue",
    "compare_venues",
    "venue_from_zone",
    "venue_display",
]

#: Occupants are "day" from this local hour (inclusive) ...
DAY_START_H = 7.0
#: ... to this local hour (exclusive); "night" otherwise.
DAY_END_H = 19.0
#: Largest open space :func:`venue_from_zone` turns into a venue, m².
MAX_VENUE_AREA_M2 = 250_000.0

Progress = Callable[[float, str], None]

# --------------------------------------------------------------------------- time of day


def occupancy_period(
    *, at: datetime | None, lon: float, local_tz: str | None = None
) -> dict[str, Any]:
    """Day or night occupancy for ``at``: ``{"period", "local_hour", "basis", "at"}``.

    Day is 07:00–19:00 local time. ``lon`` (degrees) gives the mean solar time when ``at`` has
    no usable zone (UTC or ``None`` = now).

    Examples
    --------
    >>> occupancy_period(at=datetime(2024, 6, 21, 14, 0), lon=24.9)["period"]
    'day'
    >>> occupancy_period(at=datetime(2024, 6, 21, 23, 0), lon=24.9)["period"]
    'night'
    """
    if at is None:
        at = datetime.now(UTC)
    if local_tz:
        try:
            lt = at.astimezone(ZoneInfo(local_tz)) if at.tzinfo else at.replace(
                tzinfo=ZoneInfo(local_tz)
            )
        except (ZoneInfoNotFoundError, ValueError):
            raise EvacuationInputError("local_tz", f"unknown time zone {local_tz!r}") from None
        hour, basis = lt.hour + lt.minute / 60, f"local time in {local_tz}"
    elif at.tzinfo is None:
        hour, basis = at.hour + at.minute / 60, "local wall-clock time (no zone given)"
    elif at.utcoffset() not in (None, timedelta(0)):
        hour, basis = at.hour + at.minute / 60, "local time of the given timestamp"
    else:
        u = at.astimezone(UTC)
        hour = (u.hour + u.minute / 60 + lon / 15.0) % 24.0
        basis = "mean solar time from longitude (UTC given)"
    period = "day" if DAY_START_H <= hour < DAY_END_H else "night"
    return {"period": period, "local_hour": round(hour, 2), "basis": basis, "at": at.isoformat()}


# --------------------------------------------------------------------------- areas


def parse_area(obj: Any, *, field: str = "area") -> shapely.Geometry:
    """A GeoJSON Polygon/MultiPolygon, Feature or FeatureCollection (WGS84) as one shapely
    (Multi)Polygon; polygons of a collection are united. Raises ``EvacuationInputError(field)``.
    """
    if isinstance(obj, str):
        try:
            obj = json.loads(obj)
        except json.JSONDecodeError as exc:
            raise EvacuationInputError(field, f"not valid JSON: {exc}") from None
    if not isinstance(obj, Mapping) or "type" not in obj:
        raise EvacuationInputError(
            field, "expected a GeoJSON Polygon, Feature or FeatureCollection"
        )
    kind = obj["type"]
    if kind == "FeatureCollection":
        geoms = [f.get("geometry") for f in obj.get("features") or [] if isinstance(f, Mapping)]
        geoms = [g for g in geoms if isinstance(g, Mapping) and g.get("type") in
                 ("Polygon", "MultiPolygon")]
        if not geoms:
            raise EvacuationInputError(field, "the FeatureCollection has no Polygon feature")
        parts = [_polygon(g, field) for g in geoms]
        geom = shapely.union_all(parts)
    elif kind == "Feature":
        geom = _polygon(obj.get("geometry"), field)
    else:
        geom = _polygon(obj, field)
    lon0, lat0, lon1, lat1 = geom.bounds
    if not (-180 <= lon0 <= lon1 <= 180 and -90 <= lat0 <= lat1 <= 90):
        raise EvacuationInputError(field, "coordinates must be [lon, lat] in degrees (EPSG:4326)")
    return geom


def _polygon(g: Any, field: str) -> shapely.Geometry:
    if not isinstance(g, Mapping) or g.get("type") not in ("Polygon", "MultiPolygon"):
        got = g.get("type") if isinstance(g, Mapping) else type(g).__name__
        raise EvacuationInputError(field, f"must be a Polygon or MultiPolygon, got {got}")
    try:
        geom = shape(g)
    except Exception as exc:  # shapely raises several types for malformed rings
        raise EvacuationInputError(field, f"not a valid polygon: {exc}") from None
    if not geom.is_empty and not geom.is_valid:  # e.g. a bow tie drawn by hand: repair it
        why = shapely.is_valid_reason(geom)
        parts = [p for p in shapely.get_parts(shapely.make_valid(geom))
                 if p.geom_type in ("Polygon", "MultiPolygon")]
        geom = shapely.union_all(parts) if parts else shapely.Polygon()
        if geom.is_empty or geom.area <= 0:
            raise EvacuationInputError(field, f"invalid polygon: {why}")
    if geom.is_empty or geom.area <= 0:
        raise EvacuationInputError(field, "the polygon is empty (needs 3+ distinct corners)")
    return geom


def _project(geom: shapely.Geometry, src: int, dst: int) -> shapely.Geometry:
    t = transformer(src, dst)
    return shapely.transform(geom, lambda xy: np.column_stack(t.transform(xy[:, 0], xy[:, 1])))


# --------------------------------------------------------------------------- city cache


@dataclass(frozen=True)
class _Prepared:
    imported_at: Any
    crs_epsg: int
    frame: Any  # projected GeoDataFrame


_cache_lock = threading.Lock()


def _cached(cache: dict | None, key: tuple, imported_at: Any, build: Callable[[], _Prepared]):
    if cache is None:
        return build()
    entry = cache.get(key)
    if entry is not None and entry.imported_at == imported_at:
        return entry
    with _cache_lock:
        entry = cache.get(key)
        if entry is None or entry.imported_at != imported_at:
            entry = build()
            cache[key] = entry
    return entry


def _streets(conn: sa.Connection, city: dict, mode: str, cache: dict | None) -> _Prepared:
    def build() -> _Prepared:
        edges, _nodes = city_service.network_frames(conn, city_id=city["id"], network=mode)
        if len(edges) == 0:
            raise EvacuationInputError("mode", f"the city has no {mode} network")
        edges = edges.set_index("id", drop=False).rename(
            columns={"length_m": "length", "width_m": "width", "maxspeed_kmh": "maxspeed"}
        )
        edges.index.name = None
        keep = ["u", "v", "highway", "oneway", "length", "width", "lanes", "maxspeed", "name",
                "geometry"]
        edges = edges[[c for c in keep if c in edges.columns]]
        return _Prepared(city["imported_at"], city["crs_epsg"], edges.to_crs(city["crs_epsg"]))

    return _cached(cache, ("streets", city["id"], mode), city["imported_at"], build)


def _buildings(conn: sa.Connection, city: dict, cache: dict | None) -> _Prepared:
    def build() -> _Prepared:
        b = city_service.buildings_frame(conn, city_id=city["id"])
        if len(b):
            b = b[["id", "name", "address", "occupants_day", "occupants_night", "geometry"]]
            b = b.set_index("id", drop=False)
            b.index.name = None
        return _Prepared(city["imported_at"], city["crs_epsg"], b.to_crs(city["crs_epsg"]))

    return _cached(cache, ("buildings", city["id"]), city["imported_at"], build)


def _resolve_city(conn: sa.Connection, city: str | None) -> dict:
    try:
        return city_service.resolve_city(conn, city)
    except city_service.NotFound as exc:
        raise EvacuationInputError("city", str(exc)) from None


# --------------------------------------------------------------------------- network


def evacuate_area(
    conn: sa.Connection,
    *,
    area: Any,
    mode: str,
    at: datetime | None = None,
    city: str | None = None,
    local_tz: str | None = None,
    margin_m: float = 100.0,
    assembly_points: Sequence[Sequence[float]] | None = None,
    closed_edges: Iterable[Any] = (),
    closed_assembly_points: Iterable[int] = (),
    exact: bool = False,
    cache: dict | None = None,
) -> dict[str, Any]:
    """Evacuate the occupants of the buildings inside ``area`` over the city's street network.

    Parameters
    ----------
    conn
        A database connection (read only).
    area
        GeoJSON Polygon/MultiPolygon, Feature or FeatureCollection in WGS84 (EPSG:4326), or a
        shapely polygon in WGS84.
    mode
        ``"walk"`` or ``"drive"`` (the city's network of that name).
    at
        Time of the evacuation: 07–19 h local → ``occupants_day``, else ``occupants_night``
        (see the module docstring for how local time is found). ``None``: now.
    margin_m
        Without assembly points, street nodes at least this far (m) outside the area are safe.
    assembly_points
        Optional ``[lon, lat]`` or ``[lon, lat, capacity_persons]`` rows (WGS84); their ids are
        the row numbers used by ``closed_assembly_points``.
    closed_edges
        Street edge ids (the ``edge_id`` of bottlenecks and edge loads) closed to traffic.
    cache
        A dict the caller keeps between calls: projected networks and buildings per city,
        refreshed when the city is re-imported.

    Returns
    -------
    dict
        JSON-ready: the plan of :func:`~citytwin.evacuation.network.evacuate`
        (``clearance_90_s``, ``clearance_100_s``, ``bottlenecks``, ``shortest_path``, ...) with
        ``routes_geojson``, ``bottlenecks_geojson`` and ``edge_loads_geojson`` in WGS84, plus
        ``destinations`` (GeoJSON points with persons), ``area`` (WGS84), ``occupancy``,
        ``city`` and ``crs`` = ``"EPSG:4326"``.

    Raises
    ------
    EvacuationInputError
        With ``.field``: ``area`` (invalid, or nobody inside), ``mode``, ``margin_m``,
        ``assembly_points`` (none reachable, inside the area), ``closed_edges``, ``city``.
    """
    if mode not in ("walk", "drive"):
        raise EvacuationInputError("mode", f"must be 'walk' or 'drive', got {mode!r}")
    if not (isinstance(margin_m, int | float) and math.isfinite(margin_m) and 0 <= margin_m
            <= 5000):
        raise EvacuationInputError("margin_m", "must be between 0 and 5000 m")
    area84 = area if isinstance(area, shapely.Geometry) else parse_area(area)
    c = _resolve_city(conn, city)
    epsg = int(c["crs_epsg"])
    lon_c = float(area84.centroid.x)
    occ = occupancy_period(at=at, lon=lon_c, local_tz=local_tz)
    streets = _streets(conn, c, mode, cache).frame
    blds = _buildings(conn, c, cache).frame
    if len(blds) == 0:
        raise EvacuationInputError("area", f"{c['name']} has no buildings, so nobody to evacuate")
    poly = _project(area84, WGS84, epsg)
    column = "occupants_day" if occ["period"] == "day" else "occupants_night"
    blds = blds.iloc[blds.sindex.query(poly, predicate="intersects")]
    if len(blds) == 0:
        raise EvacuationInputError("area", "nobody inside the area: it contains no building")
    blds = blds.assign(occupants=blds[column].astype(float).fillna(0.0))

    ap = None
    if assembly_points is not None and len(assembly_points):
        rows = []
        for i, p in enumerate(assembly_points):
            if not (isinstance(p, Sequence) and len(p) in (2, 3)
                    and all(isinstance(v, int | float) and math.isfinite(v) for v in p)):
                raise EvacuationInputError(
                    f"assembly_points[{i}]", "expected [lon, lat] or [lon, lat, capacity]"
                )
            x, y = transformer(WGS84, epsg).transform(p[0], p[1])
            # missing capacity = unlimited; NaN (not inf) is what evacuate() maps to unlimited
            rows.append([x, y, p[2] if len(p) == 3 else np.nan])
        ap = np.asarray(rows, float)
    closed = list(closed_edges)
    known = set(streets.index.tolist())
    bad = [e for e in closed if e not in known]
    if bad:
        raise EvacuationInputError(
            "closed_edges", f"unknown {mode} edge id(s) {bad[:5]} (use edge_id of the results)"
        )
    try:
        out = evacuate(
            edges=streets,
            buildings=blds,
            hazard_polygon=poly,
            mode=mode,
            margin_m=float(margin_m),
            occupants_column="occupants",
            assembly_points=ap,
            closed_edges=closed,
            closed_assembly_points=list(closed_assembly_points),
            exact=exact,
        )
    except EvacuationInputError as exc:
        d = error_detail(exc)
        raise EvacuationInputError(_FIELD.get(d["field"], d["field"]), d["message"]) from None

    to84 = transformer(epsg, WGS84)
    for key in ("routes_geojson", "bottlenecks_geojson", "edge_loads_geojson"):
        _fc_to_wgs84(out[key], to84)
    out["destinations"] = _destinations(out["routes_geojson"])
    out["area"] = mapping(shapely.transform(area84, lambda xy: np.round(xy, 7)))
    out["occupancy"] = occ | {"column": column}
    out["city"] = {"id": c["id"], "name": c["name"], "crs_epsg": epsg}
    out["crs"] = "EPSG:4326"
    out["computed_in"] = f"EPSG:{epsg}"
    return out


#: network.evacuate's argument names → the service's
_FIELD = {"hazard_polygon": "area", "closed_assembly_points": "closed_assembly_points"}


def error_detail(exc: EvacuationInputError) -> dict[str, str]:
    """``{"field", "message"}`` of an input error (the message without the field prefix)."""
    text = str(exc)
    prefix = f"{exc.field}: "
    return {"field": exc.field, "message": text[len(prefix):] if text.startswith(prefix) else text}


def _fc_to_wgs84(fc: dict, t: Any) -> None:
    """Transform every LineString/Point of a FeatureCollection in place (7 decimals)."""
    for f in fc["features"]:
        g = f["geometry"]
        c = np.asarray(g["coordinates"], float)
        flat = c.reshape(-1, 2)
        lon, lat = t.transform(flat[:, 0], flat[:, 1])
        g["coordinates"] = np.round(np.column_stack([lon, lat]), 7).reshape(c.shape).tolist()


def _destinations(routes: dict) -> dict:
    """Destination points (the routes' last vertex) with the persons arriving there."""
    by: dict[Any, dict] = {}
    for f in routes["features"]:
        p = f["properties"]
        d = by.setdefault(p["destination_node"], {
            "coords": f["geometry"]["coordinates"][-1], "persons": 0, "routes": 0,
            "arrival_last_s": 0.0,
        })
        d["persons"] += p["persons"]
        d["routes"] += 1
        d["arrival_last_s"] = max(d["arrival_last_s"], p.get("arrival_last_s") or 0.0)
    feats = [
        {"type": "Feature", "geometry": {"type": "Point", "coordinates": d["coords"]},
         "properties": {"node_id": k, "persons": d["persons"], "routes": d["routes"],
                        "arrival_last_s": d["arrival_last_s"]}}
        for k, d in sorted(by.items(), key=lambda kv: -kv[1]["persons"])
    ]
    return {"type": "FeatureCollection", "features": feats}


# --------------------------------------------------------------------------- venues: frame


@lru_cache(maxsize=64)
def _tmerc(lon: float, lat: float) -> tuple[Any, Any]:
    crs = CRS.from_proj4(
        f"+proj=tmerc +lat_0={lat!r} +lon_0={lon!r} +k=1 +x_0=0 +y_0=0 +ellps=WGS84 "
        "+units=m +no_defs"
    )
    return (Transformer.from_crs(CRS.from_epsg(WGS84), crs, always_xy=True),
            Transformer.from_crs(crs, CRS.from_epsg(WGS84), always_xy=True))


@dataclass(frozen=True)
class LocalFrame:
    """Local metres with ``(0, 0)`` at ``origin`` (lon, lat), x east and y north there.

    A transverse Mercator projection centred on the origin (scale 1): over a venue of a few
    hundred metres it matches a flat east/north grid to within centimetres, so a client can
    convert with a local equirectangular approximation (the dashboard does).
    """

    lon: float
    lat: float

    @property
    def proj(self) -> str:
        return (f"+proj=tmerc +lat_0={self.lat!r} +lon_0={self.lon!r} +k=1 +x_0=0 +y_0=0 "
                "+ellps=WGS84")

    def to_wgs84(self, x: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
        """Local metres → (lon, lat) degrees; NaN stays NaN."""
        x = np.asarray(x, float)
        y = np.asarray(y, float)
        ok = np.isfinite(x) & np.isfinite(y)
        lon = np.full(x.shape, np.nan)
        lat = np.full(x.shape, np.nan)
        lo, la = _tmerc(self.lon, self.lat)[1].transform(x[ok], y[ok])
        lon[ok], lat[ok] = lo, la
        return lon, lat

    def from_wgs84(self, geom: shapely.Geometry) -> shapely.Geometry:
        """A WGS84 geometry in local metres."""
        t = _tmerc(self.lon, self.lat)[0]

        def f(xy: np.ndarray) -> np.ndarray:
            x, y = t.transform(xy[:, 0], xy[:, 1])
            return np.column_stack([x, y])

        return shapely.transform(geom, f)

    def geom_to_wgs84(self, geom: shapely.Geometry) -> shapely.Geometry:
        def f(xy: np.ndarray) -> np.ndarray:
            lon, lat = self.to_wgs84(xy[:, 0], xy[:, 1])
            return np.round(np.column_stack([lon, lat]), 7)

        return shapely.transform(geom, f)


def _origin(doc: Mapping[str, Any]) -> LocalFrame | None:
    from .pedsim import ScenarioError

    o = doc.get("origin")
    if o is None:
        return None
    if not (isinstance(o, Sequence) and not isinstance(o, str) and len(o) == 2
            and all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
                    for v in o)
            and -180 <= o[0] <= 180 and -84 <= o[1] <= 84):
        raise ScenarioError("origin", "expected [lon, lat] in degrees (EPSG:4326, |lat| ≤ 84)")
    return LocalFrame(float(o[0]), float(o[1]))


def check_scenario_document(doc: Any, *, allow_files: bool = False) -> dict[str, Any]:
    """Check what the pedsim schema does not: ``origin``, and (for untrusted input such as the
    API) no file references (``dxf``, ``base_dir``). Returns the document as a dict."""
    from .pedsim import ScenarioError

    if not isinstance(doc, Mapping):
        raise ScenarioError("scenario", "expected a JSON object")
    _origin(doc)
    if not allow_files:
        def walk(v: Any, path: str) -> None:
            if isinstance(v, Mapping):
                for k, w in v.items():
                    p = f"{path}.{k}" if path else str(k)
                    if k in ("dxf", "base_dir"):
                        raise ScenarioError(p, "file references are not accepted here; send the "
                                               "geometry as GeoJSON or coordinates")
                    walk(w, p)
            elif isinstance(v, list):
                for i, w in enumerate(v):
                    walk(w, f"{path}[{i}]")

        walk(doc, "")
    return dict(doc)


# --------------------------------------------------------------------------- venues: runs


def run_venue(
    scenario: Mapping[str, Any] | str | Any,
    *,
    seeds: Sequence[int] | None = None,
    processes: int = 1,
    progress: Progress | None = None,
    playback: bool = True,
) -> dict[str, Any]:
    """Run a venue scenario on several seeds and return one JSON-ready result.

    ``summary`` is :func:`pedsim.run_many`'s (mean and 95th-percentile evacuation time, exits,
    bottlenecks); ``run`` is the representative seed's :meth:`RunResult.to_dict` (N–t curve,
    maps, and the trajectories in local metres when ``playback`` and there is no ``origin``);
    ``geo`` (when the scenario has an ``origin``) holds WGS84 copies for the map, the
    playback included (see :func:`venue_display`).
    """
    from . import pedsim

    sc = pedsim.load_scenario(scenario)
    seeds = list(sc.seeds if seeds is None else seeds)
    keep = playback and len(seeds) <= 8
    many = pedsim.run_many(sc, seeds=seeds, processes=processes, progress=_scaled(progress, 0.0,
                           0.95 if playback and not keep else 1.0), keep_trajectories=keep)
    rep_seed = many.summary["representative_seed"]
    rep = next(r for r in many.runs if r.seed == rep_seed)
    if playback and rep.trajectories is None:  # many seeds: re-run the representative one
        rep = pedsim.run_scenario(sc, seed=rep_seed, progress=_scaled(progress, 0.95, 1.0))
    run = rep.to_dict(trajectories=playback)
    out: dict[str, Any] = {"summary": many.summary, "run": run}
    frame = _origin(sc.raw)
    out["geo"] = venue_display(sc, run, frame) if frame is not None else None
    if out["geo"] is not None and "playback" in out["geo"]:
        run.pop("trajectories", None)  # the same frames, in WGS84, are in geo.playback
    return out


def _scaled(progress: Progress | None, lo: float, hi: float) -> Progress | None:
    if progress is None:
        return None
    return lambda f, m: progress(lo + (hi - lo) * min(max(f, 0.0), 1.0), m)


def compare_venues(
    a: Mapping[str, Any] | Any,
    b: Mapping[str, Any] | Any,
    *,
    seeds: Sequence[int] | None = None,
    processes: int = 1,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """What-if: :func:`pedsim.compare` of two variants on the same seeds (``a``, ``b``,
    ``delta``)."""
    from . import pedsim

    sa_, sb_ = pedsim.load_scenario(a), pedsim.load_scenario(b)
    return pedsim.compare(sa_, sb_, seeds=seeds, processes=processes, progress=progress)


def venue_display(sc: Any, run: Mapping[str, Any], frame: LocalFrame) -> dict[str, Any]:
    """WGS84 copies of a run for the map: ``venue`` (walkable area, obstacles, exits),
    ``playback`` (``t_s`` and per frame ``[lon, lat]`` per agent, null when absent),
    ``density`` (grid cells as polygons with the mean and peak density, speed and RSET) and
    ``bottlenecks`` (points)."""
    feats = [{"type": "Feature", "properties": {"kind": "walkable_area", "name": sc.name},
              "geometry": mapping(frame.geom_to_wgs84(sc.walkable_area))}]
    for name, kind, poly in sc.obstacles:
        feats.append({"type": "Feature", "properties": {"kind": "obstacle", "name": name,
                                                        "obstacle": kind},
                      "geometry": mapping(frame.geom_to_wgs84(poly))})
    for e in sc.exits:
        line = e.door if isinstance(e.door, shapely.Geometry) else shapely.LineString(e.door)
        feats.append({"type": "Feature", "properties": {"kind": "exit", "name": e.name,
                                                        "closed": e.closed,
                                                        "width_m": round(e.width_m, 2)},
                      "geometry": mapping(frame.geom_to_wgs84(line))})
    out: dict[str, Any] = {
        "origin": [frame.lon, frame.lat], "proj": frame.proj,
        "venue": {"type": "FeatureCollection", "features": feats},
    }
    traj = run.get("trajectories")
    if traj:
        x = np.asarray(traj["x"], dtype=float)
        y = np.asarray(traj["y"], dtype=float)
        lon, lat = frame.to_wgs84(x, y)
        ll = np.round(np.stack([lon, lat], axis=-1), 7)
        ll_list = np.where(np.isnan(ll), None, ll).tolist()
        frames = [[p if p[0] is not None else None for p in row] for row in ll_list]
        out["playback"] = {"t_s": traj["t"], "positions": frames, "group": traj.get("group")}
    maps = run.get("maps") or {}
    if "density_mean_p_per_m2" in maps:
        out["density"] = _grid_cells(maps, frame)
    bns = []
    for b in run.get("bottlenecks") or []:
        lo_, la_ = frame.to_wgs84([b["x_m"]], [b["y_m"]])
        pt = [round(float(lo_[0]), 7), round(float(la_[0]), 7)]
        bns.append({"type": "Feature", "properties": dict(b),
                    "geometry": {"type": "Point", "coordinates": pt}})
    out["bottlenecks"] = {"type": "FeatureCollection", "features": bns}
    return out


def _grid_cells(maps: Mapping[str, Any], frame: LocalFrame) -> dict:
    g = float(maps["grid_size_m"])
    x0, ytop = maps["origin_xy_m"]
    layers = {k: np.asarray(maps[k], dtype=float) for k in
              ("density_mean_p_per_m2", "density_max_p_per_m2", "speed_mean_m_per_s", "rset_s")
              if k in maps}
    dens = layers["density_mean_p_per_m2"]
    rows, cols = np.nonzero(np.nan_to_num(layers.get("density_max_p_per_m2", dens)) > 0)
    feats = []
    if rows.size:
        xs = np.stack([x0 + cols * g, x0 + (cols + 1) * g, x0 + (cols + 1) * g, x0 + cols * g],
                      axis=1)
        ys = np.stack([ytop - rows * g, ytop - rows * g, ytop - (rows + 1) * g,
                       ytop - (rows + 1) * g], axis=1)
        lon, lat = frame.to_wgs84(xs, ys)
        lon, lat = np.round(lon, 7), np.round(lat, 7)
        for k in range(rows.size):
            ring = [[float(lon[k, j]), float(lat[k, j])] for j in (0, 1, 2, 3, 0)]
            props = {name: (None if not np.isfinite(arr[rows[k], cols[k]])
                            else round(float(arr[rows[k], cols[k]]), 3))
                     for name, arr in layers.items()}
            feats.append({"type": "Feature", "properties": props,
                          "geometry": {"type": "Polygon", "coordinates": [ring]}})
    return {"type": "FeatureCollection", "grid_size_m": g, "origin_xy_m": [x0, ytop],
            "features": feats}


# --------------------------------------------------------------------------- venues: twin


def venue_from_zone(
    conn: sa.Connection,
    *,
    zone_id: int | None = None,
    polygon: Any = None,
    city: str | None = None,
    cache: dict | None = None,
) -> dict[str, Any]:
    """A scenario skeleton from the twin: a zone (square) or a WGS84 polygon minus the building
    footprints, in local metres with ``origin`` = the south-west corner of its bounding box.

    The skeleton has the walkable area, no exits (place them on the boundary) and one agent
    group of up to 100 persons spread over the area shrunk by 1 m; it does not validate until
    it has an exit. Open spaces enclosed by buildings (courtyards) are dropped when the main
    part holds at least 80 % of the open area. Raises ``EvacuationInputError`` (``zone_id``,
    ``polygon``) when the area is missing, too large (> 250,000 m²) or split by buildings.
    """
    from .pedsim import SCHEMA_VERSION, ScenarioError, walkable_area_from_twin

    c = _resolve_city(conn, city)
    name = "venue"
    if zone_id is not None:
        from citytwin.store.schema import zones

        row = conn.execute(
            sa.select(zones).where(zones.c.id == zone_id, zones.c.city_id == c["id"])
        ).mappings().first()
        if row is None:
            raise EvacuationInputError("zone_id", f"no zone {zone_id} in {c['name']}")
        area84 = parse_area(json.loads(row["geometry"]), field="zone_id")
        name = row["name"]
    elif polygon is not None:
        area84 = parse_area(polygon, field="polygon")
    else:
        raise EvacuationInputError("zone_id", "give a zone_id or a polygon")
    if area84.geom_type == "MultiPolygon":
        area84 = max(area84.geoms, key=lambda p: p.area)
    lon0, lat0 = area84.bounds[0], area84.bounds[1]
    frame = LocalFrame(round(lon0, 7), round(lat0, 7))
    local = frame.from_wgs84(area84)
    if local.area > MAX_VENUE_AREA_M2:
        raise EvacuationInputError(
            "polygon" if zone_id is None else "zone_id",
            f"the area is {local.area:,.0f} m²; at most {MAX_VENUE_AREA_M2:,.0f} m² per venue",
        )
    blds = _buildings(conn, c, cache).frame
    near = blds.iloc[blds.sindex.query(_project(area84, WGS84, int(c["crs_epsg"])),
                                       predicate="intersects")] if len(blds) else blds
    footprints = [frame.from_wgs84(g) for g in near.to_crs(WGS84).geometry] if len(near) else []
    fld = "polygon" if zone_id is None else "zone_id"
    cut = local.difference(shapely.union_all(footprints)) if footprints else local
    parts = sorted(shapely.get_parts(cut), key=lambda p: p.area, reverse=True)
    parts = [p for p in parts if p.geom_type == "Polygon" and p.area > 0]
    if not parts:
        raise EvacuationInputError(fld, "no open space left once the buildings are cut out")
    dropped = [round(p.area, 1) for p in parts[1:]]
    if parts[0].area < 0.8 * cut.area:  # enclosed courtyards are dropped, a real split is not
        raise EvacuationInputError(
            fld, f"buildings split the area into {len(parts)} parts "
                 f"({', '.join(f'{p.area:,.0f}' for p in parts[:4])} m²); choose a connected area")
    try:
        walk = walkable_area_from_twin(parts[0], [])
    except ScenarioError as exc:
        raise EvacuationInputError(fld, exc.message) from None
    walk = shapely.simplify(walk, 0.1, preserve_topology=True)
    walk = shapely.set_precision(walk, 0.01)
    if walk.is_empty or walk.area < 4.0:
        raise EvacuationInputError(fld, "no open space left once the buildings are cut out")
    spawn = walk.buffer(-1.0, join_style="mitre")
    if spawn.geom_type == "MultiPolygon":
        spawn = max(spawn.geoms, key=lambda p: p.area)
    spawn = shapely.set_precision(shapely.simplify(spawn, 0.2), 0.01)
    count = int(max(1, min(100, spawn.area * 1.0)))
    return {
        "schema_version": SCHEMA_VERSION,
        "name": name,
        "origin": [frame.lon, frame.lat],
        "walkable_area": mapping(walk),
        "obstacles": [],
        "exits": [],
        "agents": [{"name": "crowd", "count": count, "spawn": mapping(spawn),
                    "speed_m_per_s": {"mean": 1.34, "sd": 0.26, "min": 0.6, "max": 1.9},
                    "premovement_s": {"distribution": "uniform", "min": 0, "max": 10}}],
        "model": {"name": "CollisionFreeSpeedModel"},
        "simulation": {"dt_s": 0.01, "max_time_s": 900, "seeds": [1], "sample_interval_s": 0.5},
        "analysis": {"grid_size_m": 1.0},
        "source": {"city": c["name"], "zone_id": zone_id, "area_m2": round(walk.area, 1),
                   "buildings_cut": len(footprints), "enclosed_parts_dropped_m2": dropped,
                   "frame": "local metres, (0, 0) at origin, x east, y north: " + frame.proj},
    }
