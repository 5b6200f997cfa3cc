"""The app factory: ``create_app(settings)`` builds the whole HTTP API; nothing at import time."""

from __future__ import annotations

import gc
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from sqlalchemy.engine import Engine

from citytwin import __version__
from citytwin.settings import Settings
from citytwin.store import make_engine, migrate

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"


def create_app(settings: Settings, *, engine: Engine | None = None, run_migrations: bool = True) -> FastAPI:
    """Build the API for one twin instance.

    Parameters
    ----------
    settings
        The instance's settings (database, secret key, data directory).
    engine
        An engine to use instead of one built from ``settings`` (tests inject one).
    run_migrations
        Upgrade the schema to the latest revision on start.
    """
    from citytwin.api.routers import auth, city, health

    engine = engine or make_engine(settings.resolved_database_url())
    if run_migrations:
        migrate(engine)
    app = FastAPI(
        title="citytwin",
        version=__version__,
        description="A digital twin for the safety of cities. Every endpoint but /api/health and "
        "/api/auth/token needs a bearer token.",
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.secret_key = settings.resolved_secret_key()
    app.state.authenticators = []

    app.add_middleware(BodyLimitMiddleware, limit=settings.max_body_bytes)

    app.include_router(health.router)
    app.include_router(auth.router)
    app.include_router(city.router)
    for extra in _optional_routers():
        extra(app)

    _mount_dashboard(app)
    return app


def freeze_startup_heap() -> None:
    """Leave the objects built at start-up (modules, the app, libraries' tables) out of garbage
    collection, so that full collections scan only what requests allocate.

    A large ``/CreateObservations`` body allocates thousands of container objects that live for
    the request, which triggers full collections; over the whole start-up heap those cost about
    2 µs of CPU per Observation, about a fifth of the server's work (``benchmarks/bench_ingest.py``).
    Call once, after the app is built and before serving.
    """
    gc.collect()
    gc.freeze()


class BodyLimitMiddleware:
    """413 for a request whose ``Content-Length`` exceeds ``limit`` (bodies without one are
    counted as they are read, see ``citytwin.api.routers.sensors``).

    Pure ASGI rather than ``@app.middleware("http")``: Starlette's ``BaseHTTPMiddleware`` relays
    every body chunk and response message through extra tasks, which cost about a third of the
    server's time on large ``/CreateObservations`` bodies.
    """

    def __init__(self, app, limit: int):
        self.app = app
        self.limit = limit

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            for name, value in scope["headers"]:
                if name == b"content-length":
                    if value.isdigit() and int(value) > self.limit:
                        response = JSONResponse({"detail": f"request body of {value.decode()} bytes exceeds "
                                                           f"the limit of {self.limit} bytes"}, status_code=413)
                        await response(scope, receive, send)
                        return
                    break
        await self.app(scope, receive, send)


def _optional_routers():
    """Domain routers that register themselves (each a function ``install(app)``)."""
    import importlib

    installers = []
    for mod in (
        "citytwin.api.routers.sensors",
        "citytwin.api.routers.feeds",
        "citytwin.api.routers.crowd",
        "citytwin.api.routers.hazard",
        "citytwin.api.routers.evacuation",
    ):
        try:
            module = importlib.import_module(mod)
        except ModuleNotFoundError as exc:
            if exc.name == mod:
                continue
            raise
        installers.append(module.install)
    return installers


def _mount_dashboard(app: FastAPI) -> None:
    """Serve the built web app at ``/`` when present (``npm run build`` in ``web/``)."""
    index = STATIC_DIR / "index.html"
    if not index.exists():

        @app.get("/", include_in_schema=False)
        def _no_dashboard():
            return JSONResponse(
                {"detail": "the dashboard is not built; run `npm --prefix web ci && npm --prefix web run build`"},
                status_code=503,
            )

        return
    app.mount("/assets", StaticFiles(directory=STATIC_DIR / "assets"), name="assets")

    @app.get("/", include_in_schema=False)
    def _index():
        return FileResponse(index)
