"""Conformance class 8: receive created entities via MQTT subscriptions."""

from __future__ import annotations

import json
import queue

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from tests.sensors.conftest import STA, create
from tests.sensors.test_c07_mqtt_create import mqtt_twin  # noqa: F401 - fixture

pytestmark = pytest.mark.mqtt


def test_subscribers_receive_created_entities(mqtt_twin):  # noqa: F811
    c, hdr, did, bridge, (host, port) = mqtt_twin
    got: queue.Queue = queue.Queue()
    sub = mqtt.Client(CallbackAPIVersion.VERSION2)
    sub.on_message = lambda cl, ud, msg: got.put((msg.topic, json.loads(msg.payload)))
    sub.connect(host, port)
    topics = [f"v1.1/Datastreams({did})/Observations", "v1.1/Observations", "v1.1/Things"]
    sub.subscribe([(t, 1) for t in topics])
    sub.loop_start()
    try:
        import time

        time.sleep(0.5)
        oid = create(c, hdr, "Observations", {"result": 5, "Datastream": {"@iot.id": did}})
        tid = create(c, hdr, "Things", {"name": "new", "description": "d"})
        seen = {}
        while len(seen) < 3:
            topic, body = got.get(timeout=10)
            seen[topic] = body
        assert seen[f"v1.1/Datastreams({did})/Observations"]["@iot.id"] == oid
        assert seen["v1.1/Observations"]["result"] == 5
        assert seen["v1.1/Things"]["@iot.id"] == tid
        assert "__links__" not in seen["v1.1/Things"]
        # the bridge did not re-ingest its own notification
        assert len(c.get(f"{STA}/Observations", headers=hdr).json()["value"]) == 1
    finally:
        sub.loop_stop()
        sub.disconnect()


def test_each_observation_is_published_once_per_topic(mqtt_twin):  # noqa: F811
    """A created Observation reaches each of its topics exactly once (single POST and dataArray)."""
    import time

    c, hdr, did, bridge, (host, port) = mqtt_twin
    got: queue.Queue = queue.Queue()
    sub = mqtt.Client(CallbackAPIVersion.VERSION2)
    sub.on_message = lambda cl, ud, msg: got.put((msg.topic, json.loads(msg.payload)["@iot.id"]))
    sub.connect(host, port)
    topics = [f"v1.1/Datastreams({did})/Observations", "v1.1/Observations"]
    sub.subscribe([(t, 1) for t in topics])
    sub.loop_start()
    try:
        time.sleep(0.5)
        ids = [create(c, hdr, "Observations", {"result": 1, "Datastream": {"@iot.id": did}})]
        r = c.post(f"{STA}/CreateObservations", headers=hdr, json=[
            {"Datastream": {"@iot.id": did}, "components": ["result"], "dataArray": [[2], [3], [4]]}])
        assert r.status_code == 201
        ids += [int(u.rsplit("(", 1)[1].rstrip(")")) for u in r.json()]
        seen: list = []
        deadline = time.monotonic() + 10
        while len(seen) < 2 * len(ids) and time.monotonic() < deadline:
            try:
                seen.append(got.get(timeout=0.5))
            except queue.Empty:
                pass
        time.sleep(1.0)  # anything published twice arrives by now
        while not got.empty():
            seen.append(got.get())
        for t in topics:
            assert sorted(i for topic, i in seen if topic == t) == sorted(ids), t
    finally:
        sub.loop_stop()
        sub.disconnect()
