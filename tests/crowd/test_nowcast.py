"""Nowcast kernel: each source kind, ranges, disagreement, staleness, trend, missing area."""

from __future__ import annotations

import pytest

from citytwin.crowd.nowcast import Reading, ZoneSpec, nowcast_zone, worst_level

SQUARE = ZoneSpec(1, "square", "standing", 100.0)
STREET = ZoneSpec(2, "street", "moving", 500.0)


def test_area_counter_gives_density_range_and_level() -> None:
    nc = nowcast_zone(
        SQUARE, [Reading("cam", "area", 200, age_s=30, expected_interval_s=60, origin="replayed")]
    )
    assert nc["people"] == 200 and nc["density"] == 2.0
    assert nc["density_low"] == pytest.approx(1.8) and nc["density_high"] == pytest.approx(2.2)
    assert nc["level"] == "amber" and not nc["disagree"] and not nc["stale"]
    assert nc["replayed"] is True and nc["data_age_s"] == 30


def test_line_counter_uses_effective_width_and_walking_speed() -> None:
    # 4,680 persons/h over 2 m: q = 0.65 persons/m/s → k = 0.5 /m² at 1.3 m/s
    nc = nowcast_zone(
        STREET, [Reading("line", "line", 4680, age_s=10, expected_interval_s=3600, width_m=2.0)]
    )
    assert nc["density"] == pytest.approx(0.5)
    assert nc["density_low"] == pytest.approx(0.65 / 1.5, abs=1e-3)
    assert nc["density_high"] == pytest.approx(0.65 / 0.8, abs=1e-3)
    assert nc["level"] == "green" and nc["level_high"] == "amber"


def test_line_counter_in_standing_zone_is_flagged_as_lower_bound() -> None:
    nc = nowcast_zone(SQUARE, [Reading("line", "line", 500, age_s=10, width_m=3.0)])
    assert any("lower bound" in n for n in nc["notes"])
    assert "lower bound" in nc["sources"][0]["note"]


def test_disagreeing_sources_are_reported_not_averaged() -> None:
    cam = Reading("cam", "area", 300, age_s=20, expected_interval_s=60)
    line = Reading(
        "line", "line", 360, age_s=20, expected_interval_s=3600, width_m=3.0
    )  # ~3 people
    nc = nowcast_zone(SQUARE, [cam, line])
    assert nc["disagree"] is True
    assert nc["people"] == 300  # the busier source, not the mean
    assert nc["people_low"] < 10 and nc["people_high"] >= 330
    assert any("disagree" in n for n in nc["notes"])
    assert {s["source"] for s in nc["sources"]} == {"cam", "line"}


def test_agreeing_sources_narrow_the_range() -> None:
    a = Reading("a", "area", 100, age_s=5)
    b = Reading("b", "area", 105, age_s=5)
    nc = nowcast_zone(SQUARE, [a, b])
    assert not nc["disagree"]
    assert nc["people_low"] == pytest.approx(94.5) and nc["people_high"] == pytest.approx(110.0)


def test_stale_sources_are_left_out_or_flagged() -> None:
    fresh = Reading("fresh", "area", 100, age_s=30, expected_interval_s=60)
    old = Reading("old", "area", 400, age_s=3600, expected_interval_s=60)
    nc = nowcast_zone(SQUARE, [fresh, old])
    assert nc["people"] == 100 and not nc["stale"] and not nc["disagree"]
    assert any("stale source" in n for n in nc["notes"])
    only_old = nowcast_zone(SQUARE, [old])
    assert only_old["stale"] is True and only_old["people"] == 400
    assert nowcast_zone(SQUARE, [fresh], max_age_s=10)["stale"] is True


def test_trend_over_the_last_hour() -> None:
    up = nowcast_zone(SQUARE, [Reading("c", "area", 150, age_s=5, value_1h_ago=100)])
    flat = nowcast_zone(SQUARE, [Reading("c", "area", 102, age_s=5, value_1h_ago=100)])
    down = nowcast_zone(SQUARE, [Reading("c", "area", 50, age_s=5, value_1h_ago=100)])
    assert (up["trend"], flat["trend"], down["trend"]) == ("rising", "steady", "falling")
    assert up["trend_change"] == pytest.approx(0.5)
    assert nowcast_zone(SQUARE, [Reading("c", "area", 50, age_s=5)])["trend"] is None


def test_zone_without_area_is_an_error_not_a_density() -> None:
    nc = nowcast_zone(ZoneSpec(3, "nowhere", "moving", None), [Reading("c", "area", 50, age_s=5)])
    assert nc["error"]["field"] == "usable_area_m2"
    assert nc["density"] is None and nc["level"] is None


def test_indicators_and_unscaled_app_counts_are_context_only() -> None:
    readings = [
        Reading("garage", "indicator", 120, age_s=60, unit="occupied spaces"),
        Reading("app", "appgps", 40, age_s=60),
        Reading("app2", "appgps", None, age_s=60, suppressed=True),
    ]
    nc = nowcast_zone(SQUARE, readings)
    assert nc["people"] is None and len(nc["context"]) == 3
    assert any("suppressed" in (c.get("note") or "") for c in nc["context"])
    scaled = nowcast_zone(SQUARE, [Reading("app", "appgps", 40, age_s=60, scale=5.0)])
    assert scaled["people"] == 200 and scaled["people_high"] == pytest.approx(260)


def test_worst_level() -> None:
    assert worst_level([None, "amber", "critical"]) == "critical"
    assert worst_level([None]) is None
