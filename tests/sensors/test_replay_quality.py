"""Replay of real counts through the ingest path; data quality endpoint."""

from __future__ import annotations

import numpy as np

from citytwin.sensors.quality import assess
from citytwin.sensors.replay import outage_mask, replay
from tests.sensors.conftest import STA


def test_replay_labels_and_ingests(client, viewer):
    svc = client.app.state.sta
    n = replay(svc, speed=60, sensors=3, hours=12, realtime=False)
    assert n > 0
    things = client.get(f"{STA}/Things?$expand=Datastreams($expand=Sensor)", headers=viewer).json()["value"]
    assert len(things) == 3
    assert all(t["properties"]["replayed"] for t in things)
    assert all(t["Datastreams"][0]["Sensor"]["properties"]["replayed"] for t in things)
    assert replay(svc, speed=60, sensors=3, hours=12, realtime=False) == n  # Things reused
    assert len(client.get(f"{STA}/Things", headers=viewer).json()["value"]) == 3
    q = client.get("/api/sensors/quality", headers=viewer).json()["datastreams"]
    assert len(q) == 3 and all(d["replayed"] and d["age_s"] is not None for d in q)


def test_quality_kernel_flags_not_drops():
    r = assess(np.arange(20) * 60.0, [5.0] * 18 + [-1.0, 5000.0], now_s=20 * 60 + 600, expected_interval_s=60, valid_range=(0, None))
    assert r["n"] == 20 and r["impossible"] == 1 and r["outliers"] >= 1 and r["stale"]


def test_outage_mask():
    assert outage_mask(np.array([0, 0, 1, 0, 0, 0, 0, 0, 0]), min_run=6).tolist() == [False] * 3 + [True] * 6
