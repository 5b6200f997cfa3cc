"""Dispersion coefficients σy(x), σz(x) in metres for Pasquill stability classes A–F.

Schemes, registered by name in :data:`SCHEMES` (see :func:`get_scheme`, :func:`sigmas`):

``briggs_rural`` / ``briggs_urban``
    Briggs (1973) formulas as tabulated by Gifford (1976), Hanna, Briggs & Hosker (1982)
    *Handbook on Atmospheric Diffusion* Table 4.5 and citytwin DOMAIN.md §4. Intended for
    100 m–10 km; σy are ~10-minute values.
``isc3``
    ISC3 rural Pasquill–Gifford–Turner curves, US EPA (1995) *User's guide for the ISC3
    dispersion models, Vol. II*, EPA-454/B-95-003b, Tables 1-1 and 1-2 (σz capped at 5000 m).
``tno``
    Power laws σy = a·x^b, σz = c·x^d of the TNO Yellow Book (CPR 14E, 1st/2nd editions; the
    3rd edition adds a roughness correction to σz that is *not* applied here — *check*).

All kernels are pure numpy: ``x_m`` is downwind distance in metres (array or scalar, values
≤ 0 give σ = 0) and the class is a single letter.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from citytwin.hazard.errors import HazardInputError

CLASSES: tuple[str, ...] = ("A", "B", "C", "D", "E", "F")

SigmaFunc = Callable[[np.ndarray, str], tuple[np.ndarray, np.ndarray]]


def _check_class(stability: str) -> str:
    s = str(stability).strip().upper()
    if s not in CLASSES:
        raise HazardInputError("stability_class", f"must be one of A–F, got {stability!r}")
    return s


def _x(x_m: np.ndarray | float) -> np.ndarray:
    return np.maximum(np.asarray(x_m, dtype=float), 0.0)


# --- Briggs (1973) -------------------------------------------------------------------------
# (a, b, form): sigma = a*x*(1 + b*x)^p with p per form
_BRIGGS_RURAL_Y = {
    c: (a, 0.0001) for c, a in zip(CLASSES, (0.22, 0.16, 0.11, 0.08, 0.06, 0.04), strict=True)
}
_BRIGGS_RURAL_Z: dict[str, tuple[float, float, float]] = {
    "A": (0.20, 0.0, 0.0),
    "B": (0.12, 0.0, 0.0),
    "C": (0.08, 0.0002, -0.5),
    "D": (0.06, 0.0015, -0.5),
    "E": (0.03, 0.0003, -1.0),
    "F": (0.016, 0.0003, -1.0),
}
_BRIGGS_URBAN_Y = {
    "A": 0.32,
    "B": 0.32,
    "C": 0.22,
    "D": 0.16,
    "E": 0.11,
    "F": 0.11,
}
_BRIGGS_URBAN_Z: dict[str, tuple[float, float, float]] = {
    "A": (0.24, 0.001, 0.5),
    "B": (0.24, 0.001, 0.5),
    "C": (0.20, 0.0, 0.0),
    "D": (0.14, 0.0003, -0.5),
    "E": (0.08, 0.0015, -0.5),
    "F": (0.08, 0.0015, -0.5),
}


def briggs_rural(*, x_m: np.ndarray | float, stability: str) -> tuple[np.ndarray, np.ndarray]:
    """Briggs (1973) open-country σy, σz in metres.

    Parameters
    ----------
    x_m : array_like
        Downwind distance, metres.
    stability : str
        Pasquill class ``"A"`` … ``"F"``.

    Returns
    -------
    (sigma_y_m, sigma_z_m) : tuple of ndarray

    Examples
    --------
    >>> sy, sz = briggs_rural(x_m=1000.0, stability="D")
    >>> round(float(sy), 1), round(float(sz), 1)
    (76.3, 37.9)
    """
    s = _check_class(stability)
    x = _x(x_m)
    a, b = _BRIGGS_RURAL_Y[s]
    sy = a * x / np.sqrt(1.0 + b * x)
    az, bz, pz = _BRIGGS_RURAL_Z[s]
    sz = az * x * (1.0 + bz * x) ** pz
    return sy, sz


def briggs_urban(*, x_m: np.ndarray | float, stability: str) -> tuple[np.ndarray, np.ndarray]:
    """Briggs (1973) urban (McElroy–Pooler, St. Louis) σy, σz in metres.

    Examples
    --------
    >>> sy, sz = briggs_urban(x_m=1000.0, stability="D")
    >>> round(float(sy), 1), round(float(sz), 1)
    (135.2, 122.8)
    """
    s = _check_class(stability)
    x = _x(x_m)
    sy = _BRIGGS_URBAN_Y[s] * x / np.sqrt(1.0 + 0.0004 * x)
    az, bz, pz = _BRIGGS_URBAN_Z[s]
    sz = az * x * (1.0 + bz * x) ** pz
    return sy, sz


# --- ISC3 Pasquill-Gifford-Turner (EPA-454/B-95-003b, Tables 1-1, 1-2) -------------------
_ISC_Y = {
    "A": (24.1670, 2.5334),
    "B": (18.3330, 1.8096),
    "C": (12.5000, 1.0857),
    "D": (8.3330, 0.72382),
    "E": (6.2500, 0.54287),
    "F": (4.1667, 0.36191),
}
# upper bound of x (km) for each segment, a, b ; last bound = inf
_ISC_Z: dict[str, list[tuple[float, float, float]]] = {
    "A": [
        (0.10, 122.800, 0.94470),
        (0.15, 158.080, 1.05420),
        (0.20, 170.220, 1.09320),
        (0.25, 179.520, 1.12620),
        (0.30, 217.410, 1.26440),
        (0.40, 258.890, 1.40940),
        (0.50, 346.750, 1.72830),
        (3.11, 453.850, 2.11660),
        (np.inf, 453.850, 2.11660),
    ],
    "B": [(0.20, 90.673, 0.93198), (0.40, 98.483, 0.98332), (np.inf, 109.300, 1.09710)],
    "C": [(np.inf, 61.141, 0.91465)],
    "D": [
        (0.30, 34.459, 0.86974),
        (1.00, 32.093, 0.81066),
        (3.00, 32.093, 0.64403),
        (10.00, 33.504, 0.60486),
        (30.00, 36.650, 0.56589),
        (np.inf, 44.053, 0.51179),
    ],
    "E": [
        (0.10, 24.260, 0.83660),
        (0.30, 23.331, 0.81956),
        (1.00, 21.628, 0.75660),
        (2.00, 21.628, 0.63077),
        (4.00, 22.534, 0.57154),
        (10.00, 24.703, 0.50527),
        (20.00, 26.970, 0.46713),
        (40.00, 35.420, 0.37615),
        (np.inf, 47.618, 0.29592),
    ],
    "F": [
        (0.20, 15.209, 0.81558),
        (0.70, 14.457, 0.78407),
        (1.00, 13.953, 0.68465),
        (2.00, 13.953, 0.63227),
        (3.00, 14.823, 0.54503),
        (7.00, 16.187, 0.46490),
        (15.00, 17.836, 0.41507),
        (30.00, 22.651, 0.32681),
        (60.00, 27.074, 0.27436),
        (np.inf, 34.219, 0.21716),
    ],
}


def isc3(*, x_m: np.ndarray | float, stability: str) -> tuple[np.ndarray, np.ndarray]:
    """ISC3 rural Pasquill–Gifford–Turner σy, σz in metres (EPA-454/B-95-003b).

    σy = 465.11628·x·tan(0.017453293·(c − d·ln x)), σz = a·x^b with x in km; σz ≤ 5000 m.

    Examples
    --------
    >>> sy, sz = isc3(x_m=1000.0, stability="D")
    >>> round(float(sy), 1), round(float(sz), 1)
    (68.1, 32.1)
    """
    s = _check_class(stability)
    x_km = _x(x_m) / 1000.0
    safe = np.where(x_km > 0, x_km, 1.0)
    c, d = _ISC_Y[s]
    th = 0.017453293 * (c - d * np.log(safe))
    sy = np.where(x_km > 0, 465.11628 * x_km * np.tan(th), 0.0)
    segs = _ISC_Z[s]
    bounds = np.array([seg[0] for seg in segs])
    idx = np.searchsorted(bounds, x_km, side="left")
    idx = np.minimum(idx, len(segs) - 1)
    a = np.array([seg[1] for seg in segs])[idx]
    b = np.array([seg[2] for seg in segs])[idx]
    sz = np.where(x_km > 0, np.minimum(a * safe**b, 5000.0), 0.0)
    return sy, sz


# --- TNO Yellow Book power laws --------------------------------------------------------------
_TNO = {
    "A": (0.527, 0.865, 0.28, 0.90),
    "B": (0.371, 0.866, 0.23, 0.85),
    "C": (0.209, 0.897, 0.22, 0.80),
    "D": (0.128, 0.905, 0.20, 0.76),
    "E": (0.098, 0.902, 0.15, 0.73),
    "F": (0.065, 0.902, 0.12, 0.67),
}


def tno(*, x_m: np.ndarray | float, stability: str) -> tuple[np.ndarray, np.ndarray]:
    """TNO Yellow Book power laws σy = a·x^b, σz = c·x^d (x in m), no roughness correction.

    Examples
    --------
    >>> sy, sz = tno(x_m=1000.0, stability="D")
    >>> round(float(sy), 1), round(float(sz), 1)
    (66.4, 38.1)
    """
    s = _check_class(stability)
    x = _x(x_m)
    a, b, c, d = _TNO[s]
    return a * x**b, c * x**d


SCHEMES: dict[str, Callable[..., tuple[np.ndarray, np.ndarray]]] = {
    "briggs_rural": briggs_rural,
    "briggs_urban": briggs_urban,
    "isc3": isc3,
    "tno": tno,
}


def get_scheme(name: str) -> Callable[..., tuple[np.ndarray, np.ndarray]]:
    """Return the σ function registered under ``name`` (case-insensitive).

    Raises
    ------
    HazardInputError
        ``field="sigma_scheme"`` when the name is not registered.
    """
    key = str(name).strip().lower().replace("-", "_").replace(" ", "_")
    if key not in SCHEMES:
        raise HazardInputError(
            "sigma_scheme", f"unknown scheme {name!r}; accepted: {', '.join(sorted(SCHEMES))}"
        )
    return SCHEMES[key]


def sigmas(
    *, x_m: np.ndarray | float, stability: str, scheme: str = "briggs_rural"
) -> tuple[np.ndarray, np.ndarray]:
    """σy, σz (metres) at downwind distance ``x_m`` (metres) with a registered scheme.

    Examples
    --------
    >>> sy, sz = sigmas(x_m=[100.0, 1000.0], stability="F", scheme="briggs_rural")
    >>> [round(float(v), 2) for v in sz]
    [1.55, 12.31]
    """
    return get_scheme(scheme)(x_m=x_m, stability=stability)
