"""Crowd levels: DOMAIN §2 defaults, per-zone overrides, flow → density, errors naming the field."""

from __future__ import annotations

import numpy as np
import pytest

from citytwin.crowd.levels import (
    DEFAULT_THRESHOLDS,
    SOURCES,
    LevelError,
    count_thresholds,
    flow_to_density,
    level_index,
    level_of,
    thresholds_for,
)


def test_defaults_follow_domain_table() -> None:
    assert DEFAULT_THRESHOLDS["moving"] == {"amber": 0.7, "red": 1.1, "critical": 2.0}
    assert DEFAULT_THRESHOLDS["standing"] == {"amber": 1.5, "red": 3.0, "critical": 4.7}
    for kind in DEFAULT_THRESHOLDS:
        assert set(SOURCES[kind]) == {"amber", "red", "critical"}
    assert "Fruin" in SOURCES["moving"]["amber"] and "Taylor" in SOURCES["standing"]["critical"]


@pytest.mark.parametrize(
    ("kind", "density", "level"),
    [
        ("moving", 0.69, "green"),
        ("moving", 0.7, "amber"),
        ("moving", 1.1, "red"),
        ("moving", 2.0, "critical"),
        ("standing", 1.2, "green"),
        ("standing", 2.0, "amber"),
        ("standing", 3.5, "red"),
        ("standing", 5.0, "critical"),
    ],
)
def test_level_boundaries(kind: str, density: float, level: str) -> None:
    assert level_of(density, thresholds_for(kind)) == level


def test_override_per_zone_and_missing_density() -> None:
    t = thresholds_for("moving", {"red": 1.5})
    assert t == {"amber": 0.7, "red": 1.5, "critical": 2.0}
    assert level_of(1.2, t) == "amber"
    assert level_of(None, t) is None
    assert level_index(np.array([np.nan, 0.1]), t).tolist() == [-1, 0]


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ({"red": -1}, "thresholds.red"),
        ({"purple": 1.0}, "thresholds.purple"),
        ({"amber": 3.0}, "thresholds.red"),
        ({"critical": "x"}, "thresholds.critical"),
    ],
)
def test_bad_overrides_name_the_field(override: dict, field: str) -> None:
    with pytest.raises(LevelError) as e:
        thresholds_for("moving", override)
    assert e.value.field == field


def test_unknown_kind() -> None:
    with pytest.raises(LevelError) as e:
        thresholds_for("floating")
    assert e.value.field == "kind"


def test_flow_to_density_hand_example() -> None:
    # 4,680 persons/h over 1 m: q = 1.3 persons/m/s, at 1.3 m/s → 1 person/m²
    assert float(flow_to_density(4680.0, width_m=1.0)) == pytest.approx(1.0)
    # DOMAIN: q = N/60/W persons/m/min, k = q / (1.3 · 60 m/min)
    n, w = 1800.0, 4.0
    assert float(flow_to_density(n, width_m=w)) == pytest.approx(n / 60 / w / (1.3 * 60))
    with pytest.raises(LevelError) as e:
        flow_to_density(100.0, width_m=0)
    assert e.value.field == "effective_width_m"


def test_count_thresholds_zone_and_line() -> None:
    t = thresholds_for("moving")
    assert count_thresholds(t, counting="zone", area_m2=100)["red"] == pytest.approx(110.0)
    line = count_thresholds(t, counting="line", width_m=2.0)
    assert line["amber"] == pytest.approx(0.7 * 1.3 * 2.0 * 3600)
    with pytest.raises(LevelError) as e:
        count_thresholds(t, counting="zone", area_m2=0)
    assert e.value.field == "usable_area_m2"
    with pytest.raises(LevelError) as e:
        count_thresholds(t, counting="line", width_m=None)
    assert e.value.field == "effective_width_m"
