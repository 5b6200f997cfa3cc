"""Fixtures for the feed tests: a private copy of the Helsinki twin (never the shared one).

Sensor data written here (a weather station above all) must not leak into the session-wide
``helsinki_engine`` that the hazard and crowd tests read.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from citytwin import security
from citytwin.store import make_engine
from tests.sensors.conftest import PASSWORD, make_client


@pytest.fixture(scope="session")
def feeds_template(helsinki_engine, tmp_path_factory) -> Path:
    """The Helsinki twin plus one user per role, copied once from the shared session twin."""
    with helsinki_engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    path = tmp_path_factory.mktemp("feeds-template") / "twin.sqlite"
    shutil.copy(helsinki_engine.url.database, path)
    eng = make_engine(f"sqlite:///{path}")
    with eng.begin() as conn:
        for role in ("viewer", "operator", "admin"):
            conn.exec_driver_sql("DELETE FROM users WHERE name = ?", (role,))
            security.create_user(conn, name=role, password=PASSWORD, role=role)
    with eng.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    eng.dispose()
    return path


@pytest.fixture
def city_engine(tmp_path, feeds_template):
    shutil.copy(feeds_template, tmp_path / "twin.sqlite")
    eng = make_engine(f"sqlite:///{tmp_path / 'twin.sqlite'}")
    yield eng
    eng.dispose()


@pytest.fixture
def city_client(tmp_path, city_engine):
    with make_client(tmp_path, city_engine) as c:
        yield c


def auth(client: TestClient, role: str) -> dict:
    r = client.post("/api/auth/token", data={"username": role, "password": PASSWORD})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}
