"""Gaussian plume kernels (pure numpy, no I/O).

Coordinates are plume coordinates in metres: ``x`` downwind from the source along the mean
wind, ``y`` crosswind, ``z`` height above ground. Release rates are in g/s and the
concentrations returned are in **g/m³** (multiply by 1000 for mg/m³).

Continuous point source with ground reflection (DOMAIN.md §4; Turner 1970, *Workbook of
atmospheric dispersion estimates*, eq. 3.1)::

    C = Q / (2π u σy σz) · exp(−y²/2σy²) · Σn [exp(−(z−H+2n·zi)²/2σz²) + exp(−(z+H+2n·zi)²/2σz²)]

where the sum over image sources n = −N…N models a mixing lid at ``zi`` (only n = 0 without a
lid); once σz > 1.6·zi the vertical profile is taken as well mixed, C = Q/(√(2π)·u·σy·zi)
(EPA ISC3, EPA-454/B-95-003b eq. 1-7 ff.).

Finite release of duration T: Gaussian puffs released at a constant rate over [0, T] and
integrated (Palazzi et al. 1982, *Atmos. Environ.* 16:2785), with the along-wind spread σx
(default σx = σy)::

    C(t) = C_ss · ½ [erf((x − u·max(t−T, 0)) / (√2 σx)) − erf((x − u·t) / (√2 σx))]

Its maximum over t is reached at t = max(x/u + T/2, T); :func:`peak_factor` evaluates it,
optionally only up to a time horizon (60 min in the service).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.special import erf

from citytwin.hazard.plume_rise import plume_rise_m
from citytwin.hazard.sigmas import get_scheme

_SQRT2 = np.sqrt(2.0)
_SQRT2PI = np.sqrt(2.0 * np.pi)


def vertical_term(
    *,
    z_m: np.ndarray | float,
    h_m: np.ndarray | float,
    sigma_z_m: np.ndarray | float,
    mixing_height_m: float | None = None,
    n_images: int = 4,
) -> np.ndarray:
    """Dimensionless vertical term (the bracket) with ground reflection and a mixing lid.

    Parameters
    ----------
    z_m : array_like
        Receptor height above ground, m.
    h_m : array_like
        Effective release height above ground, m.
    sigma_z_m : array_like
        Vertical dispersion coefficient, m (> 0 where the result is wanted).
    mixing_height_m : float or None
        Height of the mixing lid, m; None for no lid.
    n_images : int
        Number of image-source pairs on each side of the lid reflection series.

    Returns
    -------
    ndarray
        ``Σ exp(...)``; equals 2 for a ground release seen at ground level.

    Examples
    --------
    >>> float(vertical_term(z_m=0.0, h_m=0.0, sigma_z_m=10.0))
    2.0
    """
    z = np.asarray(z_m, dtype=float)
    h = np.asarray(h_m, dtype=float)
    sz = np.maximum(np.asarray(sigma_z_m, dtype=float), 1e-12)
    two_s2 = 2.0 * sz * sz
    out = np.exp(-((z - h) ** 2) / two_s2) + np.exp(-((z + h) ** 2) / two_s2)
    if mixing_height_m is None:
        return out
    zi = float(mixing_height_m)
    for n in range(1, n_images + 1):
        for k in (n, -n):
            d = 2.0 * k * zi
            out = out + np.exp(-((z - h + d) ** 2) / two_s2) + np.exp(-((z + h + d) ** 2) / two_s2)
    mixed = _SQRT2PI * sz / zi
    out = np.where(sz > 1.6 * zi, mixed, out)
    # a plume released above the lid does not reach receptors below it (ISC3 convention)
    return np.where((h > zi) & (z < zi), 0.0, out)


def plume_concentration(
    *,
    q_g_s: float | np.ndarray,
    u_m_s: float | np.ndarray,
    y_m: np.ndarray | float,
    z_m: np.ndarray | float,
    h_m: np.ndarray | float,
    sigma_y_m: np.ndarray | float,
    sigma_z_m: np.ndarray | float,
    mixing_height_m: float | None = None,
) -> np.ndarray:
    """Steady-state concentration (g/m³) of a continuous point release.

    Parameters
    ----------
    q_g_s : float
        Release rate, g/s.
    u_m_s : float
        Transport wind speed, m/s (> 0).
    y_m, z_m : array_like
        Crosswind offset and receptor height, m.
    h_m : array_like
        Effective release height, m.
    sigma_y_m, sigma_z_m : array_like
        Dispersion coefficients at the receptor's downwind distance, m; receptors with
        σ ≤ 0 (at or upwind of the source) get 0.
    mixing_height_m : float or None
        Mixing lid, m.

    Returns
    -------
    ndarray
        Concentration in g/m³.

    Examples
    --------
    Ground-level centreline of a ground release, Q = 100 g/s, u = 5 m/s, σy = 50 m,
    σz = 20 m: Q/(π u σy σz) = 100/(π·5·50·20) = 6.366e-3 g/m³.

    >>> round(float(plume_concentration(q_g_s=100, u_m_s=5, y_m=0, z_m=0, h_m=0,
    ...                                 sigma_y_m=50, sigma_z_m=20)), 6)
    0.006366
    """
    sy = np.asarray(sigma_y_m, dtype=float)
    sz = np.asarray(sigma_z_m, dtype=float)
    ok = (sy > 0) & (sz > 0)
    sy_s = np.where(ok, sy, 1.0)
    sz_s = np.where(ok, sz, 1.0)
    y = np.asarray(y_m, dtype=float)
    gy = np.exp(-(y * y) / (2.0 * sy_s * sy_s))
    gz = vertical_term(z_m=z_m, h_m=h_m, sigma_z_m=sz_s, mixing_height_m=mixing_height_m)
    c = np.asarray(q_g_s, dtype=float) / (2.0 * np.pi * np.asarray(u_m_s) * sy_s * sz_s) * gy * gz
    return np.where(ok, c, 0.0)


def along_wind_factor(
    *,
    x_m: np.ndarray | float,
    t_s: np.ndarray | float,
    duration_s: float,
    u_m_s: float,
    sigma_x_m: np.ndarray | float,
) -> np.ndarray:
    """Fraction of the steady concentration present at time ``t_s`` (s after release start).

    Integrated Gaussian puffs released over ``duration_s`` (use ``np.inf`` for continuous).

    Examples
    --------
    Long after a continuous release started the factor is 1; far before arrival it is 0.

    >>> round(float(along_wind_factor(x_m=500, t_s=1e5, duration_s=np.inf, u_m_s=5,
    ...                               sigma_x_m=40)), 6)
    1.0
    >>> float(along_wind_factor(x_m=500, t_s=10, duration_s=600, u_m_s=5, sigma_x_m=40))
    0.0
    """
    x = np.asarray(x_m, dtype=float)
    t = np.asarray(t_s, dtype=float)
    sx = np.maximum(np.asarray(sigma_x_m, dtype=float), 1e-9) * _SQRT2
    if np.isinf(duration_s):
        lead = x
    else:
        lead = x - u_m_s * np.maximum(t - duration_s, 0.0)
    f = 0.5 * (erf(lead / sx) - erf((x - u_m_s * np.maximum(t, 0.0)) / sx))
    return np.clip(f, 0.0, 1.0)


def peak_time_s(*, x_m: np.ndarray | float, duration_s: float, u_m_s: float) -> np.ndarray:
    """Time (s after release start) of the peak concentration at downwind distance x.

    Examples
    --------
    >>> float(peak_time_s(x_m=600, duration_s=300, u_m_s=2))
    450.0
    """
    x = np.asarray(x_m, dtype=float)
    if np.isinf(duration_s):
        return np.full_like(x, np.inf)
    return np.maximum(x / u_m_s + 0.5 * duration_s, duration_s)


def peak_factor(
    *,
    x_m: np.ndarray | float,
    duration_s: float,
    u_m_s: float,
    sigma_x_m: np.ndarray | float,
    horizon_s: float | None = None,
) -> np.ndarray:
    """Maximum over time (up to ``horizon_s``) of :func:`along_wind_factor`.

    Examples
    --------
    A 10-min release seen 500 m away at 5 m/s with σx = 40 m reaches the full steady value:

    >>> round(float(peak_factor(x_m=500, duration_s=600, u_m_s=5, sigma_x_m=40)), 4)
    1.0

    A 10-s puff is diluted along the wind: erf(u·T/(2√2·σx)).

    >>> round(float(peak_factor(x_m=500, duration_s=10, u_m_s=5, sigma_x_m=40)), 4)
    0.468
    """
    tp = peak_time_s(x_m=x_m, duration_s=duration_s, u_m_s=u_m_s)
    if horizon_s is not None:
        tp = np.minimum(tp, horizon_s)
    return along_wind_factor(
        x_m=x_m, t_s=tp, duration_s=duration_s, u_m_s=u_m_s, sigma_x_m=sigma_x_m
    )


@dataclass(frozen=True)
class GaussianPlume:
    """A parameterised Gaussian plume: release, weather and dispersion scheme.

    Attributes
    ----------
    q_g_s : float
        Release rate, g/s.
    u_m_s : float
        Transport wind speed at release height, m/s.
    stability : str
        Pasquill class A–F.
    scheme : str
        σ scheme name (see :mod:`citytwin.hazard.sigmas`).
    release_height_m : float
        Physical release height, m.
    buoyancy_flux_m4_s3 : float
        Fb for plume rise (0 = passive release).
    mixing_height_m : float or None
        Mixing lid, m.
    duration_s : float
        Release duration, s (``inf`` = continuous).
    sigma_x_factor : float
        σx = sigma_x_factor · σy for the along-wind spread of puffs.

    Examples
    --------
    >>> p = GaussianPlume(q_g_s=100.0, u_m_s=5.0, stability="D", scheme="briggs_rural")
    >>> c = p.steady(x_m=np.array([1000.0]), y_m=0.0, z_m=0.0)
    >>> round(float(c[0]) * 1000, 3)  # mg/m³
    2.199
    """

    q_g_s: float
    u_m_s: float
    stability: str
    scheme: str = "briggs_urban"
    release_height_m: float = 0.0
    buoyancy_flux_m4_s3: float = 0.0
    mixing_height_m: float | None = None
    duration_s: float = float("inf")
    sigma_x_factor: float = 1.0
    gradual_rise: bool = True
    _sigma_fn: object = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_sigma_fn", get_scheme(self.scheme))

    def rise_m(self, x_m: np.ndarray) -> np.ndarray:
        """Plume rise Δh (m) at downwind distance x (m)."""
        if self.buoyancy_flux_m4_s3 <= 0:
            return np.zeros_like(np.asarray(x_m, dtype=float))
        return plume_rise_m(
            x_m=x_m,
            buoyancy_flux_m4_s3=self.buoyancy_flux_m4_s3,
            wind_speed_m_s=self.u_m_s,
            stability=self.stability,
            gradual=self.gradual_rise,
        )

    def sigmas(self, x_m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """σy, σz (m) including buoyancy-induced dispersion (Δh/3.5, Pasquill 1976)."""
        sy, sz = self._sigma_fn(x_m=x_m, stability=self.stability)  # type: ignore[operator]
        if self.buoyancy_flux_m4_s3 > 0:
            b = self.rise_m(x_m) / 3.5
            sy = np.sqrt(sy * sy + b * b)
            sz = np.sqrt(sz * sz + b * b)
        return sy, sz

    def height_m(self, x_m: np.ndarray) -> np.ndarray:
        """Effective plume height H (m) at x (m)."""
        return self.release_height_m + self.rise_m(x_m)

    def steady(
        self, *, x_m: np.ndarray, y_m: np.ndarray | float, z_m: np.ndarray | float
    ) -> np.ndarray:
        """Steady-state concentration (g/m³) of the continuous plume; 0 for x ≤ 0."""
        x = np.asarray(x_m, dtype=float)
        sy, sz = self.sigmas(x)
        return plume_concentration(
            q_g_s=self.q_g_s,
            u_m_s=self.u_m_s,
            y_m=y_m,
            z_m=z_m,
            h_m=self.height_m(x),
            sigma_y_m=sy,
            sigma_z_m=sz,
            mixing_height_m=self.mixing_height_m,
        )

    def centreline_peak(
        self, *, x_m: np.ndarray, z_m: float, horizon_s: float | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Peak (over time, up to ``horizon_s``) centreline concentration (g/m³) and σy (m)."""
        x = np.asarray(x_m, dtype=float)
        sy, sz = self.sigmas(x)
        c = plume_concentration(
            q_g_s=self.q_g_s,
            u_m_s=self.u_m_s,
            y_m=0.0,
            z_m=z_m,
            h_m=self.height_m(x),
            sigma_y_m=sy,
            sigma_z_m=sz,
            mixing_height_m=self.mixing_height_m,
        )
        f = peak_factor(
            x_m=x,
            duration_s=self.duration_s,
            u_m_s=self.u_m_s,
            sigma_x_m=self.sigma_x_factor * sy,
            horizon_s=horizon_s,
        )
        return c * f, sy

    def peak(
        self,
        *,
        x_m: np.ndarray,
        y_m: np.ndarray | float,
        z_m: np.ndarray | float,
        horizon_s: float | None = None,
    ) -> np.ndarray:
        """Peak concentration (g/m³) over time up to ``horizon_s`` at receptors (x, y, z)."""
        x = np.asarray(x_m, dtype=float)
        sy, _ = self.sigmas(x)
        f = peak_factor(
            x_m=x,
            duration_s=self.duration_s,
            u_m_s=self.u_m_s,
            sigma_x_m=self.sigma_x_factor * sy,
            horizon_s=horizon_s,
        )
        return self.steady(x_m=x, y_m=y_m, z_m=z_m) * f

    def at_time(
        self,
        *,
        x_m: np.ndarray,
        y_m: np.ndarray | float,
        z_m: np.ndarray | float,
        t_s: np.ndarray,
    ) -> np.ndarray:
        """Concentration (g/m³) at time ``t_s`` (s after release start); broadcasts."""
        x = np.asarray(x_m, dtype=float)
        sy, _ = self.sigmas(x)
        f = along_wind_factor(
            x_m=x,
            t_s=t_s,
            duration_s=self.duration_s,
            u_m_s=self.u_m_s,
            sigma_x_m=self.sigma_x_factor * sy,
        )
        return self.steady(x_m=x, y_m=y_m, z_m=z_m) * f
