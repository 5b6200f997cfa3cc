"""Browser fixtures: a Helsinki twin served by uvicorn in a thread, and headless Chromium.

Chromium is Debian's package (``/usr/bin/chromium``), driven by Playwright through
``executable_path``; Playwright downloads no browser. Without Chromium, Playwright or the built
dashboard (``citytwin/static/index.html``) the browser tests are skipped, except under
``CI=true`` where they fail instead, so that CI cannot pass by skipping them.
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
CHROMIUM = os.environ.get("CITYTWIN_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    # WebGL without a GPU: ANGLE on SwiftShader, the software renderer inside Chromium.
    "--use-gl=angle",
    "--use-angle=swiftshader",
    "--enable-unsafe-swiftshader",
]
ADMIN = ("e2e-admin", "e2e-password-for-tests")


def _missing(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: the browser tests must run)")
    pytest.skip(reason)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass(frozen=True)
class LiveTwin:
    url: str
    username: str
    password: str


@pytest.fixture(scope="session")
def e2e_engine(tmp_path_factory):
    """A migrated SQLite twin of the Helsinki centre with one admin user (built once, ~5 s)."""
    from citytwin import security
    from citytwin.city.osm import default_pbf
    from citytwin.city.service import import_osm
    from citytwin.store import make_engine, migrate

    path = tmp_path_factory.mktemp("e2e-twin") / "twin.sqlite"
    engine = make_engine(f"sqlite:///{path}")
    migrate(engine)
    import_osm(engine, path=default_pbf(), name="Helsinki")
    with engine.begin() as conn:
        security.create_user(conn, name=ADMIN[0], password=ADMIN[1], role="admin")
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def live_twin(request, tmp_path_factory) -> Iterator[LiveTwin]:
    """The API and the built dashboard on a free port, served from a background thread."""
    import uvicorn

    from citytwin.api import create_app
    from citytwin.api.app import STATIC_DIR
    from citytwin.settings import Settings

    if not (STATIC_DIR / "index.html").exists():
        _missing(
            f"the dashboard is not built ({STATIC_DIR / 'index.html'} is missing): "
            "run `npm --prefix web ci && npm --prefix web run build`"
        )
    e2e_engine = request.getfixturevalue("e2e_engine")  # only once the dashboard is known built
    data_dir = tmp_path_factory.mktemp("e2e-data")
    app = create_app(Settings(data_dir=data_dir, secret_key="x" * 40), engine=e2e_engine)
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name="e2e-uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            pytest.fail("the test server did not start within 20 s")
        time.sleep(0.05)
    yield LiveTwin(url=f"http://127.0.0.1:{port}", username=ADMIN[0], password=ADMIN[1])
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="session")
def browser():
    """Headless Debian Chromium through Playwright (no browser download)."""
    if not Path(CHROMIUM).exists() and not shutil.which(CHROMIUM):
        _missing(f"Chromium not found at {CHROMIUM} (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("the playwright package is not installed (pip install -e '.[test]')")
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser, live_twin):
    """A fresh browser context (own sessionStorage) per test; page errors fail the test."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    pg.set_default_timeout(30_000)
    pg.goto(live_twin.url + "/")
    yield pg
    context.close()
    assert not errors, f"uncaught errors in the page: {errors}"


@pytest.fixture
def screenshot_dir(tmp_path) -> Path:
    """Where screenshots go: ``$CITYTWIN_E2E_SCREENSHOTS`` if set, else the test's tmp dir."""
    d = Path(os.environ.get("CITYTWIN_E2E_SCREENSHOTS", tmp_path))
    d.mkdir(parents=True, exist_ok=True)
    return d
