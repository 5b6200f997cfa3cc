import json

import pytest
import sqlalchemy as sa

from citytwin.city import service
from citytwin.city.crs import utm_epsg
from citytwin.city.osm import CityImportError, default_pbf, parse_bbox
from citytwin.store import make_engine, migrate
from citytwin.store.schema import buildings, cities


def test_helsinki_registry(helsinki_engine):
    with helsinki_engine.connect() as conn:
        city = service.resolve_city(conn, None)
        assert city["crs_epsg"] == 32635
        stats = city["stats"]
        assert stats["buildings"] > 400
        assert stats["walk_edges"] > 5000
        assert stats["drive_edges"] > 500
        assert stats["zones"] > 10
        assert stats["safety_classes"]["vulnerable"] >= 5
        every = service.query_buildings(conn, city_id=city["id"], limit=5000)
        assert {f["geometry"]["type"] for f in every["features"]} <= {"Polygon", "MultiPolygon"}
        fc = service.query_buildings(conn, city_id=city["id"], safety_class="vulnerable")
        for f in fc["features"]:
            assert f["properties"]["safety_reason"], "a vulnerable building keeps the tags that decided it"
        zones = service.query_zones(conn, city_id=city["id"])
        kinds = {f["properties"]["kind"] for f in zones["features"]}
        assert kinds == {"moving", "standing"}
        assert all(f["properties"]["usable_area_m2"] > 0 for f in zones["features"])
        names = {f["properties"]["name"] for f in zones["features"]}
        assert "Senaatintori" in names  # the Senate Square
        walk = service.query_network(conn, city_id=city["id"], network="walk", limit=50)
        for f in walk["features"]:
            p = f["properties"]
            assert p["length_m"] > 0 and p["capacity_per_h"] > 0 and p["width_m"] > 0


def test_bbox_query_filters(helsinki_engine):
    with helsinki_engine.connect() as conn:
        city = service.resolve_city(conn, None)
        all_ = service.query_buildings(conn, city_id=city["id"], limit=5000)
        part = service.query_buildings(conn, city_id=city["id"], bbox=(24.945, 60.168, 24.950, 60.171), limit=5000)
        assert 0 < part["numberMatched"] < all_["numberMatched"]
        for f in part["features"]:
            xs = [c[0] for ring in f["geometry"]["coordinates"][:1] for c in ring] if f["geometry"]["type"] == "Polygon" else []
            if xs:
                assert max(xs) >= 24.945 and min(xs) <= 24.950


def test_import_is_deterministic(tmp_path):
    a = make_engine(f"sqlite:///{tmp_path / 'a.sqlite'}")
    migrate(a)
    r1 = service.import_osm(a, path=default_pbf(), name="H", bbox=(24.940, 60.165, 24.950, 60.172))
    r2 = service.import_osm(a, path=default_pbf(), name="H", bbox=(24.940, 60.165, 24.950, 60.172))
    assert r1.stats == r2.stats
    with a.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(cities)).scalar() == 1


def _counts(engine):
    with engine.connect() as conn:
        return (
            conn.execute(sa.select(sa.func.count()).select_from(cities)).scalar(),
            conn.execute(sa.select(sa.func.count()).select_from(buildings)).scalar(),
        )


@pytest.fixture
def small_engine(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 's.sqlite'}")
    migrate(engine)
    service.import_osm(engine, path=default_pbf(), name="Small", bbox=(24.940, 60.165, 24.950, 60.172))
    return engine


def test_empty_pbf_is_refused_and_db_unchanged(small_engine, tmp_path):
    before = _counts(small_engine)
    empty = tmp_path / "empty.osm.pbf"
    empty.write_bytes(b"")
    with pytest.raises(CityImportError, match="empty"):
        service.import_osm(small_engine, path=empty, name="Empty")
    assert _counts(small_engine) == before


def test_corrupt_pbf_is_refused_and_db_unchanged(small_engine, tmp_path):
    before = _counts(small_engine)
    bad = tmp_path / "bad.osm.pbf"
    bad.write_bytes(default_pbf().read_bytes()[:5000] + b"\x00garbage" * 100)
    with pytest.raises(CityImportError, match="cannot read|no buildings"):
        service.import_osm(small_engine, path=bad, name="Small")
    assert _counts(small_engine) == before


def test_bbox_without_buildings_is_refused(small_engine):
    before = _counts(small_engine)
    with pytest.raises(CityImportError, match="no buildings"):
        service.import_osm(small_engine, path=default_pbf(), name="Sea", bbox=(24.90, 60.10, 24.91, 60.11))
    assert _counts(small_engine) == before


def test_failure_during_write_rolls_back(small_engine, monkeypatch):
    before = _counts(small_engine)
    original = service._insert

    def failing(conn, table, df, **extra):
        if table.name == "zones":
            raise RuntimeError("disk full")
        return original(conn, table, df, **extra)

    monkeypatch.setattr(service, "_insert", failing)
    with pytest.raises(RuntimeError):
        service.import_osm(small_engine, path=default_pbf(), name="Small", bbox=(24.940, 60.165, 24.950, 60.172))
    assert _counts(small_engine) == before


@pytest.mark.parametrize("text", ["1,2,3", "a,b,c,d", "10,10,5,20", "0,95,1,96"])
def test_bad_bbox(text):
    with pytest.raises(CityImportError, match="bbox"):
        parse_bbox(text)


def test_geojson_buildings(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'g.sqlite'}")
    migrate(engine)
    fc = {
        "type": "FeatureCollection",
        "features": [
            {"type": "Feature", "properties": {"building": "school", "name": "De Klimop", "building:levels": "2"},
             "geometry": {"type": "Polygon", "coordinates": [[[4.30, 52.08], [4.3005, 52.08], [4.3005, 52.0803], [4.30, 52.0803], [4.30, 52.08]]]}},
            {"type": "Feature", "properties": {"building": "yes", "amenity": "fuel"},
             "geometry": {"type": "Polygon", "coordinates": [[[4.31, 52.08], [4.3102, 52.08], [4.3102, 52.0801], [4.31, 52.0801], [4.31, 52.08]]]}},
        ],
    }
    path = tmp_path / "b.geojson"
    path.write_text(json.dumps(fc))
    rep = service.import_buildings_geojson(engine, path=path, name="Den Haag test")
    assert rep.stats["buildings"] == 2
    assert rep.stats["safety_classes"] == {"vulnerable": 1, "hazardous": 1, "ordinary": 0}
    with engine.connect() as conn:
        assert service.resolve_city(conn, "Den Haag test")["crs_epsg"] == utm_epsg(lon=4.3, lat=52.08)
        school = service.query_buildings(conn, city_id=rep.city_id, safety_class="vulnerable")["features"][0]
        assert school["properties"]["occupants_day"] > 0 and school["properties"]["occupants_night"] == 0


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ("not json", "not valid JSON"),
        ('{"type": "Feature"}', "FeatureCollection"),
        ('{"type": "FeatureCollection", "features": []}', "no features"),
        ('{"type": "FeatureCollection", "features": [{"type": "Feature", "properties": {}, "geometry": {"type": "Point", "coordinates": [4, 52]}}]}', "Polygon"),
    ],
)
def test_invalid_geojson(tmp_path, content, match):
    engine = make_engine(f"sqlite:///{tmp_path / 'g.sqlite'}")
    migrate(engine)
    path = tmp_path / "bad.geojson"
    path.write_text(content)
    with pytest.raises(CityImportError, match=match):
        service.import_buildings_geojson(engine, path=path, name="x")
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(cities)).scalar() == 0
