"""Briggs buoyant plume rise for fire smoke.

Formulas (Briggs 1969, 1971, 1975 as used in EPA ISC3, EPA-454/B-95-003b §1.1.4; DOMAIN.md §4):

* buoyancy flux Fb = g·Qc / (π·ρa·cp·Ta)  [m⁴/s³], ≈ 8.8 m⁴/s³ per MW of convective heat;
* neutral/unstable (A–D): gradual rise Δh = 1.6·Fb^(1/3)·x^(2/3)/u up to the final rise
  21.425·Fb^(3/4)/u (Fb < 55) or 38.71·Fb^(3/5)/u (Fb ≥ 55), reached at x = 49·Fb^(5/8) or
  119·Fb^(2/5) m;
* stable (E, F): s = (g/Ta)·dθ/dz with dθ/dz = 0.020 K/m (E), 0.035 K/m (F) (ISC3 defaults);
  final rise min(2.6·(Fb/(u·s))^(1/3), 4·Fb^(1/4)·s^(-3/8)) (the second is the calm limit),
  gradual rise as above until it reaches the final value.
"""

from __future__ import annotations

import numpy as np

G = 9.80665  # m/s²
RHO_AIR = 1.205  # kg/m³ at 20 °C
CP_AIR = 1005.0  # J/(kg·K)
T_AIR = 293.15  # K
DTHETA_DZ = {"E": 0.020, "F": 0.035}  # K/m, ISC3 defaults


def buoyancy_flux(
    *, heat_mw: float, convective_fraction: float = 1.0, ambient_temp_k: float = T_AIR
) -> float:
    """Buoyancy flux Fb (m⁴/s³) from a heat release rate in MW.

    Parameters
    ----------
    heat_mw : float
        Heat release rate, MW.
    convective_fraction : float
        Share of ``heat_mw`` that is convective (1.0 when ``heat_mw`` is already Qc; ~0.7 for
        a total heat release rate of a fire).
    ambient_temp_k : float
        Ambient air temperature, K.

    Examples
    --------
    >>> round(buoyancy_flux(heat_mw=1.0), 2)
    8.79
    """
    qc_w = heat_mw * 1e6 * convective_fraction
    return G * qc_w / (np.pi * RHO_AIR * CP_AIR * ambient_temp_k)


def final_rise_m(
    *,
    buoyancy_flux_m4_s3: float,
    wind_speed_m_s: float,
    stability: str,
    ambient_temp_k: float = T_AIR,
) -> tuple[float, float]:
    """Final Briggs rise (m) and the distance (m) at which it is reached.

    Examples
    --------
    >>> dh, xf = final_rise_m(buoyancy_flux_m4_s3=10.0, wind_speed_m_s=5.0, stability="D")
    >>> round(dh, 2), round(xf, 1)
    (24.1, 206.6)
    """
    fb = float(buoyancy_flux_m4_s3)
    u = float(wind_speed_m_s)
    if fb <= 0:
        return 0.0, 0.0
    if stability in ("E", "F"):
        s = G / ambient_temp_k * DTHETA_DZ[stability]
        dh = min(2.6 * (fb / (u * s)) ** (1.0 / 3.0), 4.0 * fb**0.25 * s ** (-0.375))
        # distance where the gradual 2/3 law reaches dh
        xf = (dh * u / (1.6 * fb ** (1.0 / 3.0))) ** 1.5
        return dh, xf
    if fb < 55.0:
        return 21.425 * fb**0.75 / u, 49.0 * fb**0.625
    return 38.71 * fb**0.6 / u, 119.0 * fb**0.4


def plume_rise_m(
    *,
    x_m: np.ndarray | float,
    buoyancy_flux_m4_s3: float,
    wind_speed_m_s: float,
    stability: str,
    gradual: bool = True,
    ambient_temp_k: float = T_AIR,
) -> np.ndarray:
    """Plume rise Δh (m) at downwind distance ``x_m`` (m).

    Parameters
    ----------
    x_m : array_like
        Downwind distance, m.
    buoyancy_flux_m4_s3 : float
        Fb from :func:`buoyancy_flux`.
    wind_speed_m_s : float
        Wind speed at the source height, m/s.
    stability : str
        Pasquill class A–F.
    gradual : bool
        Use the 2/3-law transitional rise up to the final rise (True) or the final rise
        everywhere (False).

    Examples
    --------
    >>> round(float(plume_rise_m(x_m=100.0, buoyancy_flux_m4_s3=10.0, wind_speed_m_s=5.0,
    ...                          stability="D")), 2)
    14.85
    """
    dh_final, _ = final_rise_m(
        buoyancy_flux_m4_s3=buoyancy_flux_m4_s3,
        wind_speed_m_s=wind_speed_m_s,
        stability=stability,
        ambient_temp_k=ambient_temp_k,
    )
    x = np.maximum(np.asarray(x_m, dtype=float), 0.0)
    if not gradual:
        return np.full_like(x, dh_final)
    grad = 1.6 * buoyancy_flux_m4_s3 ** (1.0 / 3.0) * x ** (2.0 / 3.0) / wind_speed_m_s
    return np.minimum(grad, dh_final)
