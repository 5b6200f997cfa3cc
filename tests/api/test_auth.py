"""Authentication and authorisation on every route."""

import pytest
import sqlalchemy as sa
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from citytwin import security
from citytwin.api import create_app

# The dashboard shell (login page, no data) is public; every data route needs a token.
OPEN_ROUTES = {("/api/health", "GET"), ("/api/auth/token", "POST"), ("/", "GET")}


@pytest.fixture
def app(settings, helsinki_engine):
    return create_app(settings, engine=helsinki_engine)


@pytest.fixture
def client(app):
    with TestClient(app) as c:
        yield c


def _user(engine, name, role):
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM users WHERE name = :n"), {"n": name})
        security.create_user(conn, name=name, password=f"{name}-password-123", role=role)


def _concrete(path: str) -> str:
    return (
        path.replace("{building_id}", "1")
        .replace("{network}", "walk")
        .replace("{", "").replace("}", "")
    )


def _all_routes(app):
    """Every documented (path, method), plus undocumented plain routes."""
    seen = set()
    for path, ops in app.openapi()["paths"].items():
        for method in ops:
            seen.add((path, method.upper()))
    for route in app.routes:
        if isinstance(route, APIRoute):
            seen |= {(route.path, m) for m in route.methods}
    return sorted((p, m) for p, m in seen if m not in ("HEAD", "OPTIONS"))


def test_every_route_but_health_and_token_needs_a_token(app, client):
    checked = 0
    for path, method in _all_routes(app):
        if (path, method) in OPEN_ROUTES:
            continue
        r = client.request(method, _concrete(path))
        assert r.status_code == 401, f"{method} {path} answered {r.status_code} without a token"
        checked += 1
    assert checked >= 6


def test_health_is_open(client):
    r = client.get("/api/health")
    assert r.status_code == 200
    assert r.json()["database"] == "ok"


def test_wrong_password_and_unknown_user(client, helsinki_engine):
    _user(helsinki_engine, "ana", "analyst")
    assert client.post("/api/auth/token", data={"username": "ana", "password": "wrong-password-1"}).status_code == 401
    assert client.post("/api/auth/token", data={"username": "nobody", "password": "x" * 12}).status_code == 401


def test_forged_or_expired_token(client, helsinki_engine, settings):
    user = {"name": "v", "role": "admin"}
    forged, _ = security.issue_token(user=user, secret="another-secret-" + "z" * 30, minutes=5)
    assert client.get("/api/city", headers={"Authorization": f"Bearer {forged}"}).status_code == 401
    expired, _ = security.issue_token(user=user, secret=settings.resolved_secret_key(), minutes=-1)
    assert client.get("/api/city", headers={"Authorization": f"Bearer {expired}"}).status_code == 401


def test_roles_are_ordered(client, helsinki_engine, make_token):
    viewer = make_token(client, "vera", "viewer")
    operator = make_token(client, "otto", "operator")
    zone = {
        "type": "Feature",
        "properties": {"name": "Stage front", "kind": "standing"},
        "geometry": {"type": "Polygon", "coordinates": [[[24.944, 60.169], [24.945, 60.169], [24.945, 60.1695], [24.944, 60.1695], [24.944, 60.169]]]},
    }
    assert client.post("/api/city/zones", json=zone, headers=viewer).status_code == 403
    r = client.post("/api/city/zones", json=zone, headers=operator)
    assert r.status_code == 201, r.text
    zones = client.get("/api/city/zones", headers=viewer).json()
    added = [f for f in zones["features"] if f["id"] == r.json()["id"]][0]
    assert 2000 < added["properties"]["usable_area_m2"] < 4000  # ~55.6 m x 55.6 m / 2 at 60°N
    with helsinki_engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM zones WHERE id = :i"), {"i": r.json()["id"]})


def test_bad_zone_is_refused(client, make_token):
    operator = make_token(client, "otto", "operator")
    bad = {"type": "Feature", "properties": {"name": "x", "kind": "crowded"}, "geometry": {"type": "Point", "coordinates": [24.9, 60.1]}}
    r = client.post("/api/city/zones", json=bad, headers=operator)
    assert r.status_code == 422
    assert "kind" in r.json()["detail"]


def test_role_rank_rejects_unknown():
    with pytest.raises(security.UserError, match="unknown role"):
        security.role_rank("superuser")


def test_passwords_are_argon2_hashed(helsinki_engine):
    _user(helsinki_engine, "hashcheck", "viewer")
    with helsinki_engine.connect() as conn:
        h = conn.execute(sa.text("SELECT password_hash FROM users WHERE name='hashcheck'")).scalar()
    assert h.startswith("$argon2id$") and "hashcheck-password-123" not in h


def test_short_password_refused(helsinki_engine):
    with helsinki_engine.begin() as conn, pytest.raises(security.UserError, match="password"):
        security.create_user(conn, name="shorty", password="short", role="viewer")
