"""Ingest benchmark of the SensorThings middleware; prints JSON figures.

Usage: ``.venv/bin/python benchmarks/bench_ingest.py [--n 100000] [--pg URL|""] [--mqtt HOST:PORT|""]``

The server (uvicorn, in this process) and the load generators (separate processes, with request
bodies encoded before the clock starts) do not share an interpreter, so the figures are the
server's. 1,000 Datastreams; every figure uses all of them:

* ``create_observations_obs_per_s``: POST /CreateObservations, 2 client processes (``--clients``),
  each request 50 Datastreams x 100 rows = 5,000 Observations; after it every Datastream has data.
* ``with_mqtt_notifications_create_observations_*``: one more batched run on a server with the
  MQTT bridge (``--mqtt``), which publishes every created Observation to its two topics; the
  figures above are of the default deployment, without a broker.
* ``single_post_obs_per_s``: POST /Observations one at a time, 4 client threads.
* ``mqtt_obs_per_s``: QoS 1 publishes to ``v1.1/Datastreams(ID)/Observations`` over all streams,
  with ``mqtt_server_cpu_us_per_obs`` and ``mqtt_messages_per_commit``; closed loop (at most ``--mqtt-window`` published but not yet stored, so that the broker's
  default queue limit of 1,000 messages per client never drops any), counted when committed.
* ``raw_*_obs_per_s``: the same rows (same values, same table, same database) inserted in one
  transaction, timed up to its commit (the server, too, acknowledges only after committing):
  ``raw_executemany`` through the driver (``cursor.executemany`` of prepared tuples, the limit
  asked for), ``raw_sqlalchemy`` through SQLAlchemy Core ``executemany``, and on PostgreSQL
  ``raw_copy`` (``COPY``, the database's fastest path).
* The batched phase runs ``--repeat`` times (default 3), each run followed by the raw inserts of
  its rows, so that each fraction compares two figures taken moments apart; the figures are the
  medians over the runs, ``*_runs`` lists every run's.
* ``latest_of_1000_ms``: the latest Observation of all 1,000 Datastreams in one query.
* ``*_cpu_us_per_obs``: CPU seconds of this process (the server; on PostgreSQL without the
  database's own processes) per Observation, and on SQLite the raw insert's CPU per row as a
  fraction of the server's: figures that a busy machine does not change much, unlike the rates.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import socket
import statistics
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import sqlalchemy as sa
import uvicorn

from citytwin import security
from citytwin.api.app import create_app, freeze_startup_heap
from citytwin.sensors import keys
from citytwin.sensors import schema as s
from citytwin.sensors.ingest import COLUMNS
from citytwin.settings import Settings
from citytwin.store import make_engine, migrate

OM = "http://www.opengis.net/def/observationType/OGC-OM/2.0/OM_Measurement"
PW = "benchmark-password-1"
N_STREAMS = 1000
# client processes of the batched phase (--clients): the server's interpreter uses about one core
# of this 2-core machine, the clients share the other; two keep one request always waiting
CLIENTS = 2
SINGLE_THREADS = 4  # client threads of the single-POST phase


def _port() -> int:
    with socket.socket() as so:
        so.bind(("127.0.0.1", 0))
        return so.getsockname()[1]


def _serve(engine, data_dir: Path, mqtt_url: str | None = None):
    app = create_app(Settings(data_dir=data_dir, secret_key="b" * 40, mqtt_url=mqtt_url), engine=engine)
    freeze_startup_heap()  # as `citytwin serve` does
    port = _port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    th = threading.Thread(target=server.run, daemon=True)
    th.start()
    while not server.started:
        time.sleep(0.05)
    return app, server, th, f"http://127.0.0.1:{port}"


def _setup(base: str, n_streams: int) -> tuple[dict, list[int]]:
    tok = httpx.post(f"{base}/api/auth/token", data={"username": "bench", "password": PW}).json()["access_token"]
    hdr = {"Authorization": f"Bearer {tok}"}
    body = {"name": "bench", "description": "b", "Datastreams": [{
        "name": f"ds{i}", "description": "d", "observationType": OM, "unitOfMeasurement": {"symbol": "{count}"},
        "Sensor": {"name": "s", "description": "d", "encodingType": "text/html", "metadata": "m"} if i == 0 else {"@iot.id": 1},
        "ObservedProperty": {"name": "p", "definition": "d", "description": "d"} if i == 0 else {"@iot.id": 1},
    } for i in range(n_streams)]}
    r = httpx.post(f"{base}/sta/v1.1/Things", json=body, headers=hdr, timeout=300)
    assert r.status_code == 201, r.text
    ids = [d["@iot.id"] for d in httpx.get(f"{base}/sta/v1.1/Datastreams?$top=10000&$select=id", headers=hdr, timeout=60).json()["value"]]
    return hdr, ids


def _dataset(n: int, ds: list[int], t0: datetime, rows_per_group: int = 100, groups_per_request: int = 50):
    """Requests of the batched phase: (datastream, [(time, value)...]) groups; every stream gets rows."""
    requests, k = [], 0
    per_stream = max(1, n // len(ds))
    rows_per_group = min(rows_per_group, per_stream)
    groups = [(d, b) for b in range(0, per_stream, rows_per_group) for d in ds]
    for g in range(0, len(groups), groups_per_request):
        req = []
        for d, b in groups[g : g + groups_per_request]:
            rows = [((t0 + timedelta(seconds=b + i)).isoformat(), float(k + i)) for i in range(rows_per_group)]
            k += rows_per_group
            req.append((d, rows))
        requests.append(req)
    return requests


def _post_bodies(base: str, hdr: dict, bodies: list[bytes], path: str, ready, go) -> None:
    """Client process: POST pre-encoded bodies one after another (201 expected)."""
    with httpx.Client(headers={**hdr, "Content-Type": "application/json"}, timeout=600) as c:
        ready.set()
        go.wait()
        for body in bodies:
            r = c.post(f"{base}{path}", content=body)
            assert r.status_code == 201, r.text[:300]
            # a refused row is the string "error" in the response array; URLs never hold it quoted
            assert b'"error"' not in r.content, "a row was refused"


def _run_clients(base: str, hdr: dict, per_client: list[list[bytes]], path: str) -> float:
    ctx = mp.get_context("spawn")
    go = ctx.Event()
    procs = []
    for bodies in per_client:
        ready = ctx.Event()
        p = ctx.Process(target=_post_bodies, args=(base, hdr, bodies, path, ready, go))
        p.start()
        ready.wait(120)
        procs.append(p)
    start = time.perf_counter()
    go.set()
    for p in procs:
        p.join()
        assert p.exitcode == 0, "a client failed"
    return time.perf_counter() - start


def _single_posts(base: str, hdr: dict, ds: list[int], m: int, ready, go) -> None:
    bodies = [json.dumps({"result": i, "Datastream": {"@iot.id": ds[i % len(ds)]}}).encode() for i in range(m)]

    def one(part):
        with httpx.Client(headers={**hdr, "Content-Type": "application/json"}, timeout=60) as c:
            for b in part:
                assert c.post(f"{base}/sta/v1.1/Observations", content=b).status_code == 201

    ready.set()
    go.wait()
    ths = [threading.Thread(target=one, args=(bodies[w::SINGLE_THREADS],)) for w in range(SINGLE_THREADS)]
    [t.start() for t in ths]
    [t.join() for t in ths]


def _mqtt_publisher(host: str, port: int, ds: list[int], n: int, window: int, key: str, progress, ready, go) -> None:
    import paho.mqtt.client as pm
    from paho.mqtt.enums import CallbackAPIVersion
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    payloads = [(f"v1.1/Datastreams({ds[i % len(ds)]})/Observations", json.dumps({"result": i})) for i in range(n)]
    props = Properties(PacketTypes.PUBLISH)
    props.UserProperty = ("authorization", f"Bearer {key}")  # the sensors' API key, as the bridge requires
    c = pm.Client(CallbackAPIVersion.VERSION2, protocol=pm.MQTTv5)
    c.max_inflight_messages_set(1000)
    c.connect(host, port)
    c.loop_start()
    ready.set()
    go.wait()
    base = progress.value
    infos = []
    for i, (topic, payload) in enumerate(payloads):
        while i - (progress.value - base) > window:
            time.sleep(0.0005)
        infos.append(c.publish(topic, payload, qos=1, properties=props))
    for info in infos:
        info.wait_for_publish(60)
    c.loop_stop()
    c.disconnect()


def _db_rows(requests, dialect: str) -> list[tuple]:
    """The rows of the batched phase as the ingest stores them (values in COLUMNS order)."""
    out = []
    for req in requests:
        for d, rows in req:
            for t, v in rows:
                pt = datetime.fromisoformat(t).astimezone(UTC)
                out.append((d, None, pt.isoformat(" ", "microseconds")[:26] if dialect == "sqlite" else pt,
                            None, None, None, None, s.RESULT_NUMBER, v, None, "null", "null", "null"))
    return out


def _raw(engine, rows: list[tuple]) -> dict:
    out = {}
    dialect = engine.dialect.name
    cols = ", ".join(COLUMNS)
    ph = ", ".join(["?" if dialect == "sqlite" else "%s"] * len(COLUMNS))
    with engine.connect() as c:  # the clock stops after the commit, as the server's acknowledgement does
        c.exec_driver_sql("SELECT 1").all()  # a live driver connection before the clock starts
        c.commit()
        start, cpu = time.perf_counter(), time.process_time()
        with c.begin():
            cur = c.connection.driver_connection.cursor()
            cur.executemany(f"INSERT INTO sta_observations ({cols}) VALUES ({ph})", rows)
            cur.close()
    out["raw_executemany_obs_per_s"] = round(len(rows) / (time.perf_counter() - start))
    out["raw_executemany_cpu_us_per_obs"] = round((time.process_time() - cpu) / len(rows) * 1e6, 2)
    dicts = [dict(zip(COLUMNS, r, strict=True)) | {"phenomenon_time": datetime.fromisoformat(r[2]).replace(tzinfo=UTC)
                                                   if isinstance(r[2], str) else r[2],
                                                   "result_json": None, "result_quality": None, "parameters": None}
             for r in rows]
    start = time.perf_counter()
    with engine.begin() as c:
        c.execute(s.sta_observations.insert(), dicts)
    out["raw_sqlalchemy_obs_per_s"] = round(len(rows) / (time.perf_counter() - start))
    if dialect == "postgresql":
        start = time.perf_counter()
        with engine.begin() as c, c.connection.driver_connection.cursor() as cur:
            with cur.copy(f"COPY sta_observations ({cols}) FROM STDIN") as cp:
                for r in rows:
                    cp.write_row(r)
        out["raw_copy_obs_per_s"] = round(len(rows) / (time.perf_counter() - start))
    return out


def _batched_run(engine, base: str, hdr: dict, ds: list[int], n: int, t0: datetime, clients: int) -> tuple[int, dict]:
    """One batched run through /CreateObservations, then the raw inserts of the same rows."""
    requests = _dataset(n, ds, t0)
    bodies = [json.dumps([{"Datastream": {"@iot.id": d}, "components": ["phenomenonTime", "result"],
                           "dataArray": rows} for d, rows in req]).encode() for req in requests]
    n_obs = sum(len(rows) for req in requests for _, rows in req)
    cpu = time.process_time()  # this process is the server; the clients are other processes
    elapsed = _run_clients(base, hdr, [bodies[w::clients] for w in range(clients)], "/sta/v1.1/CreateObservations")
    cpu = time.process_time() - cpu
    run = {"create_observations_obs_per_s": n_obs / elapsed,
           "create_observations_server_cpu_us_per_obs": cpu / n_obs * 1e6}
    run.update(_raw(engine, _db_rows(requests, engine.dialect.name)))
    for k in ("raw_executemany", "raw_sqlalchemy", "raw_copy"):
        if f"{k}_obs_per_s" in run:
            run[f"create_observations_fraction_of_{k}"] = run["create_observations_obs_per_s"] / run[f"{k}_obs_per_s"]
    if engine.dialect.name == "sqlite":  # SQLite works in this process: CPU per row, whatever the load
        run["create_observations_cpu_fraction_of_raw_executemany"] = (
            run["raw_executemany_cpu_us_per_obs"] / run["create_observations_server_cpu_us_per_obs"])
    return n_obs, run


def bench_db(url: str | None, *, n: int, mqtt: str | None, mqtt_n: int, mqtt_window: int, clients: int = CLIENTS,
             repeat: int = 3) -> dict:
    tmp = Path(tempfile.mkdtemp())
    schema = None
    if url:  # a fresh schema on PostgreSQL, set per connection in the connection string (a SET in
        # a connect hook would be rolled back with the pool's reset on the first check-in)
        schema = f"bench_{uuid.uuid4().hex[:8]}"
        admin = sa.create_engine(url)
        with admin.begin() as c:
            c.exec_driver_sql(f"CREATE SCHEMA {schema}")
        url = f"{url}{'&' if '?' in url else '?'}options=-csearch_path%3D{schema}"
    engine = make_engine(url or f"sqlite:///{tmp / 'bench.sqlite'}")
    migrate(engine)
    with engine.begin() as c:
        security.create_user(c, name="bench", password=PW, role="operator")
    # the batched, single-POST and latest-value phases run on a server without a broker (the
    # default deployment); with --mqtt a second server on the same database, with the bridge
    # publishing every created Observation, repeats one batched run and then takes MQTT ingest
    app, server, th, base = _serve(engine, tmp)
    out: dict = {"create_observations_clients": clients}
    try:
        hdr, ds = _setup(base, N_STREAMS)
        t0 = datetime.now(UTC) - timedelta(days=1)
        # batched via /CreateObservations, each run followed by the raw insert of its rows (the
        # limit), paired so that a change of the machine's load between them affects both alike
        runs = []
        for r in range(repeat):
            n_obs, run = _batched_run(engine, base, hdr, ds, n, t0 - timedelta(days=r + 1), clients)
            runs.append(run)
        out["create_observations_n"] = n_obs
        out["repeats"] = repeat
        for k in runs[0]:  # the median over the runs, and every run's figure
            vals = [run[k] for run in runs]
            digits = 2 if "fraction" in k or "cpu" in k else 0
            out[k] = round(statistics.median(vals), digits) if digits else round(statistics.median(vals))
            out[f"{k}_runs"] = [round(v, digits) if digits else round(v) for v in vals]
        # single POSTs
        m = 2000
        ctx = mp.get_context("spawn")
        ready, go = ctx.Event(), ctx.Event()
        p = ctx.Process(target=_single_posts, args=(base, hdr, ds, m, ready, go))
        p.start()
        ready.wait(120)
        start = time.perf_counter()
        go.set()
        p.join()
        assert p.exitcode == 0
        out["single_post_obs_per_s"] = round(m / (time.perf_counter() - start))
        # latest observation of 1,000 Datastreams in one query (all of them have data)
        ob, dst = s.sta_observations, s.sta_datastreams
        q = (sa.select(dst.c.id, ob.c.phenomenon_time, ob.c.result_number)
             .join(ob, ob.c.id == dst.c.last_observation_id).where(dst.c.id.in_(ds[:N_STREAMS])))
        with engine.connect() as c:
            c.execute(q).all()
            start = time.perf_counter()
            for _ in range(20):
                got = c.execute(q).all()
            out["latest_of_1000_ms"] = round((time.perf_counter() - start) / 20 * 1000, 2)
            out["latest_of_1000_rows"] = len(got)
        if mqtt:
            server.should_exit = True
            th.join(timeout=10)
            app, server, th, base = _serve(engine, tmp, mqtt_url=f"mqtt://{mqtt}")
            _, run = _batched_run(engine, base, hdr, ds, n, t0 - timedelta(days=repeat + 1), clients)
            out.update({f"with_mqtt_notifications_{k}": round(v, 2) if "fraction" in k or "cpu" in k else round(v)
                        for k, v in run.items() if k.startswith("create_observations")})
            out.update(bench_mqtt(app, mqtt, ds, n=mqtt_n, window=mqtt_window))
            for k in ("raw_executemany", "raw_sqlalchemy", "raw_copy"):
                if f"{k}_obs_per_s" in out:
                    out[f"mqtt_fraction_of_{k}"] = round(out["mqtt_obs_per_s"] / out[f"{k}_obs_per_s"], 3)
    finally:
        server.should_exit = True
        th.join(timeout=10)
        engine.dispose()
        if schema:
            with admin.begin() as c:
                c.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
            admin.dispose()
    return out


def bench_mqtt(app, mqtt: str, ds: list[int], *, n: int, window: int) -> dict:
    bridge = app.state.mqtt_bridge
    assert bridge.connected.wait(10), "MQTT bridge not connected"
    host, port = mqtt.split(":")
    ctx = mp.get_context("spawn")
    progress = ctx.Value("q", bridge.accepted, lock=False)
    ready, go = ctx.Event(), ctx.Event()
    with app.state.engine.begin() as conn:
        key = keys.create_key(conn, name=f"bench-mqtt-{uuid.uuid4().hex[:8]}", datastreams=ds)[1]
    p = ctx.Process(target=_mqtt_publisher, args=(host, int(port), ds, n, window, key, progress, ready, go))
    p.start()
    ready.wait(120)
    before, batches = bridge.accepted, bridge.batches
    cpu = time.process_time()
    start = last_change = time.perf_counter()
    go.set()
    seen = before
    while bridge.accepted - before < n and time.perf_counter() - last_change < 10:
        progress.value = bridge.accepted
        if bridge.accepted != seen:
            seen, last_change = bridge.accepted, time.perf_counter()
        time.sleep(0.002)  # this loop shares the server's interpreter: poll gently
    elapsed = last_change - start
    cpu = time.process_time() - cpu
    p.join(timeout=60)
    got = bridge.accepted - before
    return {"mqtt_obs_per_s": round(got / elapsed), "mqtt_accepted": got, "mqtt_published": n,
            "mqtt_rejected_foreign": len(bridge.rejected),
            "mqtt_server_cpu_us_per_obs": round(cpu / max(1, got) * 1e6, 1),
            "mqtt_messages_per_commit": round(got / max(1, bridge.batches - batches), 1)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--pg", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    ap.add_argument("--mqtt", default="127.0.0.1:1883")
    ap.add_argument("--mqtt-n", type=int, default=20_000)
    ap.add_argument("--mqtt-window", type=int, default=500)
    ap.add_argument("--clients", type=int, default=CLIENTS, help="client processes of the batched phase")
    ap.add_argument("--repeat", type=int, default=3, help="runs of the batched phase and the raw insert (median)")
    ap.add_argument("--sqlite", action=argparse.BooleanOptionalAction, default=True, help="run on SQLite (default)")
    a = ap.parse_args()
    kw = {"n": a.n, "mqtt": a.mqtt or None, "mqtt_n": a.mqtt_n, "mqtt_window": a.mqtt_window, "clients": a.clients,
          "repeat": a.repeat}
    result = {"sqlite": bench_db(None, **kw)} if a.sqlite else {}
    if a.pg:
        result["postgresql"] = bench_db(a.pg, **kw)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
