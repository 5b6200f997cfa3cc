"""Substances: data completeness, lookup, conversion, user-defined substances."""

from __future__ import annotations

import pytest

from citytwin.hazard.errors import HazardInputError, UnknownSubstanceError
from citytwin.hazard.substances import (
    get_substance,
    list_substances,
    mg_m3_to_ppm,
    ppm_to_mg_m3,
    substance_from_dict,
)

REQUIRED = [
    "chlorine",
    "ammonia",
    "hydrogen cyanide",
    "hydrogen sulphide",
    "sulphur dioxide",
    "nitrogen dioxide",
    "hydrogen chloride",
    "hydrogen fluoride",
    "phosgene",
    "carbon monoxide",
    "acrolein",
    "formaldehyde",
    "ethylene oxide",
    "benzene",
    "acrylonitrile",
    "fire smoke",
]


def test_at_least_25_substances_with_sources():
    subs = list_substances()
    assert len(subs) >= 25
    for s in subs:
        assert s.levels_of_concern(), s.name
        for k in (1, 2, 3):
            assert s.sources.get(k), (s.name, k)
        if s.unit == "ppm":
            assert s.molar_mass_g_mol and s.molar_mass_g_mol > 0
    for name in REQUIRED:
        assert get_substance(name)


def test_ppm_mg_conversion():
    assert ppm_to_mg_m3(1.0, molar_mass_g_mol=24.45) == pytest.approx(1.0)
    assert ppm_to_mg_m3(10.0, molar_mass_g_mol=17.03) == pytest.approx(10 * 17.03 / 24.45)
    assert mg_m3_to_ppm(
        ppm_to_mg_m3(3.3, molar_mass_g_mol=64.07), molar_mass_g_mol=64.07
    ) == pytest.approx(3.3)


def test_chlorine_aegl_values():
    cl = get_substance("Cl2")
    assert (
        cl is get_substance("chlorine") is get_substance("CHLORINE") is get_substance("7782-50-5")
    )
    assert cl.levels[1]["60min"] == 0.5
    assert cl.levels[2]["60min"] == 2.0
    assert cl.levels[3]["10min"] == 50
    names = [lv.name for lv in cl.levels_of_concern(duration="30min")]
    assert names == ["AEGL-1 (30 min)", "AEGL-2 (30 min)", "AEGL-3 (30 min)"]


def test_not_recommended_level_is_left_out():
    ph = get_substance("phosgene")
    assert ph.levels[1]["60min"] is None
    assert [lv.level for lv in ph.levels_of_concern()] == [2, 3]


def test_erpg_fallback_and_sulfur_spelling():
    acn = get_substance("acrylonitrile")
    assert acn.loc_system == "ERPG"
    assert [lv.duration for lv in acn.levels_of_concern(duration="10min")] == ["60min"] * 3
    assert get_substance("sulfur dioxide").key == "sulphur_dioxide"


def test_unknown_substance_error_lists_close_matches():
    with pytest.raises(UnknownSubstanceError) as ei:
        get_substance("chlorin")
    assert isinstance(ei.value, ValueError)
    assert ei.value.field == "substance"
    assert "chlorine" in ei.value.suggestions
    with pytest.raises(UnknownSubstanceError, match="unknown substance"):
        get_substance("unobtainium")


def test_user_defined_substance():
    s = substance_from_dict(
        {
            "name": "Site gas",
            "molar_mass_g_mol": 44.0,
            "levels": {1: 5, 2: {"60min": 50, "10min": 80}, 3: 500},
            "toxic_load_n": 2,
            "source": "permit",
        }
    )
    locs = s.levels_of_concern()
    assert [lv.level for lv in locs] == [1, 2, 3]
    assert locs[1].mg_m3 == pytest.approx(50 * 44 / 24.45)
    assert s.toxic_load_n == 2


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"molar_mass_g_mol": 44, "levels": {1: 1}}, "substance.name"),
        ({"name": "x", "levels": {1: 1}}, "substance.molar_mass_g_mol"),
        ({"name": "x", "molar_mass_g_mol": -3, "levels": {1: 1}}, "substance.molar_mass_g_mol"),
        ({"name": "x", "molar_mass_g_mol": 44}, "substance.levels"),
        ({"name": "x", "molar_mass_g_mol": 44, "levels": {4: 1}}, "substance.levels"),
        ({"name": "x", "molar_mass_g_mol": 44, "levels": {1: -1}}, "substance.levels.1"),
        ({"name": "x", "molar_mass_g_mol": 44, "levels": {1: 10, 2: 5}}, "substance.levels"),
        ({"name": "x", "unit": "g", "levels": {1: 1}}, "substance.unit"),
    ],
)
def test_user_defined_substance_errors_name_the_field(data, field):
    with pytest.raises(HazardInputError) as ei:
        substance_from_dict(data)
    assert ei.value.field == field
