"""Incident assessment: threat zones and affected buildings for a smoke or toxic release.

The service core knows no web framework and opens no file: :func:`assess_incident` takes a
buildings table (GeoDataFrame in EPSG:4326, or :class:`BuildingArrays` prepared once with
:func:`prepare_buildings`) and the incident, and returns an :class:`IncidentResult`.
The advice rules are written down in ``docs/hazard.md``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import pandas as pd
import shapely
from shapely.geometry import mapping
from shapely.geometry.base import BaseGeometry

from citytwin.hazard import indoor as _indoor
from citytwin.hazard.errors import HazardInputError
from citytwin.hazard.gaussian import GaussianPlume, along_wind_factor
from citytwin.hazard.plume_rise import buoyancy_flux
from citytwin.hazard.sigmas import CLASSES, SCHEMES
from citytwin.hazard.stability import (
    SIGMA_THETA_DEG,
    class_from_sigma_theta,
    pasquill_class,
    wind_at_height,
)
from citytwin.hazard.substances import DURATIONS, Substance, get_substance, resolve_substance
from citytwin.hazard.zones import (
    LIMITATIONS,
    MAX_DISTANCE_M,
    LocalFrame,
    as_multipolygon,
    distance_grid,
    footprint,
    plume_bearing_deg,
    plume_coords,
    radial_zone,
    swept,
    to_local_from_plume,
)

SCHEMA_VERSION = "1.0"
MODEL_NAME = "citytwin.hazard.gaussian"
MODEL_VERSION = "1.0"

SAFETY_CLASSES = ("vulnerable", "hazardous", "ordinary")
ADVICE = ("consider_evacuation", "shelter", "inform")
ADVICE_TEXT = {
    "consider_evacuation": "consider evacuation",
    "shelter": "shelter: go inside, close windows and doors, switch off ventilation",
    "inform": "inform: possibly affected, stay alert",
}
LEVEL_COLOURS = {1: "#f5d800", 2: "#ff8c00", 3: "#e00000"}
FIRE_NAMES = {"fire", "smoke", "fire smoke", "brand", "rook"}
COMPASS = (
    "N",
    "NNE",
    "NE",
    "ENE",
    "E",
    "ESE",
    "SE",
    "SSE",
    "S",
    "SSW",
    "SW",
    "WSW",
    "W",
    "WNW",
    "NW",
    "NNW",
)
LOW_WIND_M_S = 1.0
STALE_WEATHER_MIN = 30.0
ENSEMBLE_SPEED_SIGMA_LN = 0.2


# --------------------------------------------------------------------------- buildings
@dataclass(frozen=True)
class BuildingArrays:
    """Buildings as flat numpy arrays (centroids in WGS84 degrees), ready for fast queries."""

    id: np.ndarray
    name: np.ndarray
    safety_class: np.ndarray
    use_class: np.ndarray
    occupants_day: np.ndarray
    occupants_night: np.ndarray
    height_m: np.ndarray
    lon: np.ndarray
    lat: np.ndarray

    @property
    def n(self) -> int:
        return int(self.lon.shape[0])

    def bbox(self) -> tuple[float, float, float, float] | None:
        """(min lon, min lat, max lon, max lat) or None when empty."""
        if self.n == 0:
            return None
        return (
            float(self.lon.min()),
            float(self.lat.min()),
            float(self.lon.max()),
            float(self.lat.max()),
        )


_REQUIRED = ("id", "safety_class", "occupants_day", "occupants_night")


def prepare_buildings(buildings: Any) -> BuildingArrays:
    """Flatten a buildings GeoDataFrame (EPSG:4326) into :class:`BuildingArrays`.

    Uses ``lon``/``lat`` columns when present, else the geometry's centroid (points are
    taken as they are). Columns: ``id, name, safety_class, use_class, occupants_day,
    occupants_night, height_m, geometry``; ``name``, ``use_class`` and ``height_m`` may be
    missing.

    Raises
    ------
    HazardInputError
        ``field="buildings"`` when a required column is missing or the CRS is not WGS84.
    """
    if isinstance(buildings, BuildingArrays):
        return buildings
    if buildings is None:
        raise HazardInputError(
            "buildings", "a buildings table (GeoDataFrame, EPSG:4326) is required"
        )
    cols = set(buildings.columns)
    missing = [c for c in _REQUIRED if c not in cols]
    if missing:
        raise HazardInputError("buildings", f"missing columns: {', '.join(missing)}")
    crs = getattr(buildings, "crs", None)
    if crs is not None and crs.to_epsg() != 4326:
        raise HazardInputError("buildings", f"must be in EPSG:4326, got {crs}")
    n = len(buildings)
    if {"lon", "lat"} <= cols:
        lon = buildings["lon"].to_numpy(dtype=float)
        lat = buildings["lat"].to_numpy(dtype=float)
    elif n == 0:
        lon = lat = np.zeros(0)
    else:
        geoms = np.asarray(buildings.geometry.values, dtype=object)
        types = shapely.get_type_id(geoms)
        pts = geoms if np.all(types == 0) else shapely.centroid(geoms)
        lon = shapely.get_x(pts)
        lat = shapely.get_y(pts)

    def col(name: str, default: Any, dtype: Any = object) -> np.ndarray:
        if name in cols:
            return buildings[name].to_numpy(dtype=dtype)
        return np.full(n, default, dtype=dtype)

    return BuildingArrays(
        id=col("id", None),
        name=col("name", ""),
        safety_class=col("safety_class", "ordinary"),
        use_class=col("use_class", "mixed"),
        occupants_day=np.nan_to_num(col("occupants_day", 0.0, float)),
        occupants_night=np.nan_to_num(col("occupants_night", 0.0, float)),
        height_m=np.nan_to_num(col("height_m", 0.0, float)),
        lon=np.asarray(lon, dtype=float),
        lat=np.asarray(lat, dtype=float),
    )


# --------------------------------------------------------------------------- result
@dataclass(frozen=True)
class Species:
    """A substance carried by the dispersing tracer at ``factor`` g per g of tracer."""

    substance: Substance
    factor: float


@dataclass(frozen=True)
class Scenario:
    """Everything needed to re-evaluate the plume anywhere (e.g. :func:`threat_at_point`)."""

    frame: LocalFrame
    plume: GaussianPlume
    grid_bearing_deg: float
    species: tuple[Species, ...]
    thresholds_g_m3: Mapping[int, float]  # tracer units, per level
    receptor_height_m: float
    horizon_s: float
    radial: bool
    radial_radius_m: Mapping[int, float]


@dataclass
class IncidentResult:
    """Result of :func:`assess_incident`.

    Attributes
    ----------
    schema_version : str
    model : dict
        Model name, version and every parameter used (seed included).
    incident, weather : dict
    levels : list of dict
        Levels of concern per level (1–3) with thresholds in mg/m³ (and ppm).
    zones : dict
        GeoJSON FeatureCollection (WGS84) of zones and "possibly affected" bands.
    affected : pandas.DataFrame
        One row per affected building, vulnerable and hazardous first.
    counts : dict
        Buildings and occupants per level and safety class, zones and bands separately,
        and per advice.
    warnings, limitations : list of str
    scenario : Scenario
        For :func:`threat_at_point`; not serialised.
    """

    schema_version: str
    model: dict[str, Any]
    incident: dict[str, Any]
    weather: dict[str, Any]
    levels: list[dict[str, Any]]
    zones: dict[str, Any]
    affected: pd.DataFrame
    counts: dict[str, Any]
    warnings: list[str]
    limitations: list[str]
    scenario: Scenario = field(repr=False)

    def affected_records(self, *, limit: int | None = None) -> list[dict[str, Any]]:
        """Affected buildings as JSON-ready dicts (NaN → None)."""
        df = self.affected if limit is None else self.affected.head(limit)
        recs = df.astype(object).where(pd.notna(df), None).to_dict(orient="records")
        return [{k: _jsonable(v) for k, v in r.items()} for r in recs]

    def to_dict(self, *, limit: int | None = None) -> dict[str, Any]:
        """JSON-ready dict of the whole result (affected list optionally truncated)."""
        return {
            "schema_version": self.schema_version,
            "model": self.model,
            "incident": self.incident,
            "weather": self.weather,
            "levels": self.levels,
            "zones": self.zones,
            "affected": self.affected_records(limit=limit),
            "affected_total": int(len(self.affected)),
            "counts": self.counts,
            "warnings": list(self.warnings),
            "limitations": list(self.limitations),
        }


def _jsonable(v: Any) -> Any:
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


# --------------------------------------------------------------------------- validation
def _num(
    field_name: str, value: Any, *, lo: float, hi: float, lo_open: bool = False, unit: str = ""
) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise HazardInputError(field_name, f"must be a number, got {value!r}") from None
    if not math.isfinite(v):
        raise HazardInputError(field_name, f"must be finite, got {value!r}")
    bad_lo = v <= lo if lo_open else v < lo
    if bad_lo or v > hi:
        lo_s = f"> {lo:g}" if lo_open else f"≥ {lo:g}"
        raise HazardInputError(field_name, f"must be {lo_s} and ≤ {hi:g} {unit}, got {v:g}".strip())
    return v


def _is_fire(substance: Any) -> bool:
    return isinstance(substance, str) and substance.strip().lower() in FIRE_NAMES


def _local_hour(at: datetime, lon: float, local_tz: str | None) -> tuple[float, str]:
    if local_tz:
        try:
            lt = at.astimezone(ZoneInfo(local_tz))
        except ZoneInfoNotFoundError:
            raise HazardInputError("local_tz", f"unknown time zone {local_tz!r}") from None
        return lt.hour + lt.minute / 60, f"local time in {local_tz}"
    off = at.utcoffset()
    if off is not None and off != timedelta(0):
        return at.hour + at.minute / 60, "local time of the given timestamp"
    solar = (at.hour + at.minute / 60 + lon / 15.0) % 24.0
    return solar, "mean solar time from longitude (no time zone given)"


# --------------------------------------------------------------------------- main entry
def assess_incident(
    *,
    buildings: Any,
    source_lon: float,
    source_lat: float,
    substance: str | Mapping[str, Any] | Substance,
    rate_g_s: float | None = None,
    duration_min: float | None = None,
    heat_mw: float | None = None,
    wind_speed_m_s: float | None,
    wind_from_deg: float | None,
    sigma_theta_deg: float | None = None,
    cloud_cover_octas: float | None = None,
    at: datetime | None = None,
    urban: bool = True,
    stability_class: str | None = None,
    sigma_scheme: str | None = None,
    release_height_m: float = 0.0,
    receptor_height_m: float = 1.5,
    mixing_height_m: float | None = None,
    wind_height_m: float = 10.0,
    loc_duration: str = "60min",
    band_method: Literal["sigma_theta", "ensemble"] = "sigma_theta",
    ensemble_members: int = 100,
    seed: int | None = 0,
    convective_fraction: float = 0.7,
    heat_of_combustion_mj_kg: float = 20.0,
    pm_yield: float = 0.05,
    co_yield: float = 0.05,
    weather_source: str = "manual",
    weather_observed_at: datetime | None = None,
    local_tz: str | None = None,
    max_distance_m: float = MAX_DISTANCE_M,
    horizon_min: float = 60.0,
) -> IncidentResult:
    """Threat zones and affected buildings for a toxic release or a fire.

    Parameters
    ----------
    buildings : GeoDataFrame or BuildingArrays
        EPSG:4326, columns ``id, name, safety_class ('vulnerable'|'hazardous'|'ordinary'),
        use_class, occupants_day, occupants_night, height_m, geometry`` (``lon``/``lat``
        columns are used instead of the geometry when present).
    source_lon, source_lat : float
        Source position, WGS84 degrees.
    substance : str, mapping or Substance
        Name or alias (case-insensitive), a user-defined substance mapping (see
        :func:`citytwin.hazard.substances.substance_from_dict`), or ``"fire"`` for smoke
        (PM2.5 and CO) with plume rise from ``heat_mw``.
    rate_g_s : float
        Release rate, g/s (> 0; required for substances). For ``"fire"``: the fuel's mass
        burning rate, g/s (default ``heat_mw / heat_of_combustion``).
    duration_min : float or None
        Release duration, minutes, 0 < d ≤ 60; None = continuous over the 60-min horizon.
    heat_mw : float or None
        Fire: total heat release rate, MW (0 < h ≤ 5000); the convective share
        ``convective_fraction`` drives the plume rise.
    wind_speed_m_s : float
        Wind speed at ``wind_height_m`` (10 m), m/s; > 0. Below 1 m/s no plume is computed:
        a radial zone is returned with a warning.
    wind_from_deg : float
        Direction the wind comes FROM, degrees clockwise from true north, 0–360.
    sigma_theta_deg : float or None
        Standard deviation of the wind direction, degrees. Sets the stability class (unless
        ``stability_class`` is given) and the width of the "possibly affected" band (±2σθ);
        without it the class's typical σθ is used for the band.
    cloud_cover_octas : float or None
        0–8; with ``at`` and the location gives the Pasquill class. None = 4 assumed.
    at : datetime or None
        Incident time (timezone-aware; naive = UTC). None = now.
    urban : bool
        Briggs urban σ and urban wind-profile exponents (default) or rural ones.
    stability_class : str or None
        Force a Pasquill class A–F.
    sigma_scheme : str or None
        ``briggs_urban``, ``briggs_rural``, ``isc3`` or ``tno``; default from ``urban``.
    release_height_m, receptor_height_m : float
        Heights above ground, m.
    mixing_height_m : float or None
        Mixing lid, m (None = no lid).
    loc_duration : str
        Exposure duration of the levels of concern: 10min, 30min, 60min (default), 4h, 8h.
    band_method : {"sigma_theta", "ensemble"}
        Band by sweeping the zone over ±2σθ, or from a wind ensemble of
        ``ensemble_members`` members (direction ~ N(from, σθ), speed × lognormal(0, 0.2)),
        drawn with ``seed``.
    weather_source, weather_observed_at : str, datetime
        Where the wind came from and when it was observed (age and staleness > 30 min are
        reported).
    local_tz : str or None
        IANA time zone for day/night occupancy (day = 07:00–19:00 local).
    max_distance_m, horizon_min : float
        Cut-offs (≤ 10 km, ≤ 60 min).

    Returns
    -------
    IncidentResult

    Raises
    ------
    HazardInputError
        Naming the field and the accepted range.
    """
    warnings: list[str] = []
    # ---- validate
    lon0 = _num("source_lon", source_lon, lo=-180, hi=180, unit="degrees")
    lat0 = _num("source_lat", source_lat, lo=-80, hi=84, unit="degrees")
    if wind_speed_m_s is None:
        raise HazardInputError(
            "wind_speed_m_s", "required (m/s, > 0) when no weather stream is available"
        )
    if wind_from_deg is None:
        raise HazardInputError("wind_from_deg", "required (degrees the wind comes from, 0–360)")
    u10 = _num("wind_speed_m_s", wind_speed_m_s, lo=0, hi=60, lo_open=True, unit="m/s")
    wdir = _num("wind_from_deg", wind_from_deg, lo=0, hi=360, unit="degrees") % 360.0
    if sigma_theta_deg is not None:
        sigma_theta_deg = _num(
            "sigma_theta_deg", sigma_theta_deg, lo=0, hi=100, lo_open=True, unit="degrees"
        )
    if cloud_cover_octas is not None:
        cloud_cover_octas = _num("cloud_cover_octas", cloud_cover_octas, lo=0, hi=8, unit="octas")
    max_d = _num("max_distance_m", max_distance_m, lo=100, hi=MAX_DISTANCE_M, unit="m")
    horizon_s = 60.0 * _num("horizon_min", horizon_min, lo=1, hi=60, unit="min")
    release_height_m = _num("release_height_m", release_height_m, lo=0, hi=500, unit="m")
    receptor_height_m = _num("receptor_height_m", receptor_height_m, lo=0, hi=300, unit="m")
    if mixing_height_m is not None:
        mixing_height_m = _num("mixing_height_m", mixing_height_m, lo=10, hi=5000, unit="m")
    if duration_min is not None:
        duration_min = _num("duration_min", duration_min, lo=0, hi=60, lo_open=True, unit="min")
    if loc_duration not in DURATIONS:
        raise HazardInputError("loc_duration", f"must be one of {', '.join(DURATIONS)}")
    if band_method not in ("sigma_theta", "ensemble"):
        raise HazardInputError("band_method", "must be 'sigma_theta' or 'ensemble'")
    if band_method == "ensemble":
        ensemble_members = int(_num("ensemble_members", ensemble_members, lo=10, hi=1000))
    if stability_class is not None:
        stability_class = str(stability_class).strip().upper()
        if stability_class not in CLASSES:
            raise HazardInputError(
                "stability_class", f"must be one of A–F, got {stability_class!r}"
            )
    scheme = sigma_scheme or ("briggs_urban" if urban else "briggs_rural")
    if scheme not in SCHEMES:
        raise HazardInputError("sigma_scheme", f"must be one of {', '.join(sorted(SCHEMES))}")
    if at is None:
        at = datetime.now(UTC)
        warnings.append("No incident time given: the current time is used.")
    elif at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
        warnings.append("Incident time had no time zone: taken as UTC.")

    fire = _is_fire(substance)
    if fire:
        if heat_mw is None:
            raise HazardInputError(
                "heat_mw", "required for a fire: heat release rate in MW (0 < h ≤ 5000)"
            )
        heat_mw = _num("heat_mw", heat_mw, lo=0, hi=5000, lo_open=True, unit="MW")
        convective_fraction = _num("convective_fraction", convective_fraction, lo=0.1, hi=1.0)
        hoc = _num("heat_of_combustion_mj_kg", heat_of_combustion_mj_kg, lo=1, hi=60, unit="MJ/kg")
        pm_yield = _num("pm_yield", pm_yield, lo=0, hi=0.5, lo_open=True, unit="g/g")
        co_yield = _num("co_yield", co_yield, lo=0, hi=0.5, lo_open=True, unit="g/g")
        if rate_g_s is None:
            rate = heat_mw * 1e6 / (hoc * 1e6) * 1000.0
        else:
            rate = _num("rate_g_s", rate_g_s, lo=0, hi=1e7, lo_open=True, unit="g/s")
        species = (
            Species(get_substance("smoke_pm"), pm_yield),
            Species(get_substance("carbon_monoxide"), co_yield),
        )
        fb = buoyancy_flux(heat_mw=heat_mw, convective_fraction=convective_fraction)
    else:
        if rate_g_s is None:
            raise HazardInputError("rate_g_s", "required: release rate in g/s (> 0 and ≤ 1e7)")
        rate = _num("rate_g_s", rate_g_s, lo=0, hi=1e7, lo_open=True, unit="g/s")
        sub = resolve_substance(substance)
        species = (Species(sub, 1.0),)
        fb = 0.0
        if heat_mw is not None:
            warnings.append("heat_mw is ignored for a non-fire release (no plume rise).")
    primary = species[0].substance

    b = prepare_buildings(buildings)
    bb = b.bbox()
    if bb is not None:
        margin = 0.1  # degrees, ~10 km
        if not (
            bb[0] - margin <= lon0 <= bb[2] + margin and bb[1] - margin <= lat0 <= bb[3] + margin
        ):
            raise HazardInputError(
                "source_lon/source_lat",
                f"source ({lon0:.5f}, {lat0:.5f}) lies outside the city: accepted within ~10 km "
                f"of lon {bb[0]:.4f}–{bb[2]:.4f}, lat {bb[1]:.4f}–{bb[3]:.4f}",
            )

    # ---- weather and stability
    if stability_class is not None:
        cls, cls_reason = stability_class, "given"
    elif sigma_theta_deg is not None:
        cls = class_from_sigma_theta(sigma_theta_deg=sigma_theta_deg)
        cls_reason = f"from σθ = {sigma_theta_deg:g}°"
    else:
        cc = cloud_cover_octas
        if cc is None:
            cc = 4.0
            warnings.append("No cloud cover given: 4/8 assumed for the stability class.")
        cls, cls_reason = pasquill_class(
            wind_speed_m_s=u10, at=at, lat_deg=lat0, lon_deg=lon0, cloud_cover_octas=cc
        )
    sig_theta = sigma_theta_deg if sigma_theta_deg is not None else SIGMA_THETA_DEG[cls]
    if cls in ("E", "F"):
        warnings.append(
            f"Stable atmosphere (class {cls}): the plume may stay concentrated far downwind."
        )
    age_min = None
    if weather_observed_at is not None:
        obs = (
            weather_observed_at
            if weather_observed_at.tzinfo
            else weather_observed_at.replace(tzinfo=UTC)
        )
        age_min = (at - obs).total_seconds() / 60.0
        if age_min > STALE_WEATHER_MIN:
            warnings.append(
                f"Weather observation is {age_min:.0f} min old "
                f"(stale after {STALE_WEATHER_MIN:.0f} min)."
            )
    radial = u10 < LOW_WIND_M_S
    u_rel = float(
        wind_at_height(
            wind_speed_m_s=max(u10, LOW_WIND_M_S),
            height_m=release_height_m,
            stability=cls,
            reference_height_m=wind_height_m,
            urban=urban,
        )
    )
    duration_s = float("inf") if duration_min is None else duration_min * 60.0
    plume = GaussianPlume(
        q_g_s=rate,
        u_m_s=u_rel,
        stability=cls,
        scheme=scheme,
        release_height_m=release_height_m,
        buoyancy_flux_m4_s3=fb,
        mixing_height_m=mixing_height_m,
        duration_s=duration_s,
    )

    # ---- levels (tracer units)
    levels: list[dict[str, Any]] = []
    thresholds: dict[int, float] = {}
    for k in (1, 2, 3):
        parts = []
        thr = math.inf
        for sp in species:
            locs = {lv.level: lv for lv in sp.substance.levels_of_concern(duration=loc_duration)}
            if k in locs:
                lv = locs[k]
                parts.append((sp, lv))
                thr = min(thr, lv.mg_m3 / 1000.0 / sp.factor)
        if not parts:
            continue
        thresholds[k] = thr
        name = " / ".join(
            (lv.name if len(species) == 1 else f"{sp.substance.name}: {lv.name}")
            for sp, lv in parts
        )
        levels.append(
            {
                "level": k,
                "name": name,
                "mg_m3": parts[0][1].mg_m3,
                "ppm": parts[0][1].ppm,
                "species": [{"substance": sp.substance.name, **lv.to_dict()} for sp, lv in parts],
            }
        )
    if not thresholds:
        raise HazardInputError(
            "substance", f"{primary.name} has no level of concern for {loc_duration}"
        )

    frame = LocalFrame.at(lon_deg=lon0, lat_deg=lat0)
    bearing_true = plume_bearing_deg(wdir)
    gbear = frame.grid_bearing(bearing_true)

    # ---- zones
    x_grid = distance_grid(max_distance_m=max_d)
    zone_geoms: dict[int, BaseGeometry | None] = {}
    band_geoms: dict[int, BaseGeometry | None] = {}
    extent: dict[int, float] = {}
    radial_radius: dict[int, float] = {}
    ens = None
    if radial:
        warnings.append(
            f"Wind {u10:g} m/s is below {LOW_WIND_M_S:g} m/s: no plume is computed. Radial zones "
            "show the reach of each level under class F at 1 m/s in every direction."
        )
        worst = replace(plume, u_m_s=LOW_WIND_M_S, stability="F")
        cl, sy = worst.centreline_peak(x_m=x_grid, z_m=receptor_height_m, horizon_s=horizon_s)
        for k, thr in thresholds.items():
            fp = footprint(x_m=x_grid, c_centre=cl, sigma_y_m=sy, threshold=thr)
            r = 0.0 if fp is None else float(fp.bounds[2])
            radial_radius[k] = r
            extent[k] = r
            zone_geoms[k] = radial_zone(r) if r > 0 else None
            band_geoms[k] = None
    else:
        cl, sy = plume.centreline_peak(x_m=x_grid, z_m=receptor_height_m, horizon_s=horizon_s)
        for k, thr in thresholds.items():
            fp = footprint(x_m=x_grid, c_centre=cl, sigma_y_m=sy, threshold=thr)
            extent[k] = 0.0 if fp is None else float(fp.bounds[2])
            zone_geoms[k] = None if fp is None else to_local_from_plume(fp, grid_bearing_deg=gbear)
            if band_method == "sigma_theta":
                band_geoms[k] = (
                    None
                    if fp is None
                    else to_local_from_plume(
                        swept(fp, half_angle_deg=2 * sig_theta), grid_bearing_deg=gbear
                    )
                )
        if band_method == "ensemble":
            ens = _ensemble(
                plume=plume,
                members=ensemble_members,
                seed=seed,
                sigma_theta_deg=sig_theta,
                gbear=gbear,
                x_grid=x_grid,
                z=receptor_height_m,
                horizon_s=horizon_s,
                thresholds=thresholds,
                u10=u10,
            )
            band_geoms = ens["union"]
        # band = swept area minus the zone itself
        for k in thresholds:
            bg, zg = band_geoms.get(k), zone_geoms.get(k)
            if bg is not None and zg is not None:
                band_geoms[k] = as_multipolygon(bg.difference(zg))
            elif bg is not None:
                band_geoms[k] = as_multipolygon(bg)

    # ---- buildings
    table = _affected_buildings(
        b=b,
        frame=frame,
        plume=plume,
        gbear=gbear,
        thresholds=thresholds,
        zone_geoms=zone_geoms,
        band_geoms=band_geoms,
        z=receptor_height_m,
        horizon_s=horizon_s,
        max_d=max_d,
        sig_theta=sig_theta,
        radial=radial,
        radial_radius=radial_radius,
        ens=ens,
        species=species,
        at=at,
        lon0=lon0,
        local_tz=local_tz,
    )
    affected, day_info = table

    # ---- zones GeoJSON
    features = [
        {
            "type": "Feature",
            "geometry": {"type": "Point", "coordinates": [round(lon0, 7), round(lat0, 7)]},
            "properties": {"kind": "source", "substance": "fire" if fire else primary.name},
        }
    ]
    lvl_by_k = {lv["level"]: lv for lv in levels}
    for k in sorted(thresholds, reverse=True):
        for kind, geoms in (("zone", zone_geoms), ("possibly_affected", band_geoms)):
            g = geoms.get(k)
            if g is None or g.is_empty:
                continue
            g84 = frame.to_wgs84(g)
            g84 = shapely.transform(g84, lambda xy: np.round(xy, 7))
            features.append(
                {
                    "type": "Feature",
                    "geometry": mapping(g84),
                    "properties": {
                        "kind": kind,
                        "level": k,
                        "name": lvl_by_k[k]["name"],
                        "threshold_mg_m3": lvl_by_k[k]["mg_m3"],
                        "threshold_ppm": lvl_by_k[k]["ppm"],
                        "colour": LEVEL_COLOURS[k],
                        "downwind_extent_m": round(extent.get(k, 0.0), 1),
                        "area_km2": round(g.area / 1e6, 4),
                        "radial": radial,
                    },
                }
            )
    zones = {"type": "FeatureCollection", "features": features}

    counts = _counts(affected, thresholds)
    model = {
        "name": MODEL_NAME,
        "version": MODEL_VERSION,
        "description": "Gaussian plume with ground reflection"
        + (", mixing lid" if mixing_height_m else "")
        + (", Briggs plume rise" if fire else "")
        + ", finite release as integrated puffs (along-wind σx = σy)",
        "parameters": {
            "sigma_scheme": scheme,
            "stability_class": cls,
            "stability_reason": cls_reason,
            "sigma_theta_deg": sig_theta,
            "sigma_theta_source": "measured"
            if sigma_theta_deg is not None
            else f"typical for class {cls}",
            "wind_speed_at_release_m_s": round(u_rel, 3),
            "wind_height_m": wind_height_m,
            "plume_bearing_deg": bearing_true,
            "release_height_m": release_height_m,
            "receptor_height_m": receptor_height_m,
            "mixing_height_m": mixing_height_m,
            "buoyancy_flux_m4_s3": round(fb, 3),
            "max_distance_m": max_d,
            "horizon_min": horizon_s / 60,
            "loc_duration": loc_duration,
            "band_method": "radial" if radial else band_method,
            "band_half_angle_deg": None if band_method == "ensemble" else 2 * sig_theta,
            "ensemble_members": ensemble_members if band_method == "ensemble" else None,
            "ensemble_speed_sigma_ln": ENSEMBLE_SPEED_SIGMA_LN
            if band_method == "ensemble"
            else None,
            "seed": seed if band_method == "ensemble" else None,
            "urban": urban,
            "local_frame_crs": frame.crs,
            "occupancy_period": day_info,
        },
    }
    release: dict[str, Any] = {
        "rate_g_s": rate,
        "duration_min": duration_min,
        "continuous": duration_min is None,
    }
    if fire:
        release.update(
            {
                "heat_mw": heat_mw,
                "convective_fraction": convective_fraction,
                "heat_of_combustion_mj_kg": heat_of_combustion_mj_kg,
                "burning_rate_g_s": rate,
                "pm_rate_g_s": rate * pm_yield,
                "co_rate_g_s": rate * co_yield,
                "assumption": (
                    "smoke as PM2.5 and CO with fixed yields; burning rate = heat / "
                    "heat of combustion unless given"
                ),
            }
        )
    incident = {
        "source_lon": lon0,
        "source_lat": lat0,
        "at": at.isoformat(),
        "substance": "fire" if fire else primary.name,
        "substance_key": "fire" if fire else primary.key,
        "substances": [sp.substance.to_dict() | {"factor_g_per_g": sp.factor} for sp in species],
        "release": release,
    }
    weather = {
        "wind_speed_m_s": u10,
        "wind_from_deg": wdir,
        "sigma_theta_deg": sigma_theta_deg,
        "cloud_cover_octas": cloud_cover_octas,
        "stability_class": cls,
        "source": weather_source,
        "observed_at": weather_observed_at.isoformat() if weather_observed_at else None,
        "age_min": None if age_min is None else round(age_min, 1),
        "stale": bool(age_min is not None and age_min > STALE_WEATHER_MIN),
    }
    if any(sp.substance.check for sp in species):
        warnings.append(
            "Some levels of concern are marked 'check' (not yet verified against their source)."
        )
    scenario = Scenario(
        frame=frame,
        plume=plume,
        grid_bearing_deg=gbear,
        species=species,
        thresholds_g_m3=thresholds,
        receptor_height_m=receptor_height_m,
        horizon_s=horizon_s,
        radial=radial,
        radial_radius_m=radial_radius,
    )
    return IncidentResult(
        schema_version=SCHEMA_VERSION,
        model=model,
        incident=incident,
        weather=weather,
        levels=levels,
        zones=zones,
        affected=affected,
        counts=counts,
        warnings=warnings,
        limitations=list(LIMITATIONS),
        scenario=scenario,
    )


# --------------------------------------------------------------------------- internals
def _ensemble(
    *,
    plume: GaussianPlume,
    members: int,
    seed: int | None,
    sigma_theta_deg: float,
    gbear: float,
    x_grid: np.ndarray,
    z: float,
    horizon_s: float,
    thresholds: Mapping[int, float],
    u10: float,
) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    d_dir = rng.normal(0.0, sigma_theta_deg, members)
    f_u = np.exp(rng.normal(0.0, ENSEMBLE_SPEED_SIGMA_LN, members))
    u_m = np.maximum(plume.u_m_s * f_u, LOW_WIND_M_S)
    profiles = []
    polys: dict[int, list[BaseGeometry]] = {k: [] for k in thresholds}
    for i in range(members):
        p = replace(plume, u_m_s=float(u_m[i]))
        cl, sy = p.centreline_peak(x_m=x_grid, z_m=z, horizon_s=horizon_s)
        bear = gbear + float(d_dir[i])
        profiles.append((bear, cl, sy))
        for k, thr in thresholds.items():
            fp = footprint(x_m=x_grid, c_centre=cl, sigma_y_m=sy, threshold=thr)
            if fp is not None:
                polys[k].append(to_local_from_plume(fp, grid_bearing_deg=bear))
    union = {k: (shapely.union_all(v).buffer(0) if v else None) for k, v in polys.items()}
    return {"profiles": profiles, "union": union, "members": members, "x_grid": x_grid}


def _bbox_union(geoms: list[BaseGeometry | None]) -> tuple[float, float, float, float] | None:
    gs = [g for g in geoms if g is not None and not g.is_empty]
    if not gs:
        return None
    bs = np.array([g.bounds for g in gs])
    return (
        float(bs[:, 0].min()),
        float(bs[:, 1].min()),
        float(bs[:, 2].max()),
        float(bs[:, 3].max()),
    )


def _compass(bearing: np.ndarray) -> np.ndarray:
    idx = np.round(np.asarray(bearing) / 22.5).astype(int) % 16
    return np.array(COMPASS, dtype=object)[idx]


def _affected_buildings(
    *,
    b: BuildingArrays,
    frame: LocalFrame,
    plume: GaussianPlume,
    gbear: float,
    thresholds: Mapping[int, float],
    zone_geoms: Mapping[int, BaseGeometry | None],
    band_geoms: Mapping[int, BaseGeometry | None],
    z: float,
    horizon_s: float,
    max_d: float,
    sig_theta: float,
    radial: bool,
    radial_radius: Mapping[int, float],
    ens: dict | None,
    species: tuple[Species, ...],
    at: datetime,
    lon0: float,
    local_tz: str | None,
) -> tuple[pd.DataFrame, str]:
    hour, how = _local_hour(at, lon0, local_tz)
    is_day = 7.0 <= hour < 19.0
    day_info = f"{'day' if is_day else 'night'} (07:00–19:00 is day; {how}, hour {hour:.2f})"
    columns = _COLUMNS + (["p_level1", "p_level2", "p_level3"] if ens is not None else [])
    empty = pd.DataFrame({c: pd.Series(dtype=object) for c in columns})
    bbox_local = _bbox_union(list(zone_geoms.values()) + list(band_geoms.values()))
    if b.n == 0 or bbox_local is None:
        return empty, day_info
    # prefilter in degrees with the WGS84 bounds of the local bbox (padded 1 %)
    from shapely.geometry import box

    pad = 0.01 * max(bbox_local[2] - bbox_local[0], bbox_local[3] - bbox_local[1]) + 10.0
    lb = box(bbox_local[0] - pad, bbox_local[1] - pad, bbox_local[2] + pad, bbox_local[3] + pad)
    lb84 = frame.to_wgs84(
        shapely.segmentize(lb, max(1.0, (bbox_local[2] - bbox_local[0]) / 16))
    ).bounds
    cand = np.flatnonzero(
        (b.lon >= lb84[0]) & (b.lon <= lb84[2]) & (b.lat >= lb84[1]) & (b.lat <= lb84[3])
    )
    if cand.size == 0:
        return empty, day_info
    ex, ny = frame.to_local(b.lon[cand], b.lat[cand])
    along, cross = plume_coords(ex, ny, grid_bearing_deg=gbear)
    r = np.hypot(along, cross)
    levels_sorted = sorted(thresholds)
    thr_arr = np.array([thresholds[k] for k in levels_sorted])

    def level_of(c: np.ndarray) -> np.ndarray:
        # highest level k with c >= thr_k
        out = np.zeros(c.shape, dtype=np.int8)
        for k, t in zip(levels_sorted, thr_arr, strict=True):
            out = np.where(c >= t, np.int8(k), out)
        return out

    probs = None
    if radial:
        worst = replace(plume, u_m_s=LOW_WIND_M_S, stability="F")
        peak = np.where(
            r <= max_d, worst.peak(x_m=np.maximum(r, 1.0), y_m=0.0, z_m=z, horizon_s=horizon_s), 0.0
        )
        zone_lvl = np.zeros(r.shape, dtype=np.int8)
        for k in levels_sorted:
            zone_lvl = np.where(r <= radial_radius.get(k, 0.0), np.int8(k), zone_lvl)
        band_lvl = np.zeros_like(zone_lvl)
        peak_possible = peak
    else:
        inside = (along > 0) & (along <= max_d)
        peak = np.zeros(r.shape)
        if inside.any():
            peak[inside] = plume.peak(
                x_m=along[inside], y_m=cross[inside], z_m=z, horizon_s=horizon_s
            )
        zone_lvl = level_of(peak)
        if ens is None:
            a = math.radians(2.0 * sig_theta)
            phi = np.arctan2(cross, along)
            phr = phi - np.clip(phi, -a, a)
            xr, yr = r * np.cos(phr), r * np.sin(phr)
            ok = (xr > 0) & (xr <= max_d)
            peak_possible = np.zeros(r.shape)
            if ok.any():
                peak_possible[ok] = plume.peak(x_m=xr[ok], y_m=yr[ok], z_m=z, horizon_s=horizon_s)
            peak_possible = np.maximum(peak_possible, peak)
            band_lvl = level_of(peak_possible)
        else:
            counts = np.zeros((len(levels_sorted), r.size), dtype=np.int32)
            peak_possible = peak.copy()
            lx = np.log(ens["x_grid"])
            for bear, cl, sy in ens["profiles"]:
                a_m, c_m = plume_coords(ex, ny, grid_bearing_deg=bear)
                ok = (a_m >= ens["x_grid"][0]) & (a_m <= max_d)
                if not ok.any():
                    continue
                la = np.log(a_m[ok])
                lcl = np.interp(la, lx, np.log(np.maximum(cl, 1e-300)))
                syi = np.interp(la, lx, sy)
                cm = np.exp(lcl - 0.5 * (c_m[ok] / syi) ** 2)
                pp = peak_possible[ok]
                peak_possible[ok] = np.maximum(pp, cm)
                for j, t in enumerate(thr_arr):
                    counts[j, ok] += cm >= t
            probs = counts / float(ens["members"])
            band_lvl = np.zeros(r.shape, dtype=np.int8)
            for j, k in enumerate(levels_sorted):
                band_lvl = np.where(counts[j] > 0, np.int8(k), band_lvl)
    band_lvl = np.where(band_lvl > zone_lvl, band_lvl, 0).astype(np.int8)
    hit = (zone_lvl > 0) | (band_lvl > 0)
    if not hit.any():
        return empty, day_info
    sel = cand[hit]
    A, C, R = along[hit], cross[hit], r[hit]
    zl, bl = zone_lvl[hit], band_lvl[hit]
    pk, pposs = peak[hit], peak_possible[hit]
    ex_h, ny_h = ex[hit], ny[hit]

    # ---- time series: outdoor, indoor, dose (per building time axis)
    u = LOW_WIND_M_S if radial else plume.u_m_s
    p_eval = replace(plume, u_m_s=LOW_WIND_M_S, stability="F") if radial else plume
    X = np.maximum(R if radial else A, 1.0)
    Y = np.zeros_like(X) if radial else C
    sy_b, _ = p_eval.sigmas(X)
    sx = p_eval.sigma_x_factor * sy_b
    T = min(p_eval.duration_s, horizon_s)
    t_a = np.clip((X - 4 * sx) / u, 0.0, horizon_s)
    t_b = np.clip((X + 4 * sx) / u + T, t_a, horizon_s)
    k1, k2 = 40, 16
    s1 = np.linspace(0.0, 1.0, k1)
    s2 = np.linspace(0.0, 1.0, k2 + 1)[1:]
    tt = np.concatenate(
        [t_a[:, None] + (t_b - t_a)[:, None] * s1, t_b[:, None] + (horizon_s - t_b)[:, None] * s2],
        axis=1,
    )
    css = p_eval.steady(x_m=X, y_m=Y, z_m=z)
    fac = along_wind_factor(
        x_m=X[:, None], t_s=tt, duration_s=p_eval.duration_s, u_m_s=u, sigma_x_m=sx[:, None]
    )
    cout = css[:, None] * fac  # g/m3 tracer
    use = b.use_class[sel]
    ach_n = _indoor.ach_for_use_classes(use, sealed=False)
    ach_s = _indoor.ach_for_use_classes(use, sealed=True)
    cin_n = _indoor.indoor_concentration(c_out=cout, t_s=tt, ach_per_h=ach_n)
    cin_s = _indoor.indoor_concentration(c_out=cout, t_s=tt, ach_per_h=ach_s)
    prim = species[0]
    to_mg = 1000.0 * prim.factor
    n_exp = prim.substance.toxic_load_n
    dose_out = _indoor.toxic_load(c=cout * to_mg, t_s=tt, n=n_exp)
    dose_in = _indoor.toxic_load(c=cin_s * to_mg, t_s=tt, n=n_exp)
    pin_n = cin_n.max(axis=1)
    pin_s = cin_s.max(axis=1)

    # ---- advice (docs/hazard.md)
    thr_lowest = thresholds[levels_sorted[0]]
    thr2 = thresholds.get(2, thresholds[levels_sorted[-1]])
    sc = b.safety_class[sel].astype(str)
    vulnerable = sc == "vulnerable"
    evac = (pin_s >= thr2) | (vulnerable & (zl >= 3))
    shelter = pk >= thr_lowest
    advice = np.where(evac, "consider_evacuation", np.where(shelter, "shelter", "inform"))
    notes = np.where(
        (sc == "hazardous") & (zl > 0), "hazardous site in the zone: check for escalation", ""
    )

    true_bear = (np.degrees(np.arctan2(ex_h, ny_h)) - frame.true_north_deg) % 360.0
    occ = (b.occupants_day if is_day else b.occupants_night)[sel]
    lvl_name = {k: f"level {k}" for k in levels_sorted}
    area = np.where(
        zl > 0,
        np.array([lvl_name.get(int(k), "") for k in range(4)], dtype=object)[zl] + " zone",
        np.array([lvl_name.get(int(k), "") for k in range(4)], dtype=object)[bl]
        + " possibly affected",
    )
    mm = prim.substance.molar_mass_g_mol
    data: dict[str, Any] = {
        "id": b.id[sel],
        "name": b.name[sel],
        "safety_class": sc,
        "use_class": use,
        "zone_level": zl.astype(int),
        "band_level": bl.astype(int),
        "area": area,
        "advice": advice,
        "occupants": np.round(occ, 1),
        "distance_m": np.round(R, 1),
        "direction": _compass(true_bear),
        "bearing_deg": np.round(true_bear, 1),
        "arrival_min": np.round((R if radial else np.maximum(A, 0.0)) / u / 60.0, 2),
        "peak_outdoor_mg_m3": pk * to_mg,
        "peak_outdoor_ppm": (pk * to_mg * 24.45 / mm) if mm else np.full(pk.shape, np.nan),
        "peak_possible_mg_m3": pposs * to_mg,
        "peak_indoor_mg_m3": pin_n * to_mg,
        "peak_indoor_sheltered_mg_m3": pin_s * to_mg,
        "dose_outdoor": dose_out,
        "dose_indoor_sheltered": dose_in,
        "dose_unit": f"(mg/m3)^{n_exp:g}·min",
        "ach_normal": ach_n,
        "ach_sheltered": ach_s,
        "lon": b.lon[sel],
        "lat": b.lat[sel],
        "note": notes,
    }
    if len(species) > 1:  # fire: also CO
        co = species[1]
        data["co_peak_outdoor_ppm"] = (
            pk * 1000.0 * co.factor * 24.45 / co.substance.molar_mass_g_mol
        )
        data["co_peak_indoor_sheltered_ppm"] = (
            pin_s * 1000.0 * co.factor * 24.45 / co.substance.molar_mass_g_mol
        )
    if probs is not None:
        for j, k in enumerate(levels_sorted):
            data[f"p_level{k}"] = probs[j, hit]
        for k in (1, 2, 3):
            data.setdefault(f"p_level{k}", np.full(sel.shape, np.nan))
    df = pd.DataFrame(data)
    cls_rank = pd.Series(sc).map({"vulnerable": 0, "hazardous": 1}).fillna(2).to_numpy()
    adv_rank = (
        pd.Series(advice).map({"consider_evacuation": 0, "shelter": 1, "inform": 2}).to_numpy()
    )
    order = np.lexsort((R, -np.maximum(zl, bl), adv_rank, cls_rank))
    df = df.iloc[order].reset_index(drop=True)
    return df, day_info


_COLUMNS = [
    "id",
    "name",
    "safety_class",
    "use_class",
    "zone_level",
    "band_level",
    "area",
    "advice",
    "occupants",
    "distance_m",
    "direction",
    "bearing_deg",
    "arrival_min",
    "peak_outdoor_mg_m3",
    "peak_outdoor_ppm",
    "peak_possible_mg_m3",
    "peak_indoor_mg_m3",
    "peak_indoor_sheltered_mg_m3",
    "dose_outdoor",
    "dose_indoor_sheltered",
    "dose_unit",
    "ach_normal",
    "ach_sheltered",
    "lon",
    "lat",
    "note",
]


def _counts(df: pd.DataFrame, thresholds: Mapping[int, float]) -> dict[str, Any]:
    sc = df["safety_class"].to_numpy(dtype=object).astype(str)
    occ = df["occupants"].to_numpy(dtype=float)
    zl = df["zone_level"].to_numpy()
    bl = df["band_level"].to_numpy()
    adv = df["advice"].to_numpy(dtype=object).astype(str)
    cls_masks = {c: sc == c for c in SAFETY_CLASSES}

    def block(mask: np.ndarray) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for c in SAFETY_CLASSES:
            m = mask & cls_masks[c]
            out[c] = {"buildings": int(m.sum()), "occupants": round(float(occ[m].sum()), 1)}
        out["total"] = {"buildings": int(mask.sum()), "occupants": round(float(occ[mask].sum()), 1)}
        return out

    res: dict[str, Any] = {"zones": {}, "possibly_affected": {}, "advice": {}}
    for k in sorted(thresholds):
        res["zones"][f"level_{k}"] = block(zl == k)
        res["possibly_affected"][f"level_{k}"] = block(bl == k)
    for a in ADVICE:
        res["advice"][a] = block(adv == a)
    res["total"] = block(np.ones(len(df), dtype=bool))
    return res


# --------------------------------------------------------------------------- point query
def threat_at_point(
    result: IncidentResult | Scenario,
    *,
    lon: float,
    lat: float,
    use_class: str = "residential",
    n_times: int = 121,
) -> dict[str, Any]:
    """Concentration and dose over time at one point, outdoors and indoors.

    Parameters
    ----------
    result : IncidentResult or Scenario
    lon, lat : float
        WGS84 degrees.
    use_class : str
        Building use class for the air changes per hour (see :mod:`citytwin.hazard.indoor`).
    n_times : int
        Samples over the horizon (0–60 min).

    Returns
    -------
    dict
        ``t_min``, ``outdoor_mg_m3``, ``indoor_mg_m3``, ``indoor_sheltered_mg_m3`` (lists),
        ``peak_*``, ``dose_*`` and ``distance_m``.
    """
    sc = result.scenario if isinstance(result, IncidentResult) else result
    lon = _num("lon", lon, lo=-180, hi=180)
    lat = _num("lat", lat, lo=-90, hi=90)
    ex, ny = sc.frame.to_local(np.array([lon]), np.array([lat]))
    a, c = plume_coords(ex, ny, grid_bearing_deg=sc.grid_bearing_deg)
    p = sc.plume
    if sc.radial:
        p = replace(p, u_m_s=LOW_WIND_M_S, stability="F")
        a, c = np.hypot(a, c), np.zeros(1)
    t = np.linspace(0.0, sc.horizon_s, n_times)
    if a[0] <= 0:
        cout = np.zeros(n_times)
    else:
        cout = p.at_time(x_m=a, y_m=c, z_m=sc.receptor_height_m, t_s=t[None, :])[0]
    prim = sc.species[0]
    to_mg = 1000.0 * prim.factor
    ach_n = _indoor.ach_for_use_classes([use_class], sealed=False)
    ach_s = _indoor.ach_for_use_classes([use_class], sealed=True)
    cin = _indoor.indoor_concentration(c_out=cout[None, :], t_s=t, ach_per_h=ach_n)[0]
    cis = _indoor.indoor_concentration(c_out=cout[None, :], t_s=t, ach_per_h=ach_s)[0]
    n_exp = prim.substance.toxic_load_n
    return {
        "substance": prim.substance.name,
        "distance_m": float(np.hypot(ex[0], ny[0])),
        "t_min": (t / 60.0).tolist(),
        "outdoor_mg_m3": (cout * to_mg).tolist(),
        "indoor_mg_m3": (cin * to_mg).tolist(),
        "indoor_sheltered_mg_m3": (cis * to_mg).tolist(),
        "peak_outdoor_mg_m3": float(cout.max() * to_mg),
        "peak_indoor_mg_m3": float(cin.max() * to_mg),
        "peak_indoor_sheltered_mg_m3": float(cis.max() * to_mg),
        "dose_outdoor": float(_indoor.toxic_load(c=cout * to_mg, t_s=t, n=n_exp)),
        "dose_indoor_sheltered": float(_indoor.toxic_load(c=cis * to_mg, t_s=t, n=n_exp)),
        "dose_unit": f"(mg/m3)^{n_exp:g}·min",
        "ach_normal": float(ach_n[0]),
        "ach_sheltered": float(ach_s[0]),
    }
