"""Threat-zone geometry: plume footprints, wind-uncertainty bands, local metric frame.

Polygons are built in a *local projected frame*: the UTM zone of the source (WGS84 / UTM,
EPSG:326xx north, 327xx south), shifted so the source is at (0, 0); x = easting offset and
y = northing offset in metres. :class:`LocalFrame` converts to and from WGS84 and corrects
for the UTM meridian convergence, so a bearing is measured from *true* north.

A zone for a level of concern L is the set where the peak concentration within the time
horizon is ≥ L. For a Gaussian plume at fixed downwind distance x the crosswind profile is
Gaussian, so the zone's half-width is exactly σy(x)·√(2·ln(C_peak(x, 0)/L)) and the outline
is traced analytically along x. The "possibly affected" band (ALOHA's wind-direction
confidence lines) is the area swept when the wind direction varies by ±2σθ.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import shapely
from pyproj import CRS, Transformer
from shapely.geometry import MultiPolygon, Point, Polygon
from shapely.geometry.base import BaseGeometry

from citytwin.hazard.gaussian import GaussianPlume

MAX_DISTANCE_M = 10_000.0
HORIZON_S = 3600.0

LIMITATIONS: tuple[str, ...] = (
    "Gaussian plume model for a passive (neutrally buoyant) gas or for buoyant fire smoke; "
    "flat, uniform terrain and a steady, straight wind are assumed.",
    "Unreliable within a few tens of metres of the source; the dispersion coefficients are "
    "fitted for about 100 m to 10 km.",
    "Does not model terrain, the wakes and channelling of buildings, heavy (denser-than-air) "
    "gases, chemical reactions or deposition, fire-induced winds, or changes of the wind during "
    "the incident.",
    "Zones are cut at 10 km and consider the first 60 minutes after the release starts.",
    "Concentrations are ~10-minute averages; short peaks can be higher, and the actual "
    "footprint can meander within the 'possibly affected' band.",
    "Occupant numbers are estimates from floor area and use class, not counts.",
    "Levels of concern marked 'check' in the substance table are not yet verified against "
    "their cited source.",
)


def utm_epsg(*, lon_deg: float, lat_deg: float) -> int:
    """EPSG code of the WGS84/UTM zone containing (lon, lat) (Norway/Svalbard exceptions).

    Examples
    --------
    >>> utm_epsg(lon_deg=4.9, lat_deg=52.37)   # Amsterdam
    32631
    >>> utm_epsg(lon_deg=174.76, lat_deg=-36.85)  # Auckland
    32760
    """
    if not (-180.0 <= lon_deg <= 180.0 and -80.0 <= lat_deg <= 84.0):
        raise ValueError("UTM is defined for -80 ≤ lat ≤ 84 and -180 ≤ lon ≤ 180")
    zone = int((lon_deg + 180.0) // 6.0) + 1
    zone = min(zone, 60)
    if 56.0 <= lat_deg < 64.0 and 3.0 <= lon_deg < 12.0:
        zone = 32
    if 72.0 <= lat_deg < 84.0:
        for lo, hi, z in ((0, 9, 31), (9, 21, 33), (21, 33, 35), (33, 42, 37)):
            if lo <= lon_deg < hi:
                zone = z
    return (32600 if lat_deg >= 0 else 32700) + zone


@lru_cache(maxsize=64)
def _transformers(epsg: int) -> tuple[Transformer, Transformer]:
    crs = CRS.from_epsg(epsg)
    fwd = Transformer.from_crs("EPSG:4326", crs, always_xy=True)
    inv = Transformer.from_crs(crs, "EPSG:4326", always_xy=True)
    return fwd, inv


@dataclass(frozen=True)
class LocalFrame:
    """Local metric frame: UTM of the source, origin at the source.

    Attributes
    ----------
    epsg : int
        UTM EPSG code.
    lon0, lat0 : float
        Source position, WGS84 degrees.
    e0, n0 : float
        Source position in UTM metres.
    true_north_deg : float
        Direction of true north at the source, clockwise from grid north (degrees).

    Examples
    --------
    >>> f = LocalFrame.at(lon_deg=4.9, lat_deg=52.37)
    >>> x, y = f.to_local(np.array([4.9]), np.array([52.38]))
    >>> round(float(np.hypot(x[0], y[0])))   # 0.01° of latitude (UTM scale included)
    1113
    >>> bool(abs(np.degrees(np.arctan2(x[0], y[0])) - f.true_north_deg) < 0.01)
    True
    """

    epsg: int
    lon0: float
    lat0: float
    e0: float
    n0: float
    true_north_deg: float

    @classmethod
    def at(cls, *, lon_deg: float, lat_deg: float) -> LocalFrame:
        """Frame centred on (lon, lat) in the UTM zone picked from that location."""
        epsg = utm_epsg(lon_deg=lon_deg, lat_deg=lat_deg)
        fwd, _ = _transformers(epsg)
        e0, n0 = fwd.transform(lon_deg, lat_deg)
        dlat = 0.01 if lat_deg < 83.9 else -0.01
        e1, n1 = fwd.transform(lon_deg, lat_deg + dlat)
        sgn = 1.0 if dlat > 0 else -1.0
        tn = math.degrees(math.atan2(sgn * (e1 - e0), sgn * (n1 - n0)))
        return cls(epsg=epsg, lon0=lon_deg, lat0=lat_deg, e0=e0, n0=n0, true_north_deg=tn)

    @property
    def crs(self) -> str:
        return f"EPSG:{self.epsg}"

    def to_local(self, lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """WGS84 degrees → local metres (x east-ish, y north-ish, grid axes)."""
        fwd, _ = _transformers(self.epsg)
        e, n = fwd.transform(np.asarray(lon, dtype=float), np.asarray(lat, dtype=float))
        return np.asarray(e) - self.e0, np.asarray(n) - self.n0

    def to_wgs84(self, geom: BaseGeometry) -> BaseGeometry:
        """Transform a local-frame geometry to WGS84 (lon, lat)."""
        _, inv = _transformers(self.epsg)

        def f(xy: np.ndarray) -> np.ndarray:
            lon, lat = inv.transform(xy[:, 0] + self.e0, xy[:, 1] + self.n0)
            return np.column_stack([lon, lat])

        return shapely.transform(geom, f)

    def grid_bearing(self, true_bearing_deg: float) -> float:
        """A bearing from true north converted to one from grid north (degrees)."""
        return (true_bearing_deg + self.true_north_deg) % 360.0


def plume_bearing_deg(wind_from_deg: float) -> float:
    """Direction the plume travels to, clockwise from north: (from + 180) mod 360.

    Examples
    --------
    >>> plume_bearing_deg(270.0)   # westerly wind → plume goes east
    90.0
    """
    return (float(wind_from_deg) + 180.0) % 360.0


def plume_coords(
    x_local: np.ndarray, y_local: np.ndarray, *, grid_bearing_deg: float
) -> tuple[np.ndarray, np.ndarray]:
    """Local (east, north) offsets → plume (downwind, crosswind) coordinates in metres."""
    b = math.radians(grid_bearing_deg)
    sb, cb = math.sin(b), math.cos(b)
    along = x_local * sb + y_local * cb
    cross = x_local * cb - y_local * sb
    return along, cross


def to_local_from_plume(geom: BaseGeometry, *, grid_bearing_deg: float) -> BaseGeometry:
    """Rotate a geometry in plume coordinates (x downwind, y crosswind) into the local frame."""
    b = math.radians(grid_bearing_deg)
    sb, cb = math.sin(b), math.cos(b)

    def f(xy: np.ndarray) -> np.ndarray:
        a, c = xy[:, 0], xy[:, 1]
        # inverse of plume_coords: east = a*sb + c*cb, north = a*cb - c*sb
        return np.column_stack([a * sb + c * cb, a * cb - c * sb])

    return shapely.transform(geom, f)


def distance_grid(*, max_distance_m: float = MAX_DISTANCE_M, n: int = 360) -> np.ndarray:
    """Downwind sample distances (m), log-spaced from 1 m to ``max_distance_m``."""
    return np.unique(np.concatenate([np.geomspace(1.0, max_distance_m, n), [max_distance_m]]))


def zone_profile(
    plume: GaussianPlume,
    *,
    z_m: float,
    x_m: np.ndarray,
    horizon_s: float = HORIZON_S,
) -> tuple[np.ndarray, np.ndarray]:
    """Peak centreline concentration (g/m³) and σy (m) along the downwind samples ``x_m``."""
    return plume.centreline_peak(x_m=x_m, z_m=z_m, horizon_s=horizon_s)


def footprint(
    *,
    x_m: np.ndarray,
    c_centre: np.ndarray,
    sigma_y_m: np.ndarray,
    threshold: float,
) -> BaseGeometry | None:
    """Outline (plume coordinates) of the area where concentration ≥ ``threshold``.

    Parameters
    ----------
    x_m : ndarray
        Increasing downwind distances, m (the last one is the cut-off distance).
    c_centre : ndarray
        Peak centreline concentration at ``x_m`` (same unit as ``threshold``).
    sigma_y_m : ndarray
        Crosswind σ at ``x_m``, m.
    threshold : float
        Level of concern.

    Returns
    -------
    Polygon, MultiPolygon or None
        None when the level is nowhere reached.

    Examples
    --------
    >>> x = np.linspace(1, 1000, 200)
    >>> g = footprint(x_m=x, c_centre=1000 / x, sigma_y_m=0.1 * x, threshold=2.0)
    >>> round(g.bounds[2])   # reaches x where 1000/x = 2
    500
    """
    c = np.asarray(c_centre, dtype=float)
    above = c > threshold
    if not above.any():
        return None
    half = np.zeros_like(c)
    half[above] = sigma_y_m[above] * np.sqrt(2.0 * np.log(c[above] / threshold))
    polys = []
    idx = np.flatnonzero(above)
    runs = np.split(idx, np.flatnonzero(np.diff(idx) > 1) + 1)
    lc = np.log(np.maximum(c, 1e-300))
    lt = math.log(threshold)
    for run in runs:
        i0, i1 = int(run[0]), int(run[-1])
        if i0 == 0:
            x_start = 0.0
        else:  # interpolate the crossing in log concentration
            w = (lt - lc[i0 - 1]) / (lc[i0] - lc[i0 - 1])
            x_start = x_m[i0 - 1] + w * (x_m[i0] - x_m[i0 - 1])
        xs = x_m[i0 : i1 + 1]
        ys = half[i0 : i1 + 1]
        upper = [(x_start, 0.0), *zip(xs.tolist(), ys.tolist(), strict=True)]
        if i1 == len(c) - 1:  # cut at the last distance
            tail = [(float(xs[-1]), 0.0)]
        else:
            w = (lt - lc[i1]) / (lc[i1 + 1] - lc[i1])
            tail = [(float(x_m[i1] + w * (x_m[i1 + 1] - x_m[i1])), 0.0)]
        lower = list(zip(xs[::-1].tolist(), (-ys[::-1]).tolist(), strict=True))
        ring = upper + tail + lower
        if len(ring) >= 3:
            p = Polygon(ring)
            if not p.is_valid:
                p = shapely.make_valid(p)
            if not p.is_empty and p.area > 0:
                polys.append(p)
    if not polys:
        return None
    return polys[0] if len(polys) == 1 else shapely.union_all(polys)


def rotate_deg(geom: BaseGeometry, angle_deg: float) -> BaseGeometry:
    """Rotate about the origin, counter-clockwise by ``angle_deg`` (mathematical sense)."""
    a = math.radians(angle_deg)
    ca, sa = math.cos(a), math.sin(a)

    def f(xy: np.ndarray) -> np.ndarray:
        return np.column_stack([xy[:, 0] * ca - xy[:, 1] * sa, xy[:, 0] * sa + xy[:, 1] * ca])

    return shapely.transform(geom, f)


def swept(geom: BaseGeometry, *, half_angle_deg: float, step_deg: float = 1.5) -> BaseGeometry:
    """Union of ``geom`` rotated about the origin over ±``half_angle_deg`` (plume coordinates).

    This is the region covered when the wind direction varies by up to ±half_angle.
    """
    if half_angle_deg <= 0:
        return geom
    n = max(2, int(math.ceil(2 * half_angle_deg / step_deg)) + 1)
    angles = np.linspace(-half_angle_deg, half_angle_deg, n)
    parts = [rotate_deg(geom, float(a)) for a in angles]
    return shapely.union_all(parts).buffer(0)


def radial_zone(radius_m: float) -> Polygon:
    """Circle (local frame) around the source, used when the wind is too weak for a plume."""
    return Point(0.0, 0.0).buffer(radius_m, quad_segs=32)


def as_multipolygon(geom: BaseGeometry | None) -> MultiPolygon | Polygon | None:
    """Keep only polygonal parts of a geometry (drop slivers of lower dimension)."""
    if geom is None or geom.is_empty:
        return None
    if isinstance(geom, Polygon | MultiPolygon):
        return geom
    parts = [g for g in getattr(geom, "geoms", []) if isinstance(g, Polygon | MultiPolygon)]
    if not parts:
        return None
    return shapely.union_all(parts)
