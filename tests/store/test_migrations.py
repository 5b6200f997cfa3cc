"""The schema migrations create exactly the tables the code uses, on SQLite and PostgreSQL."""

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from citytwin.store import make_engine, migrate
from citytwin.store.db import current_revision
from citytwin.store.schema import metadata


def _assert_in_sync(engine):
    migrate(engine)
    migrate(engine)  # idempotent
    assert current_revision(engine) is not None
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    assert diff == [], f"schema differs from migrations: {diff}"


def test_sqlite_migrations_match_schema(tmp_path):
    _assert_in_sync(make_engine(f"sqlite:///{tmp_path / 'm.sqlite'}"))


@pytest.mark.postgres
def test_postgres_migrations_match_schema(postgres_engine):
    _assert_in_sync(postgres_engine)


def test_check_constraint_refuses_zone_without_area(tmp_path):
    from citytwin.store.schema import cities, zones

    engine = make_engine(f"sqlite:///{tmp_path / 'c.sqlite'}")
    migrate(engine)
    with engine.begin() as conn:
        cid = conn.execute(cities.insert().values(name="c", source="t", crs_epsg=32635, minx=0, miny=0, maxx=1, maxy=1, imported_at=sa.func.now(), stats={})).inserted_primary_key[0]
    with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
        conn.execute(zones.insert().values(city_id=cid, name="z", kind="moving", category="x", usable_area_m2=0, source="t", minx=0, miny=0, maxx=1, maxy=1, geometry="{}"))
