"""Fixtures for the sensor middleware: a temp SQLite twin, user tokens, API keys, services."""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from citytwin import security
from citytwin.api.app import create_app
from citytwin.settings import Settings
from citytwin.store import make_engine, migrate

PASSWORD = "correct-horse-battery"
STA = "/sta/v1.1"


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def require_service(kind: str, host: str, port: int) -> None:
    """Skip when a service is unreachable, unless CI is set (then fail)."""
    if _reachable(host, port):
        return
    msg = f"{kind} not reachable at {host}:{port}"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(msg)
    pytest.skip(msg)


def mqtt_address() -> tuple[str, int]:
    host, _, port = os.environ.get("CITYTWIN_TEST_MQTT", "127.0.0.1:1883").partition(":")
    return host, int(port or 1883)


def postgres_url() -> str:
    return os.environ.get("CITYTWIN_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


@pytest.fixture(scope="session")
def template_db(tmp_path_factory) -> Path:
    """A migrated database with one user per role, built once and copied per test."""
    path = tmp_path_factory.mktemp("template") / "twin.sqlite"
    eng = make_engine(f"sqlite:///{path}")
    migrate(eng)
    with eng.begin() as conn:
        for role in ("viewer", "operator", "admin"):
            security.create_user(conn, name=role, password=PASSWORD, role=role)
    with eng.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    eng.dispose()
    return path


@pytest.fixture
def engine(tmp_path: Path, template_db: Path):
    shutil.copy(template_db, tmp_path / "twin.sqlite")
    eng = make_engine(f"sqlite:///{tmp_path / 'twin.sqlite'}")
    yield eng
    eng.dispose()


def make_client(tmp_path: Path, engine, **settings) -> TestClient:
    app = create_app(Settings(data_dir=tmp_path, secret_key="x" * 40, **settings), engine=engine, run_migrations=False)
    return TestClient(app)


@pytest.fixture
def client(tmp_path, engine):
    with make_client(tmp_path, engine) as c:
        yield c


def token(client: TestClient, role: str) -> str:
    r = client.post("/api/auth/token", data={"username": role, "password": PASSWORD})
    assert r.status_code == 200, r.text
    return r.json()["access_token"]


@pytest.fixture
def op(client) -> dict:
    """Authorization headers of an operator."""
    return {"Authorization": f"Bearer {token(client, 'operator')}"}


@pytest.fixture
def viewer(client) -> dict:
    return {"Authorization": f"Bearer {token(client, 'viewer')}"}


def thing_body(name: str = "camera 1", *, n_streams: int = 1, with_location: bool = True) -> dict:
    body: dict = {
        "name": name,
        "description": "a counting camera",
        "properties": {"kind": "camera"},
        "Datastreams": [
            {
                "name": f"{name} stream {i}",
                "description": "people per minute",
                "observationType": "http://www.opengis.net/def/observationType/OGC-OM/2.0/OM_Measurement",
                "unitOfMeasurement": {"name": "count", "symbol": "{count}", "definition": "http://unitsofmeasure.org"},
                "Sensor": {"name": "cam", "description": "camera", "encodingType": "application/pdf", "metadata": "https://example.org/cam.pdf"},
                "ObservedProperty": {"name": f"people{i}", "definition": "https://example.org/people", "description": "people passing"},
            }
            for i in range(n_streams)
        ],
    }
    if with_location:
        body["Locations"] = [{"name": "Dam", "description": "Dam square", "encodingType": "application/geo+json",
                              "location": {"type": "Point", "coordinates": [4.8930, 52.3731]}}]
    return body


def create(client: TestClient, headers: dict, path: str, body) -> int:
    r = client.post(f"{STA}/{path}", json=body, headers=headers)
    assert r.status_code == 201, r.text
    loc = r.headers["Location"]
    return int(loc.rsplit("(", 1)[1].rstrip(")"))


@pytest.fixture(scope="module")
def mclient(tmp_path_factory, template_db):
    """A client shared by one module's read-only tests (faster than one twin per test)."""
    tmp = tmp_path_factory.mktemp("twin")
    shutil.copy(template_db, tmp / "twin.sqlite")
    eng = make_engine(f"sqlite:///{tmp / 'twin.sqlite'}")
    with make_client(tmp, eng) as c:
        yield c
    eng.dispose()
