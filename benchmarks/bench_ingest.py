"""Ingest benchmark of the SensorThings middleware; prints JSON figures.

Usage: ``.venv/bin/python benchmarks/bench_ingest.py [--n 100000] [--pg URL] [--mqtt HOST:PORT]``

Figures: observations/s via POST /CreateObservations (SQLite, PostgreSQL), via single POSTs,
via MQTT; the raw insert rate of the same rows (executemany into the same table, the limit);
and the latest Observation of 1,000 Datastreams in one query (ms).
"""

from __future__ import annotations

import argparse
import json
import socket
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
from citytwin.api.app import create_app
from citytwin.sensors import schema as s
from citytwin.sensors.ingest import insert_rows, result_columns
from citytwin.settings import Settings
from citytwin.store import make_engine, migrate

OM = "http://www.opengis.net/def/observationType/OGC-OM/2.0/OM_Measurement"
PW = "benchmark-password-1"


def _port() -> int:
    with socket.socket() as so:
        so.bind(("127.0.0.1", 0))
        return so.getsockname()[1]


def _serve(engine, data_dir: Path, mqtt_url: str | None = None):
    app = create_app(Settings(data_dir=data_dir, secret_key="b" * 40, mqtt_url=mqtt_url), engine=engine)
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
    r = httpx.post(f"{base}/sta/v1.1/Things", json=body, headers=hdr, timeout=120)
    assert r.status_code == 201, r.text
    ids = [d["@iot.id"] for d in httpx.get(f"{base}/sta/v1.1/Datastreams?$top=10000&$select=id", headers=hdr, timeout=60).json()["value"]]
    return hdr, ids


def bench_db(url: str | None, *, n: int, batch: int, mqtt: str | None) -> dict:
    tmp = Path(tempfile.mkdtemp())
    engine = make_engine(url or f"sqlite:///{tmp / 'bench.sqlite'}")
    if url:  # fresh schema on PostgreSQL
        schema = f"bench_{uuid.uuid4().hex[:8]}"
        with engine.begin() as c:
            c.exec_driver_sql(f"CREATE SCHEMA {schema}")

        @sa.event.listens_for(engine, "connect")
        def _sp(dbapi_conn, _r):
            with dbapi_conn.cursor() as cur:
                cur.execute(f"SET search_path TO {schema}")

        engine.dispose()
    migrate(engine)
    with engine.begin() as c:
        security.create_user(c, name="bench", password=PW, role="operator")
    app, server, th, base = _serve(engine, tmp, mqtt_url=f"mqtt://{mqtt}" if mqtt else None)
    out: dict = {}
    try:
        hdr, ds = _setup(base, 1000)
        t0 = datetime.now(UTC) - timedelta(days=1)
        # batched via /CreateObservations, 4 parallel clients on different Datastreams
        per = n // 4

        def worker(w: int):
            with httpx.Client(headers=hdr, timeout=300) as c:
                for b in range(0, per, batch):
                    rows = [[(t0 + timedelta(milliseconds=w * per + b + i)).isoformat(), float(i)] for i in range(batch)]
                    r = c.post(f"{base}/sta/v1.1/CreateObservations", json=[
                        {"Datastream": {"@iot.id": ds[(w * 7 + b // batch) % len(ds)]}, "components": ["phenomenonTime", "result"], "dataArray": rows}])
                    assert r.status_code == 201

        start = time.perf_counter()
        ths = [threading.Thread(target=worker, args=(w,)) for w in range(4)]
        [t.start() for t in ths]
        [t.join() for t in ths]
        out["create_observations_obs_per_s"] = round(4 * per / (time.perf_counter() - start))
        # single POSTs
        m = 2000
        start = time.perf_counter()

        def single(w: int):
            with httpx.Client(headers=hdr, timeout=60) as c:
                for i in range(m // 4):
                    assert c.post(f"{base}/sta/v1.1/Observations", json={"result": i, "Datastream": {"@iot.id": ds[w]}}).status_code == 201

        ths = [threading.Thread(target=single, args=(w,)) for w in range(4)]
        [t.start() for t in ths]
        [t.join() for t in ths]
        out["single_post_obs_per_s"] = round(m / (time.perf_counter() - start))
        # raw insert rate of the same rows (the limit)
        rows = [{"datastream_id": ds[0], "feature_id": None, "phenomenon_time": t0 + timedelta(seconds=i), "phenomenon_time_end": None,
                 "result_time": None, "valid_time_start": None, "valid_time_end": None, "result_quality": None, "parameters": None,
                 **result_columns(float(i), OM)} for i in range(n // 2)]
        start = time.perf_counter()
        with engine.begin() as c:
            for b in range(0, len(rows), batch):
                insert_rows(c, rows[b : b + batch])
        out["raw_insert_obs_per_s"] = round(len(rows) / (time.perf_counter() - start))
        out["create_observations_fraction_of_raw"] = round(out["create_observations_obs_per_s"] / out["raw_insert_obs_per_s"], 2)
        # latest observation of 1,000 Datastreams in one query
        ob, dst = s.sta_observations, s.sta_datastreams
        q = sa.select(dst.c.id, ob.c.phenomenon_time, ob.c.result_number).join(ob, ob.c.id == dst.c.last_observation_id).where(dst.c.id.in_(ds[:1000]))
        with engine.connect() as c:
            c.execute(q).all()
            start = time.perf_counter()
            for _ in range(10):
                got = c.execute(q).all()
            out["latest_of_1000_ms"] = round((time.perf_counter() - start) / 10 * 1000, 2)
            out["latest_of_1000_rows"] = len(got)
        if mqtt:
            out.update(bench_mqtt(app, mqtt, ds, engine))
    finally:
        server.should_exit = True
        th.join(timeout=10)
    return out


def bench_mqtt(app, mqtt: str, ds: list[int], engine, n: int = 20000) -> dict:
    import paho.mqtt.client as pm
    from paho.mqtt.enums import CallbackAPIVersion

    bridge = app.state.mqtt_bridge
    bridge.connected.wait(10)
    before = bridge.accepted
    host, port = mqtt.split(":")
    c = pm.Client(CallbackAPIVersion.VERSION2)
    c.max_inflight_messages_set(1000)
    c.connect(host, int(port))
    c.loop_start()
    start = time.perf_counter()
    infos = [c.publish(f"v1.1/Datastreams({ds[i % 50]})/Observations", json.dumps({"result": i}), qos=1) for i in range(n)]
    for info in infos:
        info.wait_for_publish(60)
    while bridge.accepted - before < n and time.perf_counter() - start < 120:
        time.sleep(0.05)
    elapsed = time.perf_counter() - start
    c.loop_stop()
    c.disconnect()
    return {"mqtt_obs_per_s": round((bridge.accepted - before) / elapsed), "mqtt_accepted": bridge.accepted - before}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--batch", type=int, default=5000)
    ap.add_argument("--pg", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    ap.add_argument("--mqtt", default="127.0.0.1:1883")
    a = ap.parse_args()
    result = {"sqlite": bench_db(None, n=a.n, batch=a.batch, mqtt=a.mqtt or None)}
    if a.pg:
        result["postgresql"] = bench_db(a.pg, n=a.n, batch=a.batch, mqtt=None)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
