"""The Sensors panel in headless Chromium: simulated/replayed labels, parking chart, live updates.

Runs its own twin (a copy of the e2e database) with the demo feeds, so the weather station and
the other sources never reach the shared ``live_twin`` of the other browser tests.
"""

from __future__ import annotations

import shutil
import socket
import threading
import time

import pytest

pytestmark = pytest.mark.browser


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def sensors_twin(request, tmp_path):
    import uvicorn

    from citytwin.api import create_app
    from citytwin.api.app import STATIC_DIR
    from citytwin.sensors.demo import start_demo_feeds
    from citytwin.settings import Settings
    from citytwin.store import make_engine
    from tests.e2e.conftest import ADMIN, _missing

    if not (STATIC_DIR / "index.html").exists():
        _missing("the dashboard is not built: run `npm --prefix web ci && npm --prefix web run build`")
    e2e_engine = request.getfixturevalue("e2e_engine")
    with e2e_engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    shutil.copy(e2e_engine.url.database, tmp_path / "twin.sqlite")
    engine = make_engine(f"sqlite:///{tmp_path / 'twin.sqlite'}")
    settings = Settings(data_dir=tmp_path, secret_key="x" * 40)
    feeds = start_demo_feeds(settings=settings, engine=engine, speed=600.0, tick_s=1.0, backfill_s=30.0, seed=3)
    assert feeds.wait_ready(90) and feeds.error is None
    app = create_app(settings, engine=engine)
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name="e2e-sensors-uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the test server did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", ADMIN
    feeds.stop()
    server.should_exit = True
    thread.join(timeout=10)
    engine.dispose()


def test_sensors_panel_labels_and_live_updates(browser, sensors_twin, screenshot_dir):
    url, (user, password) = sensors_twin
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
        page.wait_for_function("() => window.__citytwin && window.__citytwin.ready === true", timeout=60_000)
        page.get_by_test_id("tab-sensors").click()
        panel = page.get_by_test_id("panel-sensors")
        panel.wait_for(state="visible")

        # simulated and replayed sources are labelled in the list, the legend and the status bar
        page.wait_for_function("() => document.querySelectorAll('[data-testid=sensors-list] li').length > 20")
        assert page.locator("[data-testid=sensors-list] [data-testid=badge-simulated]").count() >= 6
        assert page.locator("[data-testid=sensors-list] [data-testid=badge-replayed]").count() == 21
        assert "SIMULATED" in page.get_by_test_id("sensors-legend").inner_text()
        page.get_by_test_id("status-sensors-parking").wait_for()
        assert "SIMULATED" in page.get_by_test_id("status-sensors-parking").inner_text().upper()
        assert "replayed" in page.get_by_test_id("status-sensors-cameras").inner_text()

        # a live update arrives over server-sent events and the values are redrawn
        page.wait_for_function(
            "() => Number(document.querySelector('[data-testid=sensors-live]').dataset.events) >= 1", timeout=30_000)
        assert "new observations" in page.get_by_test_id("sensors-live").inner_text()
        garage = page.locator("[data-testid^=sensors-garage-]").first
        before = garage.locator("[data-testid=sensors-garage-value]").inner_text()
        page.wait_for_function(
            "(b) => document.querySelector('[data-testid^=sensors-garage-] [data-testid=sensors-garage-value]').textContent !== b",
            arg=before, timeout=30_000)

        # the history chart of a garage
        garage.click()
        chart = page.get_by_test_id("sensors-chart")
        chart.wait_for(state="visible")
        assert chart.locator("svg path.sensors-chart-line").count() == 1

        # map layers hold the feeds
        n = page.evaluate("""async () => {
            const m = window.__citytwin.map;
            const count = async (id) => (await m.getSource(id).getData()).features.length;
            return {traffic: await count('feeds-traffic'), parking: await count('feeds-parking'),
                    vehicles: await count('feeds-vehicles'), sensors: await count('feeds-sensors')};
        }""")
        assert n["traffic"] >= 5 and n["parking"] >= 3 and n["vehicles"] > 10 and n["sensors"] >= 21, n
        page.screenshot(path=str(screenshot_dir / "sensors-panel.png"))
    finally:
        context.close()
    assert not errors, f"uncaught errors in the page: {errors}"
