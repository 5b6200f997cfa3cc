"""The same import and API code path on PostgreSQL."""

import pytest
from fastapi.testclient import TestClient

from citytwin import security
from citytwin.api import create_app
from citytwin.city import service
from citytwin.city.osm import CityImportError, default_pbf
from citytwin.store import migrate

pytestmark = pytest.mark.postgres

BOX = (24.940, 60.165, 24.950, 60.172)


def test_import_and_serve_on_postgres(postgres_engine, settings):
    migrate(postgres_engine)
    rep = service.import_osm(postgres_engine, path=default_pbf(), name="Helsinki", bbox=BOX)
    assert rep.stats["buildings"] > 50
    with postgres_engine.begin() as conn:
        security.create_user(conn, name="pgadmin", password="pg-admin-password", role="admin")
    with TestClient(create_app(settings, engine=postgres_engine)) as client:
        tok = client.post("/api/auth/token", data={"username": "pgadmin", "password": "pg-admin-password"}).json()["access_token"]
        h = {"Authorization": f"Bearer {tok}"}
        fc = client.get("/api/city/buildings", params={"limit": 10}, headers=h).json()
        assert fc["numberMatched"] == rep.stats["buildings"]
        assert client.get("/api/city/buildings").status_code == 401
        z = client.get("/api/city/zones", headers=h).json()
        assert z["numberMatched"] == rep.stats["zones"]


def test_failed_import_leaves_postgres_unchanged(postgres_engine):
    migrate(postgres_engine)
    service.import_osm(postgres_engine, path=default_pbf(), name="Helsinki", bbox=BOX)
    with postgres_engine.connect() as conn:
        before = service.list_cities(conn)
    with pytest.raises(CityImportError):
        service.import_osm(postgres_engine, path=default_pbf(), name="Helsinki", bbox=(24.90, 60.10, 24.91, 60.11))
    with postgres_engine.connect() as conn:
        after = service.list_cities(conn)
    assert before == after
