"""Server-sent events: new Observations reach a subscriber of /api/feeds/stream."""

from __future__ import annotations

import json
import threading

from citytwin.sensors.live import Broadcaster
from tests.sensors import _feeds
from tests.sensors._feeds import auth

feeds_template = _feeds.feeds_template  # fixture
city_engine = _feeds.city_engine  # fixture
city_client = _feeds.city_client  # fixture


def _events(text: str) -> list[dict]:
    out = []
    for block in text.split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line and not line.startswith(":"))
        if lines.get("event") == "observations":
            out.append(json.loads(lines["data"]))
    return out


def test_stream_delivers_new_observations(city_client):
    op = auth(city_client, "operator")
    src = city_client.post("/api/feeds/sources", json={"kind": "parking", "name": "SSE garage", "lon": 24.94, "lat": 60.17,
                                                        "capacity": 200, "origin": "simulated"}, headers=op).json()
    svc = city_client.app.state.sta
    stop = threading.Event()

    def writer():  # keeps writing through the ingest path until the stream has answered
        n = 0
        while not stop.wait(0.3):
            n += 1
            svc.ingest([{"Datastream": {"@iot.id": src["datastreams"]["occupancy"]}, "result": 100 + n}])

    t = threading.Thread(target=writer, daemon=True)
    t.start()
    try:
        token = op["Authorization"].split()[1]
        with city_client.stream("GET", "/api/feeds/stream", params={"access_token": token, "max_events": 1}) as r:
            assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
            body = r.read().decode()
    finally:
        stop.set()
        t.join(5)
    [ev] = _events(body)
    [d] = ev["datastreams"]
    assert d["datastream_id"] == src["datastreams"]["occupancy"] and d["value"] > 100
    assert d["origin"] == "simulated" and d["feed"] == "parking" and d["n"] >= 1 and ev["count"] >= 1


def test_stream_needs_a_token(city_client):
    assert city_client.get("/api/feeds/stream", params={"max_events": 1}).status_code == 401
    assert city_client.get("/api/feeds/stream", params={"max_events": 1, "access_token": "nope"}).status_code == 401


def test_broadcaster_polls_only_while_subscribed(city_engine):
    b = Broadcaster(city_engine, poll_s=0.05)
    assert b.poll() is None  # the first poll only remembers where to start
    seq = b.subscribe()
    b.unsubscribe()
    b.close()
    assert b.events_after(seq) == []
