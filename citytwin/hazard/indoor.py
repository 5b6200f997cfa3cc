"""Indoor concentration and toxic load (pure numpy).

Single-zone box model dC_in/dt = λ·(C_out(t) − C_in) with λ the air changes per hour
(DOMAIN.md §4), integrated exactly for a piecewise-linear outdoor concentration. Toxic load
D = ∫ C(t)^n dt (trapezoidal), in (mg/m³)^n·min when C is in mg/m³ and t in minutes.

Air changes per hour, normal / sealed (windows and doors closed, ventilation off), after
DOMAIN.md §4 (ALOHA-style building classes).
"""

from __future__ import annotations

import numpy as np

#: ACH per building type: (normal, sealed)
ACH_TABLE: dict[str, tuple[float, float]] = {
    "tight_house": (0.5, 0.2),
    "leaky_house": (1.5, 0.5),
    "commercial": (2.0, 0.8),
    "industrial": (4.0, 1.5),
}

#: use classes of :mod:`citytwin.city` mapped to an ACH building type
USE_CLASS_BUILDING_TYPE: dict[str, str] = {
    "residential": "leaky_house",
    "mixed": "leaky_house",
    "hotel": "commercial",
    "office": "commercial",
    "retail": "commercial",
    "education": "commercial",
    "childcare": "commercial",
    "hospital": "commercial",
    "care_home": "commercial",
    "clinic": "commercial",
    "hospitality": "commercial",
    "assembly": "commercial",
    "transport": "commercial",
    "industrial": "industrial",
    "warehouse": "industrial",
    "parking": "industrial",
    "none": "industrial",
}
DEFAULT_BUILDING_TYPE = "leaky_house"


def ach_for_use_classes(use_classes: np.ndarray | list[str], *, sealed: bool) -> np.ndarray:
    """Air changes per hour for an array of use classes (unknown → leaky house).

    Examples
    --------
    >>> ach_for_use_classes(["residential", "office", "warehouse", "??"], sealed=True).tolist()
    [0.5, 0.8, 1.5, 0.5]
    """
    j = 1 if sealed else 0
    lut = {u: ACH_TABLE[t][j] for u, t in USE_CLASS_BUILDING_TYPE.items()}
    default = ACH_TABLE[DEFAULT_BUILDING_TYPE][j]
    u = np.asarray(use_classes, dtype=object)
    if u.size == 0:
        return np.zeros(0)
    uniq, inv = np.unique(u.astype(str), return_inverse=True)
    vals = np.array([lut.get(x, default) for x in uniq], dtype=float)
    return vals[inv].reshape(u.shape)


def indoor_concentration(
    *,
    c_out: np.ndarray,
    t_s: np.ndarray,
    ach_per_h: np.ndarray | float,
    c_in0: np.ndarray | float = 0.0,
) -> np.ndarray:
    """Indoor concentration series for outdoor series ``c_out`` sampled at ``t_s``.

    Parameters
    ----------
    c_out : ndarray, shape (..., K)
        Outdoor concentration (any unit) at times ``t_s``.
    t_s : ndarray, shape (K,) or (..., K)
        Increasing times in seconds (rows may have their own time axis).
    ach_per_h : float or ndarray, shape (...)
        Air changes per hour per row.
    c_in0 : float or ndarray
        Indoor concentration at ``t_s[..., 0]``.

    Returns
    -------
    ndarray, shape (..., K)
        Indoor concentration, same unit as ``c_out``.

    Examples
    --------
    A constant outdoor 1.0 for one hour at 1 ACH gives 1 − e⁻¹ indoors.

    >>> t = np.linspace(0, 3600, 61)
    >>> round(float(indoor_concentration(c_out=np.ones(61), t_s=t, ach_per_h=1.0)[-1]), 4)
    0.6321
    """
    c = np.asarray(c_out, dtype=float)
    t = np.broadcast_to(np.asarray(t_s, dtype=float), c.shape)
    k = np.asarray(ach_per_h, dtype=float)[..., None] / 3600.0
    k = np.broadcast_to(k, c.shape[:-1] + (1,))[..., 0]
    out = np.empty_like(c)
    y = np.broadcast_to(np.asarray(c_in0, dtype=float), c.shape[:-1]).astype(float)
    out[..., 0] = y
    for i in range(1, c.shape[-1]):
        h = t[..., i] - t[..., i - 1]
        kh = k * h
        e = np.exp(-kh)
        c0 = c[..., i - 1]
        c1 = c[..., i]
        # exact solution for linear input: y(h) = c1 - m/k + (y0 - c0 + m/k) e^{-kh}
        with np.errstate(divide="ignore", invalid="ignore"):
            m_over_k = np.where(kh > 1e-12, (c1 - c0) / np.where(kh > 1e-12, kh, 1.0), 0.0)
        y = np.where(kh > 1e-12, c1 - m_over_k + (y - c0 + m_over_k) * e, y)
        out[..., i] = y
    return out


def toxic_load(*, c: np.ndarray, t_s: np.ndarray, n: float = 1.0) -> np.ndarray:
    """Toxic load D = ∫ C^n dt over the last axis, t in seconds, result per **minute**.

    Examples
    --------
    10 mg/m³ for 30 min with n = 2 gives 100·30 = 3000 (mg/m³)²·min.

    >>> t = np.array([0.0, 1800.0])
    >>> float(toxic_load(c=np.array([10.0, 10.0]), t_s=t, n=2.0))
    3000.0
    """
    cn = np.power(np.maximum(np.asarray(c, dtype=float), 0.0), n)
    t = np.broadcast_to(np.asarray(t_s, dtype=float), cn.shape)
    dt = np.diff(t, axis=-1) / 60.0
    return np.sum(0.5 * (cn[..., 1:] + cn[..., :-1]) * dt, axis=-1)
