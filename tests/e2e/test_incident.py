"""The incident panel in headless Chromium: a chlorine release, its zones, the Excel report."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.browser


def login(page, twin):
    page.get_by_test_id("login-username").fill(twin.username)
    page.get_by_test_id("login-password").fill(twin.password)
    page.get_by_test_id("login-submit").click()


def wait_until_city_drawn(page):
    page.wait_for_function(
        "() => window.__citytwin && window.__citytwin.ready === true", timeout=60_000
    )


def test_chlorine_release_zones_table_and_excel(page, live_twin, screenshot_dir):
    from openpyxl import load_workbook

    login(page, live_twin)
    wait_until_city_drawn(page)
    page.get_by_test_id("tab-incident").click()
    panel = page.get_by_test_id("panel-incident")
    panel.wait_for(state="visible")

    # no weather stream in the test twin: the panel says so and asks for the wind
    live = page.get_by_test_id("incident-wind-live")
    page.wait_for_function(
        "() => document.querySelector('[data-testid=incident-wind-live]')"
        ".textContent.includes('no weather stream')"
    )
    assert "enter wind" in live.inner_text()

    # the source: a click on the map a little west of the centre, so the plume crosses the city
    box = page.get_by_test_id("map").bounding_box()
    page.mouse.click(box["x"] + box["width"] * 0.35, box["y"] + box["height"] * 0.5)
    assert "lat, lon" in page.get_by_test_id("incident-source").inner_text()
    source = page.evaluate(
        "async () => (await window.__citytwin.map.getSource('incident-source').getData())"
        ".features[0].geometry.coordinates"
    )

    page.get_by_test_id("incident-substance").select_option("chlorine")
    page.get_by_test_id("incident-rate").fill("500")
    page.get_by_test_id("incident-duration").fill("20")
    manual = page.get_by_test_id("incident-wind-manual")
    if not manual.is_checked():
        manual.check()
    page.get_by_test_id("incident-wind-speed").fill("4")
    page.get_by_test_id("incident-wind-from").fill("270")
    page.get_by_test_id("incident-run").click()

    table = page.get_by_test_id("incident-table")
    table.wait_for(state="visible")
    assert page.get_by_test_id("incident-spinner").is_hidden()
    assert page.get_by_test_id("incident-error").is_hidden()
    rows = table.locator("tbody tr")
    assert rows.count() > 0
    assert "wind entered by hand" in page.get_by_test_id("incident-wind-used").inner_text()

    # zones drawn on the map, downwind (east) of the source; buildings highlighted in 3D
    page.wait_for_function(
        "() => window.__citytwin.map"
        ".queryRenderedFeatures({layers: ['incident-zone-fill']}).length > 0"
    )
    zone_lons = page.evaluate(
        """async () => (await window.__citytwin.map.getSource('incident-zones').getData()).features
              .filter((f) => f.properties.kind === 'zone')
              .flatMap((f) => (f.geometry.type === 'Polygon'
                ? [f.geometry.coordinates] : f.geometry.coordinates))
              .flatMap((poly) => poly[0].map((c) => c[0]))"""
    )
    assert zone_lons and max(zone_lons) > source[0] + 0.001
    highlighted = page.evaluate(
        """() => {
          const map = window.__citytwin.map;
          return map.querySourceFeatures('buildings')
            .filter((f) => (map.getFeatureState({source: 'buildings', id: f.id}).incident || 0) > 0)
            .length;
        }"""
    )
    assert highlighted > 0
    page.screenshot(path=str(screenshot_dir / "incident.png"))

    with page.expect_download() as info:
        page.get_by_test_id("incident-download-xlsx").click()
    download = info.value
    assert download.suggested_filename.endswith(".xlsx")
    path = screenshot_dir / download.suggested_filename
    download.save_as(path)
    wb = load_workbook(path, read_only=True)
    assert wb.sheetnames == ["Summary", "Affected buildings", "Zones"]
    n_rows = sum(1 for _ in wb["Affected buildings"].iter_rows(min_row=2, values_only=True))
    assert n_rows == rows.count()


def test_a_bad_rate_names_the_field(page, live_twin):
    login(page, live_twin)
    wait_until_city_drawn(page)
    page.get_by_test_id("tab-incident").click()
    page.wait_for_function(
        "() => document.querySelectorAll('[data-testid=incident-substance] option').length > 25"
    )
    box = page.get_by_test_id("map").bounding_box()
    page.mouse.click(box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.5)
    page.get_by_test_id("incident-rate").fill("-5")
    manual = page.get_by_test_id("incident-wind-manual")
    if not manual.is_checked():
        manual.check()
    page.get_by_test_id("incident-wind-speed").fill("4")
    page.get_by_test_id("incident-wind-from").fill("270")
    page.get_by_test_id("incident-run").click()
    error = page.get_by_test_id("incident-error")
    error.wait_for(state="visible")
    assert error.inner_text().startswith("rate_g_s")
    assert page.get_by_test_id("incident-results").is_hidden()
