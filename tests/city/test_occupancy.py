import numpy as np
import pytest

from citytwin.city.occupancy import levels_and_height, occupancy_table, occupants


def test_table_has_sources_and_fractions():
    table = occupancy_table()
    assert {"residential", "office", "education", "childcare", "hospital", "care_home", "mixed", "none"} <= set(table)
    for rule in table.values():
        assert rule.source.strip(), rule.use_class
        assert 0 <= rule.day_fraction <= 1 and 0 <= rule.night_fraction <= 1
        assert rule.m2_per_person >= 0


def test_occupants_are_area_over_density_times_presence():
    rule = occupancy_table()["office"]
    day, night = occupants(floor_area_m2=np.array([1390.0]), use_classes=["office"])
    assert day[0] == pytest.approx(1390.0 / rule.m2_per_person * rule.day_fraction)
    assert night[0] == pytest.approx(1390.0 / rule.m2_per_person * rule.night_fraction)


def test_care_homes_fuller_at_night_offices_empty():
    day, night = occupants(floor_area_m2=np.array([1000.0, 1000.0, 1000.0]), use_classes=["care_home", "office", "none"])
    assert night[0] >= day[0] > 0
    assert night[1] < 0.1 * day[1]
    assert day[2] == night[2] == 0


def test_levels_and_height_precedence():
    assert levels_and_height(height_tag=16.0, levels_tag=None) == (5.0, 16.0, "height")
    assert levels_and_height(height_tag=None, levels_tag=4.0) == (4.0, pytest.approx(12.8), "levels")
    assert levels_and_height(height_tag=None, levels_tag=None)[2] == "default"
