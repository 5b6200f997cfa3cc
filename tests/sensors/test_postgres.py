"""The SensorThings store on PostgreSQL: migrate, create, filter, dataArray ingest."""

from __future__ import annotations


import pytest

from citytwin import security
from citytwin.store import migrate
from tests.sensors.conftest import (
    PASSWORD,
    STA,
    create,
    make_client,
    thing_body,
    token,
)

pytestmark = pytest.mark.postgres


@pytest.fixture
def pg_engine(postgres_engine):
    """A fresh PostgreSQL database (tests/conftest.py), migrated, with a viewer and an operator."""
    migrate(postgres_engine)
    with postgres_engine.begin() as conn:
        for role in ("viewer", "operator"):
            security.create_user(conn, name=role, password=PASSWORD, role=role)
    return postgres_engine


def test_sta_on_postgres(tmp_path, pg_engine):
    with make_client(tmp_path, pg_engine) as c:
        hdr = {"Authorization": f"Bearer {token(c, 'operator')}"}
        tid = create(c, hdr, "Things", thing_body())
        did = c.get(f"{STA}/Things({tid})/Datastreams", headers=hdr).json()["value"][0]["@iot.id"]
        body = [{"Datastream": {"@iot.id": did}, "components": ["phenomenonTime", "result", "parameters"],
                 "dataArray": [[f"2024-01-01T00:0{i}:00Z", i, {"m": f"x{i}"}] for i in range(5)]}]
        r = c.post(f"{STA}/CreateObservations", json=body, headers=hdr)
        assert r.status_code == 201 and "error" not in r.json()
        for q, expected in [("result ge 3", [3, 4]), ("year(phenomenonTime) eq 2024 and minute(phenomenonTime) eq 2", [2]),
                            ("parameters/m eq 'x1'", [1]), ("startswith(Datastream/name, 'camera')", [0, 1, 2, 3, 4]),
                            ("endswith(Datastream/name, 'X')", []), ("indexof(Datastream/Thing/name, 'era') eq 3", [0, 1, 2, 3, 4])]:
            r = c.get(f"{STA}/Observations", params={"$filter": q}, headers=hdr)
            assert r.status_code == 200, (q, r.text)
            assert [o["result"] for o in r.json()["value"]] == expected, q
        r = c.get(f"{STA}/Locations", params={"$filter": "st_within(location, geography'POLYGON((4 52, 5 52, 5 53, 4 53, 4 52))')"}, headers=hdr)
        assert len(r.json()["value"]) == 1
        assert c.delete(f"{STA}/Things({tid})", headers=hdr).status_code == 200
