"""The dashboard in headless Chromium: log in, see the 3D city, click a building."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.browser

# A building whose rough centroid, projected to the screen, hits that same building (not one
# in front of it), preferring vulnerable ones so the "decided by" tags are shown too.
PICK_BUILDING = """async () => {
  const map = window.__citytwin.map;
  const data = await map.getSource('buildings').getData();
  const isPolygon = (g) => g && (g.type === 'Polygon' || g.type === 'MultiPolygon');
  const vulnerable = (f) => f.properties.safety_class === 'vulnerable';
  const feats = data.features.filter((f) => isPolygon(f.geometry));
  feats.sort((a, b) => vulnerable(b) - vulnerable(a));
  const canvas = map.getCanvas().getBoundingClientRect();
  for (const f of feats) {
    const g = f.geometry;
    const ring = g.type === 'MultiPolygon' ? g.coordinates[0][0] : g.coordinates[0];
    const pts = ring.slice(0, -1);
    const c = pts.reduce((a, p) => [a[0] + p[0] / pts.length, a[1] + p[1] / pts.length], [0, 0]);
    const p = map.project(c);
    if (p.x < 20 || p.y < 20 || p.x > canvas.width - 20 || p.y > canvas.height - 20) continue;
    const hit = map.queryRenderedFeatures([p.x, p.y], {layers: ['buildings']})[0];
    if (hit && hit.id === f.id) {
      return {x: canvas.left + p.x, y: canvas.top + p.y, props: f.properties};
    }
  }
  return null;
}"""


def login(page, twin, password=None):
    page.get_by_test_id("login-username").fill(twin.username)
    page.get_by_test_id("login-password").fill(password if password is not None else twin.password)
    page.get_by_test_id("login-submit").click()


def wait_until_city_drawn(page):
    page.wait_for_function(
        "() => window.__citytwin && window.__citytwin.ready === true", timeout=60_000
    )


def test_login_renders_buildings_and_click_shows_details(page, live_twin, screenshot_dir):
    login(page, live_twin)
    wait_until_city_drawn(page)

    source_count = page.evaluate(
        "async () => (await window.__citytwin.map.getSource('buildings').getData()).features.length"
    )
    assert source_count > 400  # every page of the buildings endpoint was fetched
    rendered = page.evaluate(
        "() => window.__citytwin.map.queryRenderedFeatures({layers: ['buildings']}).length"
    )
    assert rendered > 0, "the buildings layer drew nothing"
    assert page.get_by_test_id("loading").is_hidden()
    assert "real data" in page.get_by_test_id("status-city").inner_text()
    page.screenshot(path=str(screenshot_dir / "city.png"))

    target = page.evaluate(PICK_BUILDING)
    assert target is not None, "no building could be clicked on screen"
    page.mouse.click(target["x"], target["y"])

    details = page.get_by_test_id("building-details")
    details.wait_for(state="visible")
    props = target["props"]
    title = props["name"] or props["address"] or f"Building {props['id']}"
    assert page.get_by_test_id("building-name").inner_text() == title
    assert page.get_by_test_id("building-safety-class").inner_text() == props["safety_class"]
    reasons = page.get_by_test_id("building-safety-reason").inner_text()
    assert all(tag in reasons for tag in props["safety_reason"])
    assert page.get_by_test_id("building-occupants-day").inner_text().startswith("≈")
    page.screenshot(path=str(screenshot_dir / "building-details.png"))


def test_wrong_password_shows_an_error(page, live_twin):
    login(page, live_twin, password="not-the-password")
    error = page.get_by_test_id("login-error")
    error.wait_for(state="visible")
    assert "Wrong user name or password" in error.inner_text()
    assert page.get_by_test_id("login-form").is_visible()
    assert page.evaluate("() => sessionStorage.getItem('citytwin.session')") is None


def test_rejected_token_returns_to_login(page, live_twin):
    page.evaluate(
        "() => sessionStorage.setItem('citytwin.session',"
        " JSON.stringify({token: 'not-a-token', user: 'x', role: 'viewer'}))"
    )
    page.reload()
    error = page.get_by_test_id("login-error")
    error.wait_for(state="visible")
    assert "sign in again" in error.inner_text()
    assert page.evaluate("() => sessionStorage.getItem('citytwin.session')") is None


def test_logout_returns_to_login(page, live_twin):
    login(page, live_twin)
    page.get_by_test_id("user-badge").wait_for(state="visible")
    page.get_by_test_id("logout").click()
    page.get_by_test_id("login-form").wait_for(state="visible")
    assert page.evaluate("() => sessionStorage.getItem('citytwin.session')") is None
