"""Atmospheric stability: solar elevation, Pasquill class, wind profile.

* :func:`solar_elevation_deg` — NOAA Global Monitoring Laboratory "General solar position
  calculations" (fractional-year series, accurate to a few tenths of a degree).
* :func:`pasquill_class` — the Pasquill–Turner table as given by NOAA READY (DOMAIN.md §4);
  insolation from solar elevation (Turner 1964: strong > 60°, moderate 35–60°, slight < 35°)
  reduced one step for 5–7 octas of cloud; overcast (8 octas) and the hour centred on sunrise
  or sunset give D. Table cells with two classes ("A–B") take the *more stable* one, which is
  the conservative choice for near-ground releases.
* :func:`class_from_sigma_theta` — EPA (2000) *Meteorological Monitoring Guidance*,
  EPA-454/R-99-005, Table 6-8a (σθ bounds 22.5, 17.5, 12.5, 7.5, 3.8°).
* :func:`class_from_obukhov` — Golder (1972) via 1/L = a + b·log10(z0) (Seinfeld & Pandis,
  *Atmospheric Chemistry and Physics*, Table 16.4), nearest representative value.
* :func:`wind_at_height` — power-law profile with the EPA ISC3 exponents.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import numpy as np

from citytwin.hazard.errors import HazardInputError
from citytwin.hazard.sigmas import CLASSES

#: representative σθ (degrees) per class, DOMAIN.md §4
SIGMA_THETA_DEG: dict[str, float] = {"A": 25.0, "B": 20.0, "C": 15.0, "D": 10.0, "E": 5.0, "F": 2.5}

#: EPA ISC3 wind-profile exponents (EPA-454/B-95-003b, Vol. II §1.1.5)
WIND_EXPONENT_RURAL: dict[str, float] = {
    "A": 0.07,
    "B": 0.07,
    "C": 0.10,
    "D": 0.15,
    "E": 0.35,
    "F": 0.55,
}
WIND_EXPONENT_URBAN: dict[str, float] = {
    "A": 0.15,
    "B": 0.15,
    "C": 0.20,
    "D": 0.25,
    "E": 0.30,
    "F": 0.30,
}

# rows: wind <2, 2-3, 3-5, 5-6, >6 m/s; columns: strong, moderate, slight, night >4/8, night <=4/8
# "A-B" style cells resolved to the more stable class.
_TABLE: tuple[tuple[str, ...], ...] = (
    ("A", "B", "B", "E", "F"),
    ("B", "B", "C", "E", "F"),
    ("B", "C", "C", "D", "E"),
    ("C", "D", "D", "D", "D"),
    ("C", "D", "D", "D", "D"),
)

_HORIZON_DEG = -0.833  # refraction + solar radius


def _utc(at: datetime) -> datetime:
    if at.tzinfo is None:
        return at.replace(tzinfo=UTC)
    return at.astimezone(UTC)


def solar_elevation_deg(*, at: datetime, lat_deg: float, lon_deg: float) -> float:
    """Solar elevation angle in degrees (no refraction) at a time and place.

    Parameters
    ----------
    at : datetime
        Time; timezone-aware (naive values are taken as UTC).
    lat_deg, lon_deg : float
        WGS84 latitude and longitude in degrees (east positive).

    Examples
    --------
    >>> from datetime import datetime, timezone
    >>> e = solar_elevation_deg(at=datetime(2024, 6, 21, 11, 40, tzinfo=timezone.utc),
    ...                         lat_deg=52.0, lon_deg=5.0)
    >>> 60.5 < e < 62.0
    True
    """
    t = _utc(at)
    doy = t.timetuple().tm_yday
    hour = t.hour + t.minute / 60.0 + t.second / 3600.0
    g = 2.0 * math.pi / 365.0 * (doy - 1 + (hour - 12.0) / 24.0)
    eqtime = 229.18 * (
        0.000075
        + 0.001868 * math.cos(g)
        - 0.032077 * math.sin(g)
        - 0.014615 * math.cos(2 * g)
        - 0.040849 * math.sin(2 * g)
    )
    decl = (
        0.006918
        - 0.399912 * math.cos(g)
        + 0.070257 * math.sin(g)
        - 0.006758 * math.cos(2 * g)
        + 0.000907 * math.sin(2 * g)
        - 0.002697 * math.cos(3 * g)
        + 0.00148 * math.sin(3 * g)
    )
    tst = hour * 60.0 + eqtime + 4.0 * lon_deg
    ha = math.radians(tst / 4.0 - 180.0)
    lat = math.radians(lat_deg)
    cosz = math.sin(lat) * math.sin(decl) + math.cos(lat) * math.cos(decl) * math.cos(ha)
    return 90.0 - math.degrees(math.acos(max(-1.0, min(1.0, cosz))))


def insolation_category(*, solar_elevation_deg: float, cloud_cover_octas: float) -> str:
    """Daytime insolation: ``"strong"``, ``"moderate"``, ``"slight"`` or ``"overcast"``.

    Examples
    --------
    >>> insolation_category(solar_elevation_deg=65, cloud_cover_octas=0)
    'strong'
    >>> insolation_category(solar_elevation_deg=65, cloud_cover_octas=6)
    'moderate'
    >>> insolation_category(solar_elevation_deg=40, cloud_cover_octas=8)
    'overcast'
    """
    if cloud_cover_octas >= 8:
        return "overcast"
    levels = ("slight", "moderate", "strong")
    if solar_elevation_deg > 60.0:
        i = 2
    elif solar_elevation_deg > 35.0:
        i = 1
    else:
        i = 0
    if cloud_cover_octas >= 5:
        i = max(0, i - 1)
    return levels[i]


def _wind_row(u: float) -> int:
    if u < 2.0:
        return 0
    if u < 3.0:
        return 1
    if u < 5.0:
        return 2
    if u <= 6.0:
        return 3
    return 4


def pasquill_class(
    *,
    wind_speed_m_s: float,
    at: datetime,
    lat_deg: float,
    lon_deg: float,
    cloud_cover_octas: float,
) -> tuple[str, str]:
    """Pasquill class from 10-m wind speed, time, place and cloud cover.

    Parameters
    ----------
    wind_speed_m_s : float
        Wind speed at 10 m, m/s.
    at : datetime
        Time (timezone-aware; naive = UTC).
    lat_deg, lon_deg : float
        WGS84 position, degrees.
    cloud_cover_octas : float
        Total cloud cover, 0–8 octas.

    Returns
    -------
    (stability_class, reason) : tuple of str

    Examples
    --------
    >>> from datetime import datetime, timezone
    >>> noon = datetime(2024, 6, 21, 11, 40, tzinfo=timezone.utc)
    >>> pasquill_class(wind_speed_m_s=1.5, at=noon, lat_deg=52, lon_deg=5, cloud_cover_octas=0)[0]
    'A'
    >>> night = datetime(2024, 1, 10, 1, 0, tzinfo=timezone.utc)
    >>> pasquill_class(wind_speed_m_s=1.5, at=night, lat_deg=52, lon_deg=5, cloud_cover_octas=2)[0]
    'F'
    """
    if not cloud_cover_octas >= 0 or cloud_cover_octas > 8:
        raise HazardInputError("cloud_cover_octas", f"must be 0–8 octas, got {cloud_cover_octas}")
    if not wind_speed_m_s >= 0:
        raise HazardInputError("wind_speed_m_s", f"must be ≥ 0 m/s, got {wind_speed_m_s}")
    row = _wind_row(wind_speed_m_s)
    elev = [
        solar_elevation_deg(at=at + timedelta(minutes=dm), lat_deg=lat_deg, lon_deg=lon_deg)
        for dm in (-30, 0, 30)
    ]
    above = [e > _HORIZON_DEG for e in elev]
    if len(set(above)) > 1:
        return "D", f"within 30 min of sunrise or sunset (solar elevation {elev[1]:.1f}°)"
    if cloud_cover_octas >= 8:
        return "D", "overcast (8/8)"
    if above[1]:
        cat = insolation_category(solar_elevation_deg=elev[1], cloud_cover_octas=cloud_cover_octas)
        col = {"strong": 0, "moderate": 1, "slight": 2}[cat]
        reason = f"day, {cat} insolation (solar elevation {elev[1]:.1f}°, {cloud_cover_octas:g}/8)"
    else:
        col = 3 if cloud_cover_octas > 4 else 4
        reason = f"night, cloud {cloud_cover_octas:g}/8"
    return _TABLE[row][col], f"{reason}, wind {wind_speed_m_s:g} m/s"


def class_from_sigma_theta(*, sigma_theta_deg: float) -> str:
    """Pasquill class from the standard deviation of the wind azimuth (degrees).

    Examples
    --------
    >>> [class_from_sigma_theta(sigma_theta_deg=s) for s in (25, 20, 15, 10, 5, 2.5)]
    ['A', 'B', 'C', 'D', 'E', 'F']
    """
    s = float(sigma_theta_deg)
    if not s > 0 or s > 100:
        raise HazardInputError("sigma_theta_deg", f"must be in (0, 100] degrees, got {s}")
    for bound, cls in ((22.5, "A"), (17.5, "B"), (12.5, "C"), (7.5, "D"), (3.8, "E")):
        if s >= bound:
            return cls
    return "F"


#: Golder (1972) coefficients of 1/L = a + b·log10(z0) per class
_GOLDER = {
    "A": (-0.096, 0.029),
    "B": (-0.037, 0.029),
    "C": (-0.002, 0.018),
    "D": (0.0, 0.0),
    "E": (0.004, -0.018),
    "F": (0.035, -0.036),
}


def class_from_obukhov(*, obukhov_length_m: float, roughness_m: float) -> str:
    """Pasquill class from the Monin–Obukhov length (m) and roughness length z0 (m).

    Picks the class whose Golder (1972) representative 1/L is nearest on the 1/L axis.

    Examples
    --------
    >>> class_from_obukhov(obukhov_length_m=-9.8, roughness_m=0.006)
    'B'
    >>> class_from_obukhov(obukhov_length_m=1e6, roughness_m=0.006)
    'D'
    """
    inv = 0.0 if obukhov_length_m == 0 else 1.0 / obukhov_length_m
    lz = math.log10(roughness_m)
    reps = {c: a + b * lz for c, (a, b) in _GOLDER.items()}
    return min(CLASSES, key=lambda c: abs(inv - reps[c]))


def wind_at_height(
    *,
    wind_speed_m_s: float | np.ndarray,
    height_m: float | np.ndarray,
    stability: str,
    reference_height_m: float = 10.0,
    urban: bool = True,
) -> np.ndarray:
    """Power-law wind speed (m/s) at ``height_m`` from a measurement at ``reference_height_m``.

    Heights below the reference height use the measured speed (as ISC3 does for sources
    below the anemometer).

    Examples
    --------
    >>> round(float(wind_at_height(wind_speed_m_s=5.0, height_m=40.0, stability="D",
    ...                            urban=False)), 3)
    6.156
    """
    p = (WIND_EXPONENT_URBAN if urban else WIND_EXPONENT_RURAL)[stability]
    h = np.maximum(np.asarray(height_m, dtype=float), reference_height_m)
    return np.asarray(wind_speed_m_s, dtype=float) * (h / reference_height_m) ** p
