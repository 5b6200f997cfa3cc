"""Alerts: one per zone and episode, lead time and forecast behind it, acknowledge, close, MQTT."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from citytwin.crowd import alerts as A
from citytwin.crowd.schema import crowd_alerts
from citytwin.store.schema import zones
from tests.crowd._twin import ZONE, seeded_twin

NOW = datetime(2026, 3, 10, 4, 0, tzinfo=UTC)  # 06:00 in Helsinki: the midday peak lies ahead


@pytest.fixture(scope="module")
def twin(helsinki_engine, tmp_path_factory):
    engine, svc, seeded = seeded_twin(
        helsinki_engine, tmp_path_factory.mktemp("crowd-alerts"), now=NOW
    )
    yield engine, svc
    engine.dispose()


def test_decide_hysteresis() -> None:
    pol = A.AlertPolicy(threshold=0.3, clear_below=0.1)
    assert A.decide(p_max=0.31, has_open=False, red_now=False, policy=pol) == "raise"
    assert A.decide(p_max=0.29, has_open=False, red_now=False, policy=pol) == "none"
    assert A.decide(p_max=0.2, has_open=True, red_now=False, policy=pol) == "keep"
    assert A.decide(p_max=0.05, has_open=True, red_now=True, policy=pol) == "keep"
    assert A.decide(p_max=0.05, has_open=True, red_now=False, policy=pol) == "close"


def test_policy_validation_names_the_field() -> None:
    with pytest.raises(A.AlertError) as e:
        A.AlertPolicy(threshold=1.5)
    assert e.value.field == "threshold"
    with pytest.raises(A.AlertError) as e:
        A.AlertPolicy(threshold=0.2, clear_below=0.3)
    assert e.value.field == "clear_below"


def test_one_alert_per_episode_ack_and_close(twin) -> None:
    engine, svc = twin
    first = svc.refresh(now=NOW)
    assert first["forecast_zones"] == [ZONE]
    [alert] = first["alerts_raised"]
    assert (
        alert["zone_id"] == ZONE and alert["episode"] == 1 and alert["level"] in ("red", "critical")
    )
    assert alert["probability"] > svc.settings.alert.threshold
    assert 0 <= alert["lead_h"] <= 12 and alert["status"] == "open"
    # no storm: a second refresh keeps the one alert of the episode
    assert svc.refresh(now=NOW)["alerts_raised"] == []
    with engine.connect() as conn:
        rows = A.list_alerts(conn, with_forecast=True)
    assert len(rows) == 1
    snap = rows[0]["forecast"]
    assert len(snap["hours"]) == 24 and snap["model_version"] == svc.model_info()["version"]
    with engine.begin() as conn:
        acked = A.acknowledge(conn, alert_id=alert["id"], operator="op1")
    assert acked["status"] == "acknowledged" and acked["acknowledged_by"] == "op1"
    with pytest.raises(A.AlertError) as e, engine.begin() as conn:
        A.acknowledge(conn, alert_id=alert["id"], operator="op2")
    assert e.value.status == 409
    with pytest.raises(A.AlertError) as e, engine.begin() as conn:
        A.acknowledge(conn, alert_id=12345, operator="op2")
    assert e.value.status == 404
    # the episode ends when red becomes unlikely (here: the zone's thresholds are raised)
    with engine.begin() as conn:
        conn.execute(
            sa.update(zones)
            .where(zones.c.id == ZONE)
            .values(thresholds={"amber": 50.0, "red": 60.0, "critical": 70.0})
        )
    try:
        assert svc.refresh(now=NOW)["alerts_raised"] == []
        with engine.connect() as conn:
            status = conn.execute(sa.select(crowd_alerts.c.status, crowd_alerts.c.closed_at)).one()
        assert status.status == "closed" and status.closed_at is not None
    finally:
        with engine.begin() as conn:
            conn.execute(
                sa.update(zones)
                .where(zones.c.id == ZONE)
                .values(thresholds={"amber": 0.2, "red": 0.4, "critical": 2.0})
            )
    # a new episode raises a new alert
    again = svc.refresh(now=NOW)["alerts_raised"]
    assert len(again) == 1 and again[0]["episode"] == 2


@pytest.mark.mqtt
def test_new_alert_is_published_to_mqtt(twin) -> None:
    import threading

    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    from tests.sensors.conftest import mqtt_address, require_service

    host, port = mqtt_address()
    require_service("MQTT broker", host, port)
    got: list[dict] = []
    ready, done = threading.Event(), threading.Event()
    sub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="crowd-alert-test")
    sub.on_connect = lambda c, u, f, rc, p: (c.subscribe("citytwin/alerts/4242", qos=1), ready.set())

    def on_message(c, u, msg):
        if msg.retain or not msg.payload:  # left by an earlier run
            return
        got.append({"topic": msg.topic, **json.loads(msg.payload)})
        done.set()

    sub.on_message = on_message
    sub.connect(host, port)
    sub.loop_start()
    try:
        assert ready.wait(10)
        assert A.publish_mqtt(
            f"mqtt://{host}:{port}", {"zone_id": 4242, "level": "red", "probability": 0.5}
        )
        assert done.wait(10)
    finally:
        sub.loop_stop()
        sub.disconnect()
        import paho.mqtt.publish as publish

        publish.single(
            "citytwin/alerts/4242", b"", retain=True, hostname=host, port=port
        )  # clear the retained
    assert got[0]["topic"] == "citytwin/alerts/4242" and got[0]["level"] == "red"
