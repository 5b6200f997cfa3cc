"""The SensorThings MQTT extension over an external broker (paho-mqtt 2, MQTT 5).

* Create: Observations published (QoS 1) to ``v1.1/Datastreams(ID)/Observations`` (or to
  ``v1.1/Observations`` with a ``Datastream`` in the body) go through the same ingest function
  as HTTP. Messages are taken in small batches; each batch is committed in one transaction and
  only then acknowledged (PUBACK, manual acks), so the broker redelivers anything not
  committed. Refused messages are logged with their reason (and kept in ``rejected``).
* Subscribe: every created entity is published to its topics (``v1.1/Observations``,
  ``v1.1/Datastreams(ID)/Observations``, ``v1.1/Things``, ...).
* A persistent session (fixed client id, ``clean_start=False``) and paho's automatic reconnect
  survive a broker restart; the bridge subscribes with *no local* so that it never re-ingests
  its own notifications.
"""

from __future__ import annotations

import hashlib
import json
import logging
import queue
import re
import threading
from collections import deque
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from citytwin.sensors.ingest import IngestError
from citytwin.sensors.model import ENTITIES, inverse

log = logging.getLogger(__name__)
_DS_TOPIC = re.compile(r"^v1\.1/Datastreams\((\d+)\)/Observations$")


def parse_mqtt_url(url: str) -> tuple[str, int]:
    parts = urlsplit(url if "://" in url else f"mqtt://{url}")
    return parts.hostname or "127.0.0.1", parts.port or 1883


def topics_for(entity_name: str, links: dict[str, int]) -> list[str]:
    """Topics an entity is published to: its set, and each to-one parent's navigation."""
    ent = ENTITIES[entity_name]
    out = [f"v1.1/{ent.plural}"]
    for rel in ent.rels:
        if not rel.many and links.get(rel.name) is not None:
            inv = inverse(ent, rel)
            out.append(f"v1.1/{ENTITIES[rel.target].plural}({links[rel.name]})/{inv.name}")
    return out


class MqttBridge:
    """Connects a :class:`~citytwin.sensors.service.StaService` to an MQTT broker."""

    def __init__(self, service, url: str, *, client_id: str | None = None, batch_size: int = 500):
        self.service = service
        self.host, self.port = parse_mqtt_url(url)
        digest = hashlib.sha256(str(service.engine.url).encode()).hexdigest()[:10]
        self.client_id = client_id or f"citytwin-{digest}"
        self.batch_size = batch_size
        self.rejected: deque[tuple[str, str]] = deque(maxlen=1000)
        self.accepted = 0
        self.connected = threading.Event()
        self._queue: queue.Queue = queue.Queue()
        self._stop = threading.Event()
        self._worker: threading.Thread | None = None
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self.client_id,
                                  protocol=mqtt.MQTTv5, manual_ack=True)
        self.client.reconnect_delay_set(min_delay=1, max_delay=10)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message

    # -------------------------------------------------------------- lifecycle

    def start(self) -> None:
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600
        self.client.connect_async(self.host, self.port, keepalive=30, clean_start=False, properties=props)
        self.client.loop_start()
        self._worker = threading.Thread(target=self._work, name="mqtt-ingest", daemon=True)
        self._worker.start()
        self.service.listeners.append(self.publish_entity)

    def stop(self) -> None:
        if self.publish_entity in self.service.listeners:
            self.service.listeners.remove(self.publish_entity)
        self._stop.set()
        if self._worker:
            self._worker.join(timeout=10)
        self.client.disconnect()
        self.client.loop_stop()

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        if reason_code.is_failure:
            log.warning("MQTT connect to %s:%s refused: %s", self.host, self.port, reason_code)
            return
        opts = SubscribeOptions(qos=1, noLocal=True)
        client.subscribe([("v1.1/+/Observations", opts), ("v1.1/Observations", opts)])
        self.connected.set()
        log.info("MQTT bridge connected to %s:%s", self.host, self.port)

    def _on_disconnect(self, client, userdata, flags, reason_code, properties):
        self.connected.clear()
        if not self._stop.is_set():
            log.warning("MQTT bridge disconnected (%s); reconnecting", reason_code)

    # -------------------------------------------------------------- create via MQTT

    def _on_message(self, client, userdata, msg):
        self._queue.put(msg)

    def _work(self) -> None:
        while not self._stop.is_set():
            try:
                first = self._queue.get(timeout=0.2)
            except queue.Empty:
                continue
            batch = [first]
            while len(batch) < self.batch_size:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            self._ingest(batch)

    def _parse(self, msg) -> dict:
        try:
            body = json.loads(msg.payload)
        except (ValueError, UnicodeDecodeError) as exc:
            raise IngestError(f"malformed JSON: {exc}") from None
        if not isinstance(body, dict):
            raise IngestError("an Observation must be a JSON object")
        if "@iot.selfLink" in body:
            raise IngestError("ignored: a notification, not a new Observation")
        m = _DS_TOPIC.match(msg.topic)
        if m:
            body = {**body, "Datastream": {"@iot.id": int(m.group(1))}}
        elif msg.topic != "v1.1/Observations":
            raise IngestError(f"topic {msg.topic}: publish Observations to v1.1/Datastreams(ID)/Observations")
        return body

    def _ingest(self, batch: list) -> None:
        items, msgs = [], []
        for msg in batch:
            try:
                items.append(self._parse(msg))
                msgs.append(msg)
            except IngestError as exc:
                self._reject(msg, str(exc))
                self.client.ack(msg.mid, msg.qos)
        if items:
            try:
                results = self.service.ingest(items)
            except Exception:  # noqa: BLE001 - database down: do not ack, the broker redelivers
                log.exception("MQTT ingest failed; %d messages left unacknowledged", len(items))
                return
            for msg, res in zip(msgs, results, strict=True):
                if isinstance(res, IngestError):
                    self._reject(msg, str(res))
                else:
                    self.accepted += 1
                self.client.ack(msg.mid, msg.qos)

    def _reject(self, msg, reason: str) -> None:
        log.warning("MQTT message on %s refused: %s", msg.topic, reason)
        self.rejected.append((msg.topic, reason))

    # -------------------------------------------------------------- notifications

    def publish_entity(self, entity_name: str, body: dict) -> None:
        links = body.pop("__links__", {})
        payload = json.dumps(body)
        for topic in topics_for(entity_name, links):
            self.client.publish(topic, payload, qos=1)
