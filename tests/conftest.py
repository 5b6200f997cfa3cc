"""Shared fixtures: settings, a Helsinki twin in SQLite, and service URLs for marked tests.

Tests that need a service (PostgreSQL, MQTT, Chromium) are skipped on a machine without it,
except under ``CI=true`` where a missing service fails the run instead of hiding it.
"""

from __future__ import annotations

import os
import socket
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
SECRET = "test-secret-key-" + "k" * 32


def missing_service(reason: str) -> None:
    """Skip locally, fail in CI: a CI run must not silently skip its service tests."""
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: service tests must run)")
    pytest.skip(reason)


def reachable(host: str, port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


@pytest.fixture
def settings(tmp_path: Path):
    from citytwin.settings import Settings

    return Settings(data_dir=tmp_path, secret_key=SECRET)


@pytest.fixture(scope="session")
def helsinki_engine(tmp_path_factory):
    """A migrated SQLite database with the Helsinki centre imported (once per session)."""
    from citytwin.city.osm import default_pbf
    from citytwin.city.service import import_osm
    from citytwin.store import make_engine, migrate

    path = tmp_path_factory.mktemp("helsinki") / "twin.sqlite"
    engine = make_engine(f"sqlite:///{path}")
    migrate(engine)
    import_osm(engine, path=default_pbf(), name="Helsinki")
    return engine


@pytest.fixture
def make_token(helsinki_engine):
    """``make_token(client, name, role)`` → auth headers of a fresh user with that role."""
    import sqlalchemy as sa

    from citytwin import security

    def _make(client, name: str, role: str) -> dict:
        password = f"{name}-password-123"
        with helsinki_engine.begin() as conn:
            conn.execute(sa.text("DELETE FROM users WHERE name = :n"), {"n": name})
            security.create_user(conn, name=name, password=password, role=role)
        r = client.post("/api/auth/token", data={"username": name, "password": password})
        assert r.status_code == 200, r.text
        return {"Authorization": f"Bearer {r.json()['access_token']}"}

    return _make


POSTGRES_URL = os.environ.get(
    "CITYTWIN_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


@pytest.fixture
def postgres_engine():
    """A fresh, empty PostgreSQL database for one test, dropped afterwards."""
    import sqlalchemy as sa

    from citytwin.store import make_engine

    parts = urlsplit(POSTGRES_URL)
    if not reachable(parts.hostname or "127.0.0.1", parts.port or 5432):
        missing_service(f"PostgreSQL not reachable at {parts.hostname}:{parts.port}")
    admin = sa.create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    name = f"citytwin_t_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = parts._replace(path=f"/{name}").geturl()
    engine = make_engine(url)
    try:
        yield engine
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
