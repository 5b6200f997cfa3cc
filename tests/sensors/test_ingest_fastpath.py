"""The bulk ingest path: the fast row path stores exactly what the general path stores, ids come
back in input order, Datastream statistics follow, bulk notifications equal the served JSON, on
SQLite and PostgreSQL."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from citytwin.sensors import ingest as ing
from citytwin.sensors import schema as s
from citytwin.sensors.mqtt import _ROWS, _messages, observation_json, publish_packet
from citytwin.sensors.service import StaRequest, StaService
from citytwin.store import make_engine, migrate
from tests.sensors.conftest import postgres_url, require_service

OM = "http://www.opengis.net/def/observationType/OGC-OM/2.0/"
OP = ing.Principal("op", "operator")


@pytest.fixture
def pg_schema_engine():
    """A fresh schema on PostgreSQL, its search_path in the connection string (survives pool resets)."""
    import uuid
    from urllib.parse import urlsplit

    url = postgres_url()
    parts = urlsplit(url.replace("postgresql+psycopg", "http"))
    require_service("PostgreSQL", parts.hostname or "127.0.0.1", parts.port or 5432)
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(url)
    with admin.begin() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    eng = make_engine(f"{url}{'&' if '?' in url else '?'}options=-csearch_path%3D{schema}")
    migrate(eng)
    yield eng
    eng.dispose()
    with admin.begin() as conn:
        conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
    admin.dispose()


def _twin(engine, n_streams=3, kinds=("OM_Measurement", "OM_CategoryObservation", "OM_Observation")):
    svc = StaService(engine)
    body = {"name": "t", "description": "d",
            "Locations": [{"name": "l", "description": "d", "encodingType": "application/geo+json",
                           "location": {"type": "Point", "coordinates": [24.9, 60.2]}}],
            "Datastreams": [{"name": f"d{i}", "description": "d", "observationType": OM + kinds[i % len(kinds)],
                             "unitOfMeasurement": {},
                             "Sensor": {"name": "s", "description": "d", "encodingType": "text/html", "metadata": "m"},
                             "ObservedProperty": {"name": "p", "definition": "d", "description": "d"}}
                            for i in range(n_streams)]}
    r = svc.handle(StaRequest("POST", "Things", body=json.dumps(body).encode(), principal=OP))
    assert r.status == 201, r.body
    with engine.connect() as c:
        ids = list(c.execute(sa.select(s.sta_datastreams.c.id).order_by(s.sta_datastreams.c.id)).scalars())
    return svc, ids


def _stored(engine, ids):
    cols = [c for c in s.sta_observations.c if c.name != "id"]
    with engine.connect() as c:
        rows = {r.id: tuple(r[1:]) for r in c.execute(sa.select(s.sta_observations.c.id, *cols)
                                                       .where(s.sta_observations.c.id.in_(ids)))}
    return [rows[i] for i in ids]


def _items(ds):
    t = datetime(2024, 5, 1, 12, tzinfo=UTC)
    return [
        {"Datastream": {"@iot.id": ds[0]}, "result": 1, "phenomenonTime": "2024-05-01T12:00:00Z"},
        {"Datastream": {"@iot.id": ds[0]}, "result": 2.5, "phenomenonTime": "2024-05-01T14:00:00.25+02:00",
         "resultTime": "2024-05-01T12:00:01Z"},
        {"Datastream": {"@iot.id": ds[0]}, "result": 3.0, "phenomenonTime": "2024-05-01T12:00:02"},
        {"Datastream": {"@iot.id": ds[1]}, "result": "red", "phenomenonTime": (t + timedelta(seconds=3)).isoformat()},
        {"Datastream": {"@iot.id": ds[2]}, "result": {"a": [1, 2]}, "phenomenonTime": "2024-05-01T12:00:04Z"},
        {"Datastream": {"@iot.id": ds[2]}, "result": None, "phenomenonTime": "2024-05-01T12:00:05Z/2024-05-01T12:10:00Z",
         "parameters": {"k": "v"}, "resultQuality": ["ok"], "validTime": "2024-05-01T00:00:00Z/2024-05-02T00:00:00Z"},
        {"Datastream": {"@iot.id": ds[2]}, "result": True, "phenomenonTime": "2024-05-01T12:00:06Z"},
        {"Datastream": {"@iot.id": ds[0]}, "result": 7, "phenomenonTime": "2024-05-01T12:00:07Z"},
    ]


def _check_backends(engine):
    svc, ds = _twin(engine)
    items = _items(ds)
    with svc.write_transaction() as conn:
        fast = ing.ingest_observations(conn, items, principal=OP)
    assert all(isinstance(r, int) for r in fast), fast
    assert fast == sorted(fast)
    # the general path alone (each row forced through observation_values) stores the same values
    orig = ing._FAST_KEYS
    ing._FAST_KEYS = frozenset()
    try:
        with svc.write_transaction() as conn:
            slow = ing.ingest_observations(conn, items, principal=OP)
    finally:
        ing._FAST_KEYS = orig
    a, b = _stored(engine, fast), _stored(engine, slow)
    assert a == b
    # the FeatureOfInterest generated from the Thing's Location, once
    assert len({r[1] for r in a}) == 1 and a[0][1] is not None
    # statistics: the latest observation per stream and the time envelope
    with engine.connect() as c:
        st = {r.id: r for r in c.execute(sa.select(s.sta_datastreams))}
    assert st[ds[0]].last_observation_id == slow[7]
    assert st[ds[0]].phenomenon_time_start == datetime(2024, 5, 1, 12, tzinfo=UTC)
    assert st[ds[0]].result_time_end == datetime(2024, 5, 1, 12, 0, 1, tzinfo=UTC)
    assert st[ds[2]].phenomenon_time_end == datetime(2024, 5, 1, 12, 10, tzinfo=UTC)
    # the served JSON equals what the bulk notification publishes
    with engine.connect() as c:
        for oid in fast:
            served = svc.handle(StaRequest("GET", f"Observations({oid})", principal=OP)).body
            assert "code" not in served, (oid, served)
            row = c.execute(sa.select(*[s.sta_observations.c[n] for n in ing.COLUMNS])
                            .where(s.sta_observations.c.id == oid)).one()
            assert list(json.loads(observation_json(oid, list(row), svc.base_url)).items()) == list(served.items())


def test_fast_path_stores_what_the_general_path_stores_sqlite(engine):
    _check_backends(engine)


@pytest.mark.postgres
def test_fast_path_stores_what_the_general_path_stores_postgres(pg_schema_engine):
    _check_backends(pg_schema_engine)


def test_bulk_errors_are_per_row_and_nothing_stored_for_them(engine):
    svc, ds = _twin(engine)
    far = (datetime.now(UTC) + timedelta(days=3)).isoformat()
    items = [
        {"datastream_id": ds[0], "result": 1},
        {"datastream_id": ds[0], "result": "x"},  # a string for OM_Measurement
        {"datastream_id": ds[0], "result": 2, "phenomenonTime": far},
        {"datastream_id": ds[0], "result": 3, "phenomenonTime": "yesterday"},
        {"datastream_id": ds[0], "result": float("nan")},
        {"datastream_id": 999, "result": 4},
        {"datastream_id": ds[0], "result": 5, "colour": "red"},
        {"datastream_id": ds[0], "result": 6, "FeatureOfInterest": {"@iot.id": 12345}},
        {"datastream_id": ds[0], "result": 7},
    ]
    with svc.write_transaction() as conn:
        res = ing.ingest_observations(conn, items, principal=OP)
    ok = [r for r in res if isinstance(r, int)]
    assert len(ok) == 2 and isinstance(res[0], int) and isinstance(res[8], int)
    msgs = [str(r) for r in res]
    assert "needs a number" in msgs[1]
    assert "more than 1 day in the future" in msgs[2]
    assert "not an ISO 8601 time" in msgs[3]
    assert "finite" in msgs[4]
    assert res[5].status == 404
    assert "colour: unknown property" in msgs[6]
    assert res[7].status == 404
    with engine.connect() as c:
        assert c.execute(sa.select(sa.func.count()).select_from(s.sta_observations)).scalar() == 2
    # a key scoped to another Datastream is refused with 403 for every row of that stream
    key = ing.Principal("k", "operator", kind="apikey", datastreams=frozenset({ds[1]}))
    with svc.write_transaction() as conn:
        res = ing.ingest_observations(conn, [{"datastream_id": ds[0], "result": 1}] * 3, principal=key)
    assert [r.status for r in res] == [403, 403, 403]


def test_create_observations_many_streams_ids_and_latest(engine):
    svc, ds = _twin(engine, n_streams=30, kinds=("OM_Measurement",))
    t0 = datetime(2024, 1, 1, tzinfo=UTC)
    body = [{"Datastream": {"@iot.id": d}, "components": ["phenomenonTime", "result"],
             "dataArray": [[(t0 + timedelta(minutes=k)).isoformat(), k] for k in range(20)]} for d in ds]
    body[3]["dataArray"][5] = ["bad", 1]  # one refused row does not stop the others
    body[4]["dataArray"][6] = [1]
    r = svc.handle(StaRequest("POST", "CreateObservations", body=json.dumps(body).encode(), principal=OP))
    assert r.status == 201
    assert r.body[3 * 20 + 5] == "error" and r.body[4 * 20 + 6] == "error"
    ids = [int(u.rsplit("(", 1)[1][:-1]) for u in r.body if u != "error"]
    assert ids == sorted(ids) and len(set(ids)) == 598
    with engine.connect() as c:
        latest = dict(c.execute(sa.select(s.sta_datastreams.c.id, s.sta_observations.c.result_number)
                                .join(s.sta_observations, s.sta_observations.c.id == s.sta_datastreams.c.last_observation_id)).all())
    assert latest == dict.fromkeys(ds, 19.0)


def test_bulk_notifications_reach_row_listeners_and_plain_listeners(engine):
    svc, ds = _twin(engine, n_streams=1)
    got_rows, got_dicts = [], []
    svc.row_listeners.append(lambda rows, base: got_rows.extend(rows))
    svc.listeners.append(lambda name, body: got_dicts.append((name, body)))
    body = [{"Datastream": {"@iot.id": ds[0]}, "components": ["result"], "dataArray": [[1], [2]]}]
    assert svc.handle(StaRequest("POST", "CreateObservations", body=json.dumps(body).encode(), principal=OP)).status == 201
    assert [oid for oid, _ in got_rows] == [d["@iot.id"] for _, d in got_dicts]
    assert [d["result"] for _, d in got_dicts] == [1, 2]
    msgs = list(_messages([(_ROWS, (got_rows, svc.base_url))]))
    assert msgs[0][2][:2] == ["v1.1/Observations", f"v1.1/Datastreams({ds[0]})/Observations"]
    assert json.loads(msgs[1][1]) == {k: v for k, v in got_dicts[1][1].items() if k != "__links__"}


def test_publish_packet_is_valid_mqtt5():
    from paho.mqtt.packettypes import PacketTypes  # noqa: F401 - paho installed
    pkt = publish_packet("v1.1/Observations", b"x" * 300)
    assert pkt[0] == 0x30
    # remaining length 2 + 17 + 1 + 300 = 320 as a varint: 0xC0 0x02
    assert pkt[1:3] == bytes([0xC0, 0x02]) and len(pkt) == 3 + 320


# ---------------------------------------------------------------------- /CreateObservations columns


def test_sqlite_time_text_equals_formatting():
    t0 = datetime(2024, 5, 1, 12, 0, 1, 250000, tzinfo=UTC)
    texts = ["2024-05-01T12:00:01.250000+00:00", "2024-05-01T12:00:01.250000Z", "2024-05-01T12:00:01.250Z",
             "2024-05-01T12:00:01.250+00:00", "2024-05-01T12:00:01Z", "2024-05-01T12:00:01+00:00",
             "2024-05-01 12:00:01.250000+00:00", "2024-05-01T14:00:01.250000+02:00", "2024-05-01T12:00:01.25Z",
             "2024-05-01T12:00:01,250Z", "2024-05-01T12:00:01.250000", "20240501T120001Z", "2024-W18-3T12:00:01Z"]
    for text in texts:
        t = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith("Z") else text)
        t = t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)
        assert ing._sqlite_time_text(text, t) == ing._sqlite_time(t), text
    assert ing._sqlite_time(t0) == "2024-05-01 12:00:01.250000"


def _groups(ds):
    return [
        (ds[0], ["phenomenonTime", "result"], [
            ["2024-05-01T12:00:00Z", 1], ["2024-05-01T14:00:00.25+02:00", 2.5], ["2024-05-01T12:00:02", 3.0],
            ["2024-05-01T12:00:03.123Z", 4], ["2024-05-01T12:00:04.123456+00:00", 5], [None, 6]]),
        (ds[0], ["result", "resultTime", "phenomenonTime"], [
            [7, "2024-05-01T12:00:06Z", "2024-05-01T12:00:05Z"], [8, None, "2024-05-01T12:00:07.5Z"]]),
        (ds[1], ["phenomenonTime", "result"], [["2024-05-01T12:00:08Z", "red"]]),
        (ds[2], ["phenomenonTime", "result", "parameters"], [  # not a fast group: the general path
            ["2024-05-01T12:00:09Z/2024-05-01T12:10:00Z", {"a": [1, 2]}, {"k": "v"}], ["2024-05-01T12:00:10Z", True, None]]),
        (ds[2], ["result", "id"], [[None, 77]]),
    ]


def _check_data_array(engine):
    svc, ds = _twin(engine)
    groups = _groups(ds)
    now = datetime(2024, 5, 1, 13, tzinfo=UTC)
    with svc.write_transaction() as conn:
        got_rows: list = []
        fast = ing.ingest_data_array(conn, groups, principal=OP, now=now, rows_out=got_rows)
    assert all(isinstance(r, int) for r in fast), [str(r) for r in fast]
    assert fast == list(range(fast[0], fast[0] + len(fast)))
    # the same Observations as dicts through the general path alone
    items = []
    for d, comps, rows in groups:
        for row in rows:
            item = {"datastream_id": d}
            for c, v in zip(comps, row, strict=True):
                if c != "id":
                    item[c] = v
            items.append(item)
    orig = ing._FAST_KEYS
    ing._FAST_KEYS = frozenset()
    try:
        with svc.write_transaction() as conn:
            slow = ing.ingest_observations(conn, items, principal=OP, now=now)
    finally:
        ing._FAST_KEYS = orig
    assert _stored(engine, fast) == _stored(engine, slow)
    # notifications carry the Python values that were stored
    with engine.connect() as c:
        for oid, row in got_rows:
            stored = c.execute(sa.select(*[s.sta_observations.c[n] for n in ing.COLUMNS])
                               .where(s.sta_observations.c.id == oid)).one()
            assert list(stored) == row, oid
    # statistics: the latest is the row without phenomenonTime (now), of the later request
    with engine.connect() as c:
        st = {r.id: r for r in c.execute(sa.select(s.sta_datastreams))}
    assert st[ds[0]].last_observation_id == slow[5] and st[ds[0]].last_phenomenon_time == now
    assert st[ds[1]].last_observation_id == slow[8]
    assert st[ds[0]].phenomenon_time_start == datetime(2024, 5, 1, 12, tzinfo=UTC)
    assert st[ds[0]].result_time_end == datetime(2024, 5, 1, 12, 0, 6, tzinfo=UTC)


def _uniform_groups(ds):
    """Groups whose columns are uniform, so that the whole-group path (``_bulk_rows``) takes them."""
    def col(fmt, k=3):
        return [(datetime(2024, 5, 1, 12, tzinfo=UTC) + timedelta(seconds=i, microseconds=123456 * i)).strftime(fmt)
                for i in range(k)]
    return [
        (ds[0], ["phenomenonTime", "result"], [[t, float(i)] for i, t in enumerate(col("%Y-%m-%dT%H:%M:%SZ"))]),
        (ds[0], ["phenomenonTime", "result"], [[t, i] for i, t in enumerate(col("%Y-%m-%dT%H:%M:%S.%f+00:00"))]),
        (ds[0], ["result", "phenomenonTime"], [[i, t[:23] + "Z"] for i, t in enumerate(col("%Y-%m-%dT%H:%M:%S.%f"))]),
        (ds[0], ["phenomenonTime", "result", "resultTime"],
         [[t, i + 0.5, t] for i, t in enumerate(col("%Y-%m-%d %H:%M:%S-00:00"))]),
        (ds[0], ["result"], [[1.5], [2]]),
        (ds[1], ["phenomenonTime", "result"], [[t, f"c{i}"] for i, t in enumerate(col("%Y-%m-%dT%H:%M:%SZ"))]),
        (ds[2], ["phenomenonTime", "result"], [[t, v] for t, v in zip(col("%Y-%m-%dT%H:%M:%SZ"), [3, "x", 4.5])]),
        (ds[3], ["phenomenonTime", "result"], [[t, i] for i, t in enumerate(col("%Y-%m-%dT%H:%M:%SZ"))]),
    ]


def test_whole_group_path_stores_what_the_general_path_stores(engine, monkeypatch):
    svc, ds = _twin(engine, n_streams=4, kinds=("OM_Measurement", "OM_CategoryObservation", "OM_Observation",
                                                   "OM_CountObservation"))
    taken = []
    bulk = ing._bulk_rows
    monkeypatch.setattr(ing, "_bulk_rows", lambda *a, **k: taken.append(bulk(*a, **k) is not None) or bulk(*a, **k))
    groups = _uniform_groups(ds)
    now = datetime(2024, 5, 1, 13, tzinfo=UTC)
    with svc.write_transaction() as conn:
        fast = ing.ingest_data_array(conn, groups, principal=OP, now=now)
    assert taken == [True] * 6 + [False, True]  # numbers and text mixed in one column: row by row
    assert all(isinstance(r, int) for r in fast), [str(r) for r in fast]
    items = [{"datastream_id": d} | dict(zip(comps, row, strict=True)) for d, comps, rows in groups for row in rows]
    monkeypatch.setattr(ing, "_FAST_KEYS", frozenset())
    with svc.write_transaction() as conn:
        slow = ing.ingest_observations(conn, items, principal=OP, now=now)
    assert _stored(engine, fast) == _stored(engine, slow)


def test_whole_group_path_hands_irregular_groups_to_the_row_path(engine):
    far = (datetime.now(UTC) + timedelta(days=3)).isoformat()
    cases = [
        [["2024-01-01T00:00:00Z", 1], ["2024-01-01T00:00:01Z"]],  # a short row
        [["2024-01-01T00:00:00Z", 1], ["2024-01-01T00:00:01+02:00", 2]],  # not UTC
        [["2024-01-01T00:00:00Z", 1], ["2024-01-01T00:00:01.5Z", 2]],  # two layouts
        [["2024-01-01T00:00:00Z", 1], [far, 2]],  # the far future
        [["2024-01-01T00:00:00Z", 1], [None, 2]],  # no time: now
        [["2024-01-01T00:00:00Z", 1], ["2024-01-01T00:00:00Z/2024-01-01T00:01:00Z", 2]],  # an interval
        [["2024-01-01T00:00:00Z", 1], ["2024-01-01T00:00:01Z", float("nan")]],
        [["2024-01-01T00:00:00Z", 1], ["2024-01-01T00:00:01Z", True]],
        [["20240101T000000Z", 1], ["20240101T000001Z", 2]],  # basic format: formatted row by row
    ]
    now = datetime.now(UTC)
    for rows in cases:
        got = ing._bulk_rows(rows, 2, 1, None, 1, 0, -1, numeric=True, integer=False, stringy=False,
                             limit=now + ing.MAX_FUTURE, now_stored="now", sqlite=True)
        assert got is None, rows
    got = ing._bulk_rows([["2024-01-01T00:00:00Z", 1]], 2, 7, 3, 1, 0, -1, numeric=True, integer=False,
                         stringy=False, limit=now + ing.MAX_FUTURE, now_stored="now", sqlite=True)
    assert got == [(7, 3, "2024-01-01 00:00:00.000000", None, None, None, None, s.RESULT_NUMBER, 1.0, None,
                    "null", "null", "null")]


def test_data_array_columns_store_what_the_general_path_stores_sqlite(engine):
    _check_data_array(engine)


@pytest.mark.postgres
def test_data_array_columns_store_what_the_general_path_stores_postgres(pg_schema_engine):
    _check_data_array(pg_schema_engine)


def test_data_array_refuses_rows_alone_and_whole_requests_for_scope(engine):
    svc, ds = _twin(engine, n_streams=2, kinds=("OM_Measurement", "OM_CountObservation"))
    far = (datetime.now(UTC) + timedelta(days=3)).isoformat()
    body = [
        {"Datastream": {"@iot.id": ds[0]}, "components": ["phenomenonTime", "result"], "dataArray": [
            ["2024-01-01T00:00:00Z", 1], ["2024-01-01T00:00:01Z"], "x", ["yesterday", 2], [far, 3],
            ["2024-01-01T00:00:02Z", "x"], ["2024-01-01T00:00:03Z", float("inf")], ["2024-01-01T00:00:04Z", 10**400],
            ["2024-01-01T00:00:05Z", 5]]},
        {"Datastream": {"@iot.id": ds[1]}, "components": ["result"], "dataArray": [[2.5], [3]]},
        {"Datastream": {"@iot.id": 9999}, "components": ["result"], "dataArray": [[1]]},
        {"Datastream": {"@iot.id": ds[0]}, "components": ["result", "result"], "dataArray": [["x", 8]]},
    ]
    r = svc.handle(StaRequest("POST", "CreateObservations", body=json.dumps(body).encode(), principal=OP))
    assert r.status == 201, r.body
    ok = [i for i, u in enumerate(r.body) if u != "error"]
    assert ok == [0, 8, 10, 12]
    with engine.connect() as c:
        stored = c.execute(sa.select(s.sta_observations.c.result_number).order_by(s.sta_observations.c.id)).scalars().all()
    assert stored == [1.0, 5.0, 3.0, 8.0]  # duplicate components: the last one counts, as for a dict
    # a key that may not write one of the streams refuses the whole request, nothing stored
    key = ing.Principal("k", "operator", kind="apikey", datastreams=frozenset({ds[0]}))
    body = [{"Datastream": {"@iot.id": ds[0]}, "components": ["result"], "dataArray": [[1]]},
            {"Datastream": {"@iot.id": ds[1]}, "components": ["result"], "dataArray": [[1]]}]
    r = svc.handle(StaRequest("POST", "CreateObservations", body=json.dumps(body).encode(), principal=key))
    assert r.status == 403 and str(ds[1]) in r.body["message"]
    with engine.connect() as c:
        assert c.execute(sa.select(sa.func.count()).select_from(s.sta_observations)).scalar() == 4


def test_fast_notification_json_equals_the_general_one():
    from citytwin.sensors.mqtt import _fast_observation_json, observation_json

    base = 'http://h:1/sta/v1.1?q="x"'
    fast = _fast_observation_json(base)
    t = datetime(2024, 5, 1, 12, 0, 1, tzinfo=UTC)
    row = [3, None, t, None, None, None, None, s.RESULT_NUMBER, 2.0, None, None, None, None]
    variants = [{8: 2.5}, {8: -0.0}, {8: 1e300}, {8: 2.0**53}, {8: -7.0}, {2: t.replace(microsecond=250)}, {1: 9}]
    for change in variants:
        r = list(row)
        for k, v in change.items():
            r[k] = v
        assert fast(11, r) == observation_json(11, r, base), change
        assert json.loads(fast(11, r))["@iot.selfLink"] == f"{base}/Observations(11)"
    # anything else is left to the general formatter
    others = [{8: float("nan")}, {8: float("inf")}, {7: s.RESULT_STRING, 8: None, 9: "a"}, {3: t}, {4: t},
              {11: {"q": 1}}, {12: {"p": 1}}, {2: t.replace(tzinfo=None)}, {8: 3}]
    for change in others:
        r = list(row)
        for k, v in change.items():
            r[k] = v
        assert fast(11, r) is None, change


def test_varint_is_mqtt_remaining_length():
    from citytwin.sensors.mqtt import _varint

    def ref(n):  # MQTT 5 §1.5.5
        out = bytearray()
        while True:
            b, n = n % 128, n // 128
            out.append(b | 0x80 if n else b)
            if not n:
                return bytes(out)
    for n in (0, 1, 127, 128, 300, 16383, 16384, 2_097_151, 2_097_152, 268_435_455):
        assert _varint(n) == ref(n), n


def test_stats_by_runs_equal_the_row_by_row_reduction():
    """_stats reduces runs of one Datastream column-wise; the result is the plain row-by-row one."""
    import random

    def reference(rows, ids):
        per = {}
        for r, oid in zip(rows, ids, strict=True):
            t0, t1, rt = r[2], r[3] or r[2], r[4]
            st = per.setdefault(r[0], [t0, t1, (t0, oid), rt, rt])
            st[0], st[1], st[2] = min(st[0], t0), max(st[1], t1), max(st[2], (t0, oid))
            if rt is not None:
                st[3] = rt if st[3] is None else min(st[3], rt)
                st[4] = rt if st[4] is None else max(st[4], rt)
        return per

    rnd = random.Random(7)
    base = datetime(2024, 1, 1, tzinfo=UTC)
    for _ in range(200):
        rows, ids, oid = [], [], rnd.randrange(1, 100)
        for _ in range(rnd.randrange(1, 6)):  # runs, a Datastream may come back in a later run
            ds = rnd.randrange(1, 4)
            for _ in range(rnd.randrange(1, 8)):
                t0 = base + timedelta(seconds=rnd.randrange(5))  # ties on purpose
                end = t0 + timedelta(seconds=rnd.randrange(1, 9)) if rnd.random() < 0.3 else None
                rt = base + timedelta(seconds=rnd.randrange(9)) if rnd.random() < 0.5 else None
                rows.append((ds, None, t0, end, rt))
                oid += rnd.randrange(1, 3)
                ids.append(oid)
        assert ing._stats(rows, ids) == reference(rows, ids)
