"""SIGKILL the server during sustained ingest: every acknowledged Observation is stored exactly once."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import httpx
import pytest

from citytwin.store import make_engine
from tests.sensors.conftest import PASSWORD, thing_body
from tests.sensors.test_frost_client import free_port

ROOT = Path(__file__).resolve().parents[2]


def _start(data_dir: Path, port: int) -> subprocess.Popen:
    env = {**os.environ, "CITYTWIN_DATA_DIR": str(data_dir), "CITYTWIN_SECRET_KEY": "y" * 40}
    env.pop("CITYTWIN_DATABASE_URL", None)
    env.pop("CITYTWIN_MQTT_URL", None)
    proc = subprocess.Popen([sys.executable, "-m", "tests.sensors._server", str(port)], cwd=ROOT, env=env)
    deadline = time.monotonic() + 30
    while True:
        try:
            httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=1)
            return proc
        except httpx.HTTPError:
            assert proc.poll() is None, "server exited"
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.1)


@pytest.mark.slow
def test_sigkill_mid_ingest_loses_no_acknowledged_observation(tmp_path, template_db):
    shutil.copy(template_db, tmp_path / "citytwin.sqlite")
    port = free_port()
    proc = _start(tmp_path, port)
    base = f"http://127.0.0.1:{port}"
    tok = httpx.post(f"{base}/api/auth/token", data={"username": "operator", "password": PASSWORD}).json()["access_token"]
    hdr = {"Authorization": f"Bearer {tok}"}
    r = httpx.post(f"{base}/sta/v1.1/Things", json=thing_body(), headers=hdr)
    assert r.status_code == 201
    did = httpx.get(f"{base}/sta/v1.1/Datastreams", headers=hdr).json()["value"][0]["@iot.id"]
    acked: list[str] = []
    stop = threading.Event()

    def single():
        with httpx.Client(headers=hdr, timeout=5) as c:
            while not stop.is_set():
                m = uuid.uuid4().hex
                try:
                    r = c.post(f"{base}/sta/v1.1/Observations", json={"result": 1, "parameters": {"m": m}, "Datastream": {"@iot.id": did}})
                except httpx.HTTPError:
                    return
                if r.status_code == 201:
                    acked.append(m)

    def batched():
        with httpx.Client(headers=hdr, timeout=5) as c:
            while not stop.is_set():
                ms = [uuid.uuid4().hex for _ in range(200)]
                body = [{"Datastream": {"@iot.id": did}, "components": ["result", "parameters"], "dataArray": [[2, {"m": m}] for m in ms]}]
                try:
                    r = c.post(f"{base}/sta/v1.1/CreateObservations", json=body)
                except httpx.HTTPError:
                    return
                if r.status_code == 201:
                    acked.extend(m for m, u in zip(ms, r.json(), strict=True) if u != "error")

    threads = [threading.Thread(target=single), threading.Thread(target=single), threading.Thread(target=batched)]
    for t in threads:
        t.start()
    time.sleep(2.5)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    stop.set()
    for t in threads:
        t.join(timeout=10)
    assert len(acked) > 100, "too little ingest to be a meaningful test"

    proc = _start(tmp_path, port)  # recovery happens on open (SQLite WAL)
    try:
        eng = make_engine(f"sqlite:///{tmp_path / 'citytwin.sqlite'}")
        with eng.connect() as conn:
            rows = conn.exec_driver_sql("SELECT parameters FROM sta_observations").scalars().all()
        eng.dispose()
        import json

        stored = Counter(json.loads(p)["m"] for p in rows)
        missing = [m for m in acked if stored[m] != 1]
        assert not missing, f"{len(missing)} acknowledged observations missing or duplicated"
        assert max(stored.values()) == 1
        # the restarted server serves them
        r = httpx.get(f"{base}/sta/v1.1/Observations?$count=true&$top=1", headers=hdr)
        assert r.json()["@iot.count"] == len(rows)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)
