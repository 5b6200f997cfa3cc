"""The evacuation panel in headless Chromium: a network evacuation of an area around the Senate
Square (routes and clearance time on the map), and a tiny venue played back."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.browser

SENATE = {
    "type": "Polygon",
    "coordinates": [[[24.9497, 60.1686], [24.9533, 60.1686], [24.9533, 60.1704],
                     [24.9497, 60.1704], [24.9497, 60.1686]]],
}
TINY = {
    "schema_version": 1,
    "name": "tiny square",
    "walkable_area": [[0, 0], [14, 0], [14, 10], [0, 10]],
    "obstacles": [{"name": "stand", "kind": "stand",
                   "geometry": {"type": "Polygon",
                                "coordinates": [[[8, 6], [10, 6], [10, 8], [8, 8], [8, 6]]]}}],
    "exits": [{"name": "gate", "door": [[14, 3], [14, 5]]}],
    "agents": [{"count": 20, "spawn": [[1, 1], [6, 1], [6, 9], [1, 9]]}],
    "simulation": {"seeds": [1], "max_time_s": 60, "dt_s": 0.02},
}


def open_panel(page, twin):
    page.get_by_test_id("login-username").fill(twin.username)
    page.get_by_test_id("login-password").fill(twin.password)
    page.get_by_test_id("login-submit").click()
    page.wait_for_function(
        "() => window.__citytwin && window.__citytwin.ready === true", timeout=60_000
    )
    page.get_by_test_id("tab-evacuation").click()
    page.get_by_test_id("panel-evacuation").wait_for(state="visible")
    page.wait_for_function("() => !!window.__citytwin.evacuation")


def test_network_evacuation_draws_routes_and_clearance(page, live_twin, screenshot_dir):
    open_panel(page, live_twin)
    # without an area the panel says what to do
    page.get_by_test_id("evac-run").click()
    err = page.get_by_test_id("evac-error")
    err.wait_for(state="visible")
    assert err.inner_text().startswith("area")
    # no incident has been run: the incident zone button explains
    page.get_by_test_id("evac-use-incident").click()
    page.wait_for_function(
        "() => document.querySelector('[data-testid=evac-error]').textContent"
        ".includes('No incident zone')"
    )

    # draw a triangle by clicking, finish with the button
    page.get_by_test_id("evac-draw").click()
    box = page.get_by_test_id("map").bounding_box()
    for fx, fy in ((0.45, 0.45), (0.55, 0.45), (0.5, 0.55)):
        page.mouse.click(box["x"] + box["width"] * fx, box["y"] + box["height"] * fy)
    page.get_by_test_id("evac-draw-finish").click()
    assert "3 corners" in page.get_by_test_id("evac-area-text").inner_text()

    # the prepared area around the Senate Square through the test hook, then run
    page.evaluate("(a) => window.__citytwin.evacuation.setArea(a, 'Senate Square')", SENATE)
    page.get_by_test_id("evac-at").fill("2024-06-21T12:00")
    page.get_by_test_id("evac-run").click()
    clearance = page.get_by_test_id("evac-clearance")
    clearance.wait_for(state="visible", timeout=60_000)
    assert "90 % out" in clearance.inner_text() and "everyone" in clearance.inner_text()
    assert page.get_by_test_id("evac-error").is_hidden()
    assert "capacity-aware routing saves" in page.get_by_test_id("evac-shortest").inner_text()
    assert page.get_by_test_id("evac-bottlenecks").locator("li").count() > 0
    page.wait_for_function(
        "() => window.__citytwin.map.queryRenderedFeatures({layers: ['evac-loads']}).length > 0"
    )
    page.screenshot(path=str(screenshot_dir / "evacuation-network.png"))


def test_venue_simulation_plays_back(page, live_twin, screenshot_dir):
    open_panel(page, live_twin)
    page.get_by_test_id("evac-mode-venue").click()
    page.get_by_test_id("evac-venue").wait_for(state="visible")

    # a door off the boundary: the error names the field, nothing runs
    bad = TINY | {"exits": [{"name": "gate", "door": [[30, 3], [30, 5]]}]}
    page.evaluate("(s) => window.__citytwin.evacuation.setVenue(s)", bad)
    page.get_by_test_id("evac-venue-run").click()
    err = page.get_by_test_id("evac-venue-error")
    err.wait_for(state="visible")
    assert err.inner_text().startswith("scenario.exits[0].door")

    page.evaluate("(s) => window.__citytwin.evacuation.setVenue(s)", TINY)
    assert err.is_hidden()
    assert page.get_by_test_id("evac-venue-count").input_value() == "20"
    page.get_by_test_id("evac-venue-seeds").fill("1")

    # add a second door on the west edge by two clicks near it; it snaps onto the boundary
    origin = page.evaluate("() => window.__citytwin.evacuation.venue.origin")
    pts = page.evaluate(
        """(o) => {
          const m = window.__citytwin.map;
          const kx = 111320 * Math.cos(o[1] * Math.PI / 180), ky = 111132;
          return [[0.3, 4], [0.2, 6]].map(([x, y]) => {
            const p = m.project([o[0] + x / kx, o[1] + y / ky]);
            return [p.x, p.y];
          });
        }""",
        origin,
    )
    page.get_by_test_id("evac-add-exit").click()
    box = page.get_by_test_id("map").bounding_box()
    for x, y in pts:
        page.mouse.click(box["x"] + x, box["y"] + y)
    door = page.evaluate("() => window.__citytwin.evacuation.venue.exits[1].door")
    assert door[0][0] == 0 and door[1][0] == 0  # on the west wall

    page.get_by_test_id("evac-venue-validate").click()
    page.get_by_test_id("evac-venue-ok").wait_for(state="visible")
    assert "2 exits" in page.get_by_test_id("evac-venue-ok").inner_text()

    page.get_by_test_id("evac-venue-run").click()
    summary = page.get_by_test_id("evac-venue-summary")
    summary.wait_for(state="visible", timeout=60_000)
    assert "p95" in summary.inner_text()
    assert page.get_by_test_id("evac-venue-exits").locator("tbody tr").count() == 2
    playback = page.get_by_test_id("evac-playback")
    assert playback.is_visible()
    assert page.get_by_test_id("evac-play").is_visible()
    frames = int(page.get_by_test_id("evac-time").get_attribute("max"))
    assert frames > 2
    assert "20 inside" in page.get_by_test_id("evac-time-label").inner_text()
    page.get_by_test_id("evac-play").click()
    page.wait_for_function(
        "() => Number(document.querySelector('[data-testid=evac-time]').value) > 2"
    )
    page.wait_for_function(
        "() => window.__citytwin.map.queryRenderedFeatures({layers: ['evac-density']}).length > 0"
    )
    page.screenshot(path=str(screenshot_dir / "evacuation-venue.png"))

