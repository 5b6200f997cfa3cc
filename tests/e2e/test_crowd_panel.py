"""The Crowd panel in headless Chromium: zones coloured, time slider, chart with bands, alert ack.

Runs its own twin (a copy of the e2e database) seeded with six weeks of one Auckland counter
replayed onto a Helsinki square (labelled REPLAYED), a trained model, stored forecasts and an
alert, so nothing reaches the shared ``live_twin`` of the other browser tests.
"""

from __future__ import annotations

import socket
import threading
import time
from datetime import UTC, datetime

import pytest

pytestmark = pytest.mark.browser

ZONE = 1


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def crowd_twin(request, tmp_path):
    import sqlalchemy as sa
    import uvicorn

    from citytwin.api import create_app
    from citytwin.api.app import STATIC_DIR
    from citytwin.crowd.datasets import load_counts
    from citytwin.crowd.levels import flow_to_density
    from citytwin.crowd.service import CrowdService, default_settings
    from citytwin.settings import Settings
    from citytwin.store.schema import zones
    from tests.crowd._twin import copy_engine, seed_camera, seed_garage
    from tests.e2e.conftest import ADMIN, _missing

    if not (STATIC_DIR / "index.html").exists():
        _missing(
            "the dashboard is not built: run `npm --prefix web ci && npm --prefix web run build`"
        )
    engine = copy_engine(request.getfixturevalue("e2e_engine"), tmp_path / "twin.sqlite")
    now = datetime.now(UTC)
    counts = load_counts(sensors=["45 Queen Street"], start="2025-11-01", end="2025-12-13")[
        "count"
    ].to_numpy()
    width = 3.0
    seed_camera(
        engine,
        zone_id=ZONE,
        now=now,
        days=42,
        counting="line",
        width_m=width,
        origin="replayed",
        name="akl 45 Queen Street (replayed)",
        values=counts,
    )
    peak = float(flow_to_density(float(max(counts[-168:])), width_m=width))
    with engine.begin() as conn:  # thresholds of this square scaled so that the daily peak is red
        conn.execute(
            sa.update(zones)
            .where(zones.c.id == ZONE)
            .values(thresholds={"amber": 0.25 * peak, "red": 0.5 * peak, "critical": 2.0 * peak})
        )
    seed_garage(engine, now=now, days=35, name="square garage", zone_id=ZONE)
    settings = Settings(data_dir=tmp_path, secret_key="x" * 40)
    svc = CrowdService(engine, default_settings(settings))
    svc.train(now=now)
    svc.compute_skill(now=now, test_days=3)
    refreshed = svc.refresh(now=now)
    assert refreshed["forecast_zones"] == [ZONE] and refreshed["alerts_raised"], refreshed
    app = create_app(settings, engine=engine)
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name="e2e-crowd-uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the test server did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", ADMIN, refreshed["alerts_raised"][0]["id"]
    server.should_exit = True
    thread.join(timeout=10)
    engine.dispose()


def test_crowd_panel_levels_slider_chart_and_ack(browser, crowd_twin, screenshot_dir):
    url, (user, password), alert_id = crowd_twin
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.set_default_timeout(30_000)
    try:
        page.goto(url + "/")
        page.get_by_test_id("login-username").fill(user)
        page.get_by_test_id("login-password").fill(password)
        page.get_by_test_id("login-submit").click()
        page.wait_for_function(
            "() => window.__citytwin && window.__citytwin.ready === true", timeout=60_000
        )
        page.get_by_test_id("tab-crowd").click()
        panel = page.get_by_test_id("panel-crowd")
        panel.wait_for(state="visible")
        page.wait_for_function(
            "() => document.querySelector('[data-testid=panel-crowd]').dataset.ready === 'true'"
        )

        # zones coloured by level now (feature-state on the city's zones)
        assert page.get_by_test_id("crowd-replayed").is_visible()
        assert "REPLAYED" in page.get_by_test_id("crowd-replayed").inner_text()
        assert "data age" in page.get_by_test_id("crowd-data-age").inner_text()
        state = page.evaluate(
            f"() => window.__citytwin.map.getFeatureState({{source: 'zones', id: {ZONE}}})"
        )
        assert state.get("crowd", -1) >= 0, state
        assert "crowd" in str(
            page.evaluate(
                "() => window.__citytwin.map.getPaintProperty('zones-fill', 'fill-color')"
            )
        )

        # the chart of the zone: history, forecast line, 80/95 % bands, thresholds; skill beside it
        chart = page.get_by_test_id("crowd-chart")
        chart.wait_for(state="visible")
        assert chart.locator("[data-testid=crowd-band-95]").count() == 1
        assert chart.locator("[data-testid=crowd-band-80]").count() == 1
        assert chart.locator("[data-testid=crowd-history]").count() == 1
        assert chart.locator("[data-testid=crowd-threshold-red]").count() == 1
        assert page.get_by_test_id("crowd-skill-mase").inner_text().strip() != ""
        # the garage: occupancy now and when the garages' model expects it full
        garage = page.get_by_test_id("crowd-parking").get_by_test_id("crowd-garage-forecast")
        garage.wait_for(state="visible")
        assert "P(full within 24 h)" in garage.inner_text(), garage.inner_text()
        # Finland: the holidays package has no school calendar for it, and the panel says so
        assert "not known" in page.get_by_test_id("crowd-school-input").inner_text()
        assert "no school holidays: " in page.get_by_test_id("crowd-model").inner_text()
        # which weather the forecast knew (this twin has no weather station)
        assert page.get_by_test_id("crowd-weather-input").inner_text().startswith(
            "weather: no weather station"
        )

        # the time slider recolours the zones by forecast level
        levels = page.evaluate("""async () => {
            const r = await fetch('/api/crowd/forecast/zones', {headers: {Authorization: 'Bearer ' +
                JSON.parse(sessionStorage.getItem('citytwin.session')).token}});
            return (await r.json()).zones[0].hours.map((h) => h.level);
        }""")
        slider = page.get_by_test_id("crowd-slider")
        lead = next(i for i, lv in enumerate(levels) if i > 0 and lv == "red")
        slider.fill(str(lead))
        page.wait_for_function(
            f"() => document.querySelector('[data-testid=panel-crowd]').dataset.lead === '{lead}'"
        )
        assert page.get_by_test_id("crowd-slider-label").inner_text().startswith(f"+{lead} h")
        state = page.evaluate(
            f"() => window.__citytwin.map.getFeatureState({{source: 'zones', id: {ZONE}}})"
        )
        assert state["crowd"] == 2, (state, levels)
        page.screenshot(path=str(screenshot_dir / "crowd-panel.png"))

        # an event with its end before its start is refused with a clear message
        page.get_by_test_id("crowd-event-name").fill("concert")
        page.get_by_test_id("crowd-event-start").fill("2030-06-01T20:00")
        page.get_by_test_id("crowd-event-end").fill("2030-06-01T18:00")
        page.get_by_test_id("crowd-event-visitors").fill("5000")
        page.get_by_test_id("crowd-event-add").click()
        err = page.get_by_test_id("crowd-event-error")
        err.wait_for(state="visible")
        assert "end" in err.inner_text() and "start" in err.inner_text()

        # acknowledge the alert
        page.get_by_test_id(f"crowd-alert-{alert_id}").wait_for()
        page.get_by_test_id(f"crowd-alert-ack-{alert_id}").click()
        page.get_by_test_id(f"crowd-alert-acked-{alert_id}").wait_for()
        assert user in page.get_by_test_id(f"crowd-alert-acked-{alert_id}").inner_text()
    finally:
        context.close()
    assert not errors, f"uncaught errors in the page: {errors}"
