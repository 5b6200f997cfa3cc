"""Dispersion kernels against hand-computed textbook values."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import numpy as np
import pytest

from citytwin.hazard.gaussian import (
    GaussianPlume,
    along_wind_factor,
    peak_factor,
    plume_concentration,
    vertical_term,
)
from citytwin.hazard.indoor import ach_for_use_classes, indoor_concentration, toxic_load
from citytwin.hazard.plume_rise import buoyancy_flux, final_rise_m, plume_rise_m
from citytwin.hazard.sigmas import briggs_rural, briggs_urban, get_scheme, isc3, tno
from citytwin.hazard.stability import (
    class_from_obukhov,
    class_from_sigma_theta,
    pasquill_class,
    solar_elevation_deg,
    wind_at_height,
)


def test_centreline_ground_concentration_textbook():
    # Q = 100 g/s, u = 5 m/s, sigma_y = 50 m, sigma_z = 20 m, H = 0, receptor at ground:
    # C = Q / (pi u sy sz) = 100 / (pi * 5 * 50 * 20) = 6.366e-3 g/m3
    c = plume_concentration(q_g_s=100, u_m_s=5, y_m=0, z_m=0, h_m=0, sigma_y_m=50, sigma_z_m=20)
    assert float(c) == pytest.approx(100 / (math.pi * 5 * 50 * 20), rel=1e-12)


def test_elevated_source_textbook():
    # Turner-style: Q = 80 g/s, u = 6 m/s, H = 60 m, sy = 100, sz = 50, at y = 50, z = 0
    c = plume_concentration(q_g_s=80, u_m_s=6, y_m=50, z_m=0, h_m=60, sigma_y_m=100, sigma_z_m=50)
    hand = 80 / (math.pi * 6 * 100 * 50) * math.exp(-0.5 * 0.25) * math.exp(-0.5 * 1.44)
    assert float(c) == pytest.approx(hand, rel=1e-12)


def test_reflection_doubles_ground_release():
    kw = dict(q_g_s=10, u_m_s=3, y_m=0, z_m=0, h_m=0, sigma_y_m=30, sigma_z_m=15)
    with_reflection = float(plume_concentration(**kw))
    # free-space (no ground) value: Q/(2 pi u sy sz)
    free = 10 / (2 * math.pi * 3 * 30 * 15)
    assert with_reflection == pytest.approx(2 * free, rel=1e-12)
    assert float(vertical_term(z_m=0, h_m=0, sigma_z_m=15)) == 2.0


def test_mixing_lid_well_mixed_limit():
    zi = 200.0
    sz = np.array([1000.0])
    g = vertical_term(z_m=1.5, h_m=0.0, sigma_z_m=sz, mixing_height_m=zi)
    assert float(g[0]) == pytest.approx(math.sqrt(2 * math.pi) * 1000.0 / zi)
    # just below the switch the image series already approaches the mixed value
    g2 = vertical_term(z_m=1.5, h_m=0.0, sigma_z_m=np.array([1.5 * zi]), mixing_height_m=zi)
    assert float(g2[0]) == pytest.approx(math.sqrt(2 * math.pi) * 1.5, rel=0.01)
    # the lid only increases concentrations
    g0 = vertical_term(z_m=1.5, h_m=0.0, sigma_z_m=np.array([150.0]))
    g1 = vertical_term(z_m=1.5, h_m=0.0, sigma_z_m=np.array([150.0]), mixing_height_m=zi)
    assert g1[0] > g0[0]


def test_finite_release_puffs():
    # long after a continuous release started: steady state
    assert float(
        along_wind_factor(x_m=500, t_s=1e6, duration_s=np.inf, u_m_s=5, sigma_x_m=40)
    ) == pytest.approx(1.0)
    # short puff diluted along wind: erf(uT / (2 sqrt2 sx))
    f = float(peak_factor(x_m=500, duration_s=10, u_m_s=5, sigma_x_m=40))
    assert f == pytest.approx(math.erf(5 * 10 / (2 * math.sqrt(2) * 40)), rel=1e-9)
    # the time integral of the factor equals the duration (mass conservation)
    t = np.linspace(0, 3000, 30001)
    fac = along_wind_factor(x_m=800, t_s=t, duration_s=300, u_m_s=4, sigma_x_m=60)
    assert np.trapezoid(fac, t) == pytest.approx(300, rel=1e-3)
    # nothing before the plume arrives, and the peak is at x/u + T/2
    assert fac[t < 100].max() < 1e-6
    short = along_wind_factor(x_m=800, t_s=t, duration_s=30, u_m_s=4, sigma_x_m=60)
    assert t[np.argmax(short)] == pytest.approx(800 / 4 + 15, abs=0.5)


def test_horizon_limits_far_field():
    p = GaussianPlume(q_g_s=100, u_m_s=1.0, stability="F", scheme="briggs_rural")
    x = np.array([5000.0])
    c_all = p.centreline_peak(x_m=x, z_m=1.5)[0]
    c_60 = p.centreline_peak(x_m=x, z_m=1.5, horizon_s=3600)[0]
    assert c_60[0] < 1e-3 * c_all[0]  # 5 km at 1 m/s is not reached within the hour


def test_briggs_values():
    sy, sz = briggs_rural(x_m=1000.0, stability="D")
    assert float(sy) == pytest.approx(0.08 * 1000 / math.sqrt(1.1))
    assert float(sz) == pytest.approx(0.06 * 1000 / math.sqrt(2.5))
    sy, sz = briggs_rural(x_m=500.0, stability="F")
    assert float(sz) == pytest.approx(0.016 * 500 / 1.15)
    sy, sz = briggs_urban(x_m=1000.0, stability="A")
    assert float(sy) == pytest.approx(0.32 * 1000 / math.sqrt(1.4))
    assert float(sz) == pytest.approx(0.24 * 1000 * math.sqrt(2.0))
    assert briggs_urban(x_m=700.0, stability="B")[1] == briggs_urban(x_m=700.0, stability="A")[1]


def test_isc3_and_tno_reference_points():
    # Turner workbook / ISC3: class D at 1 km, sigma_y ~ 68 m and sigma_z ~ 32 m
    sy, sz = isc3(x_m=1000.0, stability="D")
    assert float(sy) == pytest.approx(68.1, abs=0.5)
    assert float(sz) == pytest.approx(32.1, abs=0.5)
    sy, sz = isc3(x_m=[100.0, 10_000.0], stability="A")
    assert sz[1] == 5000.0
    sy, sz = tno(x_m=100.0, stability="F")
    assert float(sy) == pytest.approx(0.065 * 100**0.902)
    with pytest.raises(ValueError, match="sigma_scheme"):
        get_scheme("nope")


def test_solar_elevation_and_stability_table():
    noon = datetime(2024, 6, 21, 11, 40, tzinfo=UTC)
    assert 60.5 < solar_elevation_deg(at=noon, lat_deg=52.0, lon_deg=5.0) < 62.0
    assert (
        solar_elevation_deg(at=datetime(2024, 12, 21, 0, 0, tzinfo=UTC), lat_deg=52, lon_deg=5)
        < -50
    )

    def cls(u, at, cc):
        return pasquill_class(
            wind_speed_m_s=u, at=at, lat_deg=52.0, lon_deg=5.0, cloud_cover_octas=cc
        )[0]

    night = datetime(2024, 1, 10, 1, 0, tzinfo=UTC)
    assert cls(1.5, noon, 0) == "A"  # strong sun, < 2 m/s
    assert cls(2.5, noon, 0) == "B"  # A-B -> B (more stable)
    assert cls(4.0, noon, 0) == "B"
    assert cls(5.5, noon, 0) == "C"
    assert cls(8.0, noon, 0) == "C"
    assert cls(4.0, noon, 6) == "C"  # moderate after cloud reduction: B-C -> C
    assert cls(4.0, noon, 8) == "D"  # overcast
    assert cls(1.5, night, 2) == "F"
    assert cls(1.5, night, 6) == "E"
    assert cls(4.0, night, 2) == "E"
    assert cls(4.0, night, 6) == "D"
    assert cls(7.0, night, 0) == "D"
    # 2024-06-21 sunrise in Utrecht ~03:20 UTC: the hour around it is D
    assert cls(1.5, datetime(2024, 6, 21, 3, 20, tzinfo=UTC), 0) == "D"


def test_class_from_sigma_theta_and_obukhov():
    assert [class_from_sigma_theta(sigma_theta_deg=s) for s in (25, 20, 15, 10, 5, 2.5)] == list(
        "ABCDEF"
    )
    assert class_from_obukhov(obukhov_length_m=-5.0, roughness_m=0.006) == "A"
    assert class_from_obukhov(obukhov_length_m=-1e5, roughness_m=0.006) == "D"
    assert class_from_obukhov(obukhov_length_m=8.0, roughness_m=0.006) == "F"


def test_wind_profile():
    assert float(wind_at_height(wind_speed_m_s=4.0, height_m=2.0, stability="D")) == 4.0
    u = float(wind_at_height(wind_speed_m_s=4.0, height_m=80.0, stability="F", urban=False))
    assert u == pytest.approx(4.0 * 8**0.55)


def test_plume_rise_values():
    # Fb = g Qc / (pi rho cp T): ~8.8 m4/s3 per MW
    assert buoyancy_flux(heat_mw=1.0) == pytest.approx(8.8, abs=0.1)
    assert buoyancy_flux(heat_mw=10.0, convective_fraction=0.7) == pytest.approx(
        0.7 * 10 * 8.79, rel=0.01
    )
    dh, xf = final_rise_m(buoyancy_flux_m4_s3=10.0, wind_speed_m_s=5.0, stability="D")
    assert dh == pytest.approx(21.425 * 10**0.75 / 5)
    assert xf == pytest.approx(49 * 10**0.625)
    dh, xf = final_rise_m(buoyancy_flux_m4_s3=100.0, wind_speed_m_s=5.0, stability="C")
    assert dh == pytest.approx(38.71 * 100**0.6 / 5)
    assert xf == pytest.approx(119 * 100**0.4)
    s = 9.80665 / 293.15 * 0.035
    dh, _ = final_rise_m(buoyancy_flux_m4_s3=50.0, wind_speed_m_s=2.0, stability="F")
    assert dh == pytest.approx(min(2.6 * (50 / (2 * s)) ** (1 / 3), 4 * 50**0.25 * s**-0.375))
    # gradual rise 1.6 Fb^1/3 x^2/3 / u, capped at the final rise
    r = plume_rise_m(
        x_m=[100.0, 5000.0], buoyancy_flux_m4_s3=10.0, wind_speed_m_s=5.0, stability="D"
    )
    assert r[0] == pytest.approx(1.6 * 10 ** (1 / 3) * 100 ** (2 / 3) / 5)
    assert r[1] == pytest.approx(21.425 * 10**0.75 / 5)


def test_indoor_and_dose():
    t = np.linspace(0, 3600, 361)
    c_out = np.ones(361)
    c_in = indoor_concentration(c_out=c_out, t_s=t, ach_per_h=2.0)
    assert c_in[-1] == pytest.approx(1 - math.exp(-2.0), rel=1e-9)
    # a square pulse: indoor peak lower than outdoor
    pulse = np.where((t > 600) & (t < 1200), 10.0, 0.0)
    ci = indoor_concentration(c_out=pulse, t_s=t, ach_per_h=0.5)
    assert ci.max() < 10 * (1 - math.exp(-0.5 * 600 / 3600)) + 0.2
    assert float(toxic_load(c=np.full(2, 10.0), t_s=np.array([0.0, 1800.0]), n=2.0)) == 3000.0
    assert ach_for_use_classes(["residential", "office", "industrial"], sealed=False).tolist() == [
        1.5,
        2.0,
        4.0,
    ]


def test_docstring_examples():
    import doctest
    import importlib

    for name in (
        "gaussian",
        "sigmas",
        "stability",
        "plume_rise",
        "substances",
        "indoor",
        "zones",
        "errors",
        "validation",
    ):
        mod = importlib.import_module(f"citytwin.hazard.{name}")
        res = doctest.testmod(mod, optionflags=doctest.ELLIPSIS)
        assert res.failed == 0, name
