"""Conformance class 7: create Observations via MQTT (against a real broker)."""

from __future__ import annotations

import json
import shutil
import subprocess
import time

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from citytwin.sensors import keys
from tests.sensors.conftest import (
    STA,
    create,
    make_client,
    mqtt_address,
    require_service,
    thing_body,
    token,
)
from tests.sensors.test_frost_client import free_port

pytestmark = pytest.mark.mqtt


def publisher(host: str, port: int) -> mqtt.Client:
    c = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    c.connect(host, port)
    c.loop_start()
    return c


def key_props(key: str | None) -> Properties:
    """PUBLISH properties carrying an API key as the bridge expects it."""
    props = Properties(PacketTypes.PUBLISH)
    if key is not None:
        props.UserProperty = ("authorization", f"Bearer {key}")
    return props


def api_key(c, datastreams: list[int], name: str = "camera-key") -> str:
    with c.app.state.engine.begin() as conn:
        return keys.create_key(conn, name=name, datastreams=datastreams)[1]


def wait_for(predicate, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


@pytest.fixture
def mqtt_twin(tmp_path, engine):
    host, port = mqtt_address()
    require_service("MQTT broker", host, port)
    with make_client(tmp_path, engine, mqtt_url=f"mqtt://{host}:{port}") as c:
        bridge = c.app.state.mqtt_bridge
        assert bridge.connected.wait(10)
        hdr = {"Authorization": f"Bearer {token(c, 'operator')}"}
        tid = create(c, hdr, "Things", thing_body())
        did = c.get(f"{STA}/Things({tid})/Datastreams", headers=hdr).json()["value"][0]["@iot.id"]
        yield c, hdr, did, bridge, (host, port)


def _publish(pub, topic: str, payload, key: str | None):
    pub.publish(topic, payload, qos=1, properties=key_props(key)).wait_for_publish(5)


def test_observation_published_is_created_and_invalid_is_refused(mqtt_twin):
    c, hdr, did, bridge, (host, port) = mqtt_twin
    key = api_key(c, [did])
    pub = publisher(host, port)
    try:
        _publish(pub, f"v1.1/Datastreams({did})/Observations", json.dumps({"result": 42, "parameters": {"m": "a"}}), key)
        _publish(pub, "v1.1/Observations", json.dumps({"result": 43, "Datastream": {"@iot.id": did}}), key)
        _publish(pub, f"v1.1/Datastreams({did})/Observations", json.dumps({"result": "not a number"}), key)
        _publish(pub, f"v1.1/Datastreams({did})/Observations", b"{broken", key)
        obs = wait_for(lambda: (v := c.get(f"{STA}/Datastreams({did})/Observations?$orderby=result", headers=hdr).json()["value"]) and len(v) >= 2 and v)
        assert [o["result"] for o in obs] == [42, 43]
        reasons = wait_for(lambda: len(bridge.rejected) >= 2 and [r for _, r in bridge.rejected])
        assert any("result" in r for r in reasons) and any("JSON" in r for r in reasons)
    finally:
        pub.loop_stop()
        pub.disconnect()


def test_messages_without_a_key_or_outside_its_scope_are_refused(mqtt_twin):
    """MQTT ingest is authorised like HTTP: a Datastream-scoped API key, carried as a user property."""
    c, hdr, did, bridge, (host, port) = mqtt_twin
    other = create(c, hdr, "Things", thing_body("parking garage"))
    other_ds = c.get(f"{STA}/Things({other})/Datastreams", headers=hdr).json()["value"][0]["@iot.id"]
    camera_key = api_key(c, [did])
    revoked = api_key(c, [did], name="old-key")
    with c.app.state.engine.begin() as conn:
        kid = next(k["id"] for k in keys.list_keys(conn) if k["name"] == "old-key")
        assert keys.revoke_key(conn, kid)
    pub = publisher(host, port)
    try:
        _publish(pub, f"v1.1/Datastreams({did})/Observations", json.dumps({"result": 1}), None)
        _publish(pub, f"v1.1/Datastreams({other_ds})/Observations", json.dumps({"result": 2}), camera_key)
        _publish(pub, "v1.1/Observations", json.dumps({"result": 3, "Datastream": {"@iot.id": other_ds}}), camera_key)
        _publish(pub, f"v1.1/Datastreams({did})/Observations", json.dumps({"result": 4}), revoked)
        _publish(pub, f"v1.1/Datastreams({did})/Observations", json.dumps({"result": 5}), "ctk_notarealkey0_" + "x" * 30)
        _publish(pub, f"v1.1/Datastreams({did})/Observations", json.dumps({"result": 6}), camera_key)  # accepted
        wait_for(lambda: bridge.accepted >= 1 and len(bridge.rejected) >= 5)
        reasons = [r for _, r in bridge.rejected]
        assert sum("no API key" in r for r in reasons) == 1
        assert sum(f"may not write Datastream {other_ds}" in r for r in reasons) == 2
        assert sum("unknown or revoked" in r for r in reasons) == 2
        stored = [o["result"] for o in c.get(f"{STA}/Observations", headers=hdr).json()["value"]]
        assert stored == [6]
    finally:
        pub.loop_stop()
        pub.disconnect()


def test_twin_works_without_broker(client, op):
    assert not hasattr(client.app.state, "mqtt_bridge")
    assert client.post(f"{STA}/Things", json=thing_body(), headers=op).status_code == 201


@pytest.mark.slow
def test_reconnects_after_broker_restart(tmp_path, engine):
    binary = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if shutil.os.path.exists("/usr/sbin/mosquitto") else None)
    if binary is None:
        pytest.skip("no mosquitto binary to run a private broker")
    port = free_port()
    conf = tmp_path / "m.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence true\npersistence_location {tmp_path}/\n")

    def broker():
        p = subprocess.Popen([binary, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: _open(port))
        return p

    proc = broker()
    try:
        with make_client(tmp_path, engine, mqtt_url=f"mqtt://127.0.0.1:{port}") as c:
            bridge = c.app.state.mqtt_bridge
            assert bridge.connected.wait(10)
            hdr = {"Authorization": f"Bearer {token(c, 'operator')}"}
            tid = create(c, hdr, "Things", thing_body())
            did = c.get(f"{STA}/Things({tid})/Datastreams", headers=hdr).json()["value"][0]["@iot.id"]
            proc.terminate()
            proc.wait(10)
            wait_for(lambda: not bridge.connected.is_set())
            proc = broker()
            assert bridge.connected.wait(20)
            pub = publisher("127.0.0.1", port)
            _publish(pub, f"v1.1/Datastreams({did})/Observations", json.dumps({"result": 7}), api_key(c, [did]))
            wait_for(lambda: c.get(f"{STA}/Observations", headers=hdr).json()["value"], timeout=30)
            pub.loop_stop()
            pub.disconnect()
    finally:
        proc.terminate()
        proc.wait(10)


def _open(port: int) -> bool:
    import socket

    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def test_key_check_failure_leaves_messages_unacknowledged(mqtt_twin, monkeypatch):
    """A database error while checking keys must not kill the ingest worker or acknowledge anything."""
    c, hdr, did, bridge, (host, port) = mqtt_twin
    from citytwin.sensors import mqtt as bridge_module

    calls = []

    def broken(conn, token):
        calls.append(token)
        raise RuntimeError("database unavailable")

    monkeypatch.setattr(bridge_module, "verify_key", broken)
    acked = []
    monkeypatch.setattr(bridge.client, "ack", lambda mid, qos: acked.append(mid))
    key = api_key(c, [did])
    pub = publisher(host, port)
    try:
        _publish(pub, f"v1.1/Datastreams({did})/Observations", json.dumps({"result": 1}), key)
        wait_for(lambda: calls)
        time.sleep(0.3)
        assert acked == [] and bridge.accepted == 0 and bridge._worker.is_alive()
    finally:
        pub.loop_stop()
        pub.disconnect()
