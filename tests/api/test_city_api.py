import pytest
from fastapi.testclient import TestClient

from citytwin.api import create_app



@pytest.fixture
def client(settings, helsinki_engine):
    with TestClient(create_app(settings, engine=helsinki_engine)) as c:
        yield c


@pytest.fixture
def viewer(client, make_token):
    return make_token(client, "viewer1", "viewer")


def test_buildings_geojson(client, viewer):
    r = client.get("/api/city/buildings", params={"limit": 100}, headers=viewer)
    assert r.status_code == 200
    fc = r.json()
    assert fc["type"] == "FeatureCollection"
    assert fc["numberMatched"] > 400 and fc["numberReturned"] == 100
    props = fc["features"][0]["properties"]
    for key in ("safety_class", "occupants_day", "occupants_night", "height_m"):
        assert key in props
    lon, lat = fc["features"][0]["geometry"]["coordinates"][0][0][:2]
    assert 24.9 < lon < 25.0 and 60.1 < lat < 60.2  # served in WGS84


def test_paging_is_stable_and_complete(client, viewer):
    total = client.get("/api/city/buildings", params={"limit": 1}, headers=viewer).json()["numberMatched"]
    ids = []
    for offset in range(0, total, 200):
        page = client.get("/api/city/buildings", params={"limit": 200, "offset": offset}, headers=viewer).json()
        ids += [f["id"] for f in page["features"]]
    assert len(ids) == total == len(set(ids))


def test_safety_class_filter(client, viewer):
    fc = client.get("/api/city/buildings", params={"safety_class": "vulnerable"}, headers=viewer).json()
    assert fc["numberMatched"] >= 5
    assert {f["properties"]["safety_class"] for f in fc["features"]} == {"vulnerable"}
    bad = client.get("/api/city/buildings", params={"safety_class": "dangerous"}, headers=viewer)
    assert bad.status_code == 422


def test_bad_bbox_names_the_field(client, viewer):
    r = client.get("/api/city/buildings", params={"bbox": "1,2,3"}, headers=viewer)
    assert r.status_code == 422 and "bbox" in r.json()["detail"]


def test_networks_and_zones(client, viewer):
    walk = client.get("/api/city/networks/walk", params={"limit": 1}, headers=viewer).json()
    assert walk["numberMatched"] > 5000
    drive = client.get("/api/city/networks/drive", params={"limit": 5}, headers=viewer).json()
    assert all(f["properties"]["lanes"] >= 1 for f in drive["features"])
    assert client.get("/api/city/networks/bike", headers=viewer).status_code == 422
    zones = client.get("/api/city/zones", params={"kind": "standing"}, headers=viewer).json()
    assert zones["numberMatched"] > 5
    assert {f["properties"]["kind"] for f in zones["features"]} == {"standing"}


def test_building_by_id_and_404(client, viewer):
    assert client.get("/api/city/buildings/1", headers=viewer).json()["id"] == 1
    assert client.get("/api/city/buildings/999999", headers=viewer).status_code == 404
    assert client.get("/api/city/buildings", params={"city": "Atlantis"}, headers=viewer).status_code == 404


def test_openapi_lists_routes(client):
    paths = client.get("/openapi.json").json()["paths"]
    assert "/api/city/buildings" in paths and "/api/auth/token" in paths


def test_body_limit(client, viewer):
    r = client.post("/api/city/zones", content=b"x" * 100, headers={**viewer, "content-length": str(10**9)})
    assert r.status_code == 413
