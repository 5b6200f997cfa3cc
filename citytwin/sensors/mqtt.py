"""The SensorThings MQTT extension over an external broker (paho-mqtt 2, MQTT 5).

* Create: Observations published (QoS 1) to ``v1.1/Datastreams(ID)/Observations`` (or to
  ``v1.1/Observations`` with a ``Datastream`` in the body) go through the same ingest function
  as HTTP. Messages are taken in small batches; each batch is committed in one transaction and
  only then acknowledged (PUBACK, manual acks), so the broker redelivers anything not
  committed. Refused messages are logged with their reason (and kept in ``rejected``).
* Subscribe: every created entity is published to its topics (``v1.1/Observations``,
  ``v1.1/Datastreams(ID)/Observations``, ``v1.1/Things``, ...). Notifications are queued by the
  write path and published by a separate thread in bulk (QoS 0 by default: a notification is
  sent after the commit and is best effort at any QoS; ``notify_qos=1`` publishes each with QoS 1
  through paho instead, about ten times the CPU per message).
* Access: a message must carry a Datastream-scoped API key as the MQTT 5 user property
  ``authorization`` (``Bearer <key>``, as over HTTP); a message without a valid key, or for a
  Datastream its key may not write, is refused and logged with the reason (``require_key=False``
  only behind a broker that authorises publishers itself).
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
import time
from collections import deque
from datetime import UTC, datetime
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from citytwin.sensors import schema as s
from citytwin.sensors.ingest import IngestError, Principal, check_write_scope, ref_id, result_value
from citytwin.sensors.keys import verify_key
from citytwin.sensors.model import ENTITIES, inverse
from citytwin.sensors.service import _ROWS, _interval, iso

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

    #: notifications waiting to be published beyond this are dropped (and counted)
    MAX_OUTBOX = 500_000

    def __init__(self, service, url: str, *, client_id: str | None = None, batch_size: int = 5000,
                 linger_s: float = 0.002, notify_qos: int = 0, receive_maximum: int = 1000,
                 require_key: bool = True, key_cache_s: float = 30.0):
        self.service = service
        self.require_key = require_key
        self.key_cache_s = key_cache_s
        self._keys: dict[str, tuple[float, Principal | None]] = {}  # token -> (valid until, principal)
        if not 1 <= receive_maximum <= 65535:
            raise ValueError(f"receive_maximum: {receive_maximum} is outside 1..65535 (MQTT 5 Receive Maximum)")
        self.receive_maximum = receive_maximum
        self.linger_s = linger_s
        self.notify_qos = notify_qos
        self.dropped_notifications = 0
        self._outbox: deque = deque()
        self._outbox_n = 0
        self._outbox_ready = threading.Event()
        self._publisher: threading.Thread | None = None
        self.host, self.port = parse_mqtt_url(url)
        digest = hashlib.sha256(str(service.engine.url).encode()).hexdigest()[:10]
        self.client_id = client_id or f"citytwin-{digest}"
        self.batch_size = batch_size
        self.rejected: deque[tuple[str, str]] = deque(maxlen=1000)
        self.accepted = 0
        self.batches = 0  # ingest transactions committed (messages per commit = accepted / batches)
        self.connected = threading.Event()
        self._queue: queue.Queue = queue.Queue()
        self._stop = threading.Event()
        self._worker: threading.Thread | None = None
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self.client_id,
                                  protocol=mqtt.MQTTv5, manual_ack=True)
        self.client.reconnect_delay_set(min_delay=1, max_delay=10)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message

    # -------------------------------------------------------------- lifecycle

    def start(self) -> None:
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600
        # QoS 1 messages the broker may send before we acknowledge (each is acknowledged only
        # after its batch commits); without it Mosquitto keeps 20 in flight, one small batch
        # per commit, which caps ingest at about 20 messages per commit time
        props.ReceiveMaximum = self.receive_maximum
        self.client.connect_async(self.host, self.port, keepalive=30, clean_start=False, properties=props)
        self.client.loop_start()
        self._worker = threading.Thread(target=self._work, name="mqtt-ingest", daemon=True)
        self._worker.start()
        self._publisher = threading.Thread(target=self._publish_loop, name="mqtt-notify", daemon=True)
        self._publisher.start()
        self.service.add_listener(self.publish_entity, self.publish_observations)

    def stop(self) -> None:
        self.service.remove_listener(self.publish_entity, self.publish_observations)
        self._stop.set()
        self._outbox_ready.set()
        if self._worker:
            self._worker.join(timeout=10)
        if self._publisher:
            self._publisher.join(timeout=10)
        self.client.disconnect()
        self.client.loop_stop()

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        if reason_code.is_failure:
            log.warning("MQTT connect to %s:%s refused: %s", self.host, self.port, reason_code)
            return
        opts = SubscribeOptions(qos=1, noLocal=True)
        _, self._subscribe_mid = client.subscribe([("v1.1/+/Observations", opts), ("v1.1/Observations", opts)])
        log.info("MQTT bridge connected to %s:%s; subscribing", self.host, self.port)

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties):
        # ready only once the broker confirmed the subscriptions: a message published before
        # the SUBACK would not be routed to the bridge
        if mid != getattr(self, "_subscribe_mid", None):
            return
        if any(rc.is_failure for rc in reason_codes):
            log.warning("MQTT subscription refused by %s:%s: %s", self.host, self.port, reason_codes)
            return
        self.connected.set()
        log.info("MQTT bridge subscribed on %s:%s", self.host, self.port)

    def _on_disconnect(self, client, userdata, flags, reason_code, properties):
        self.connected.clear()
        if not self._stop.is_set():
            log.warning("MQTT bridge disconnected (%s); reconnecting", reason_code)

    # -------------------------------------------------------------- create via MQTT

    def _on_message(self, client, userdata, msg):
        self._queue.put(msg)

    def _work(self) -> None:
        """Take what has arrived (waiting ``linger_s`` for more), commit it once, then ack all."""
        while not self._stop.is_set():
            try:
                first = self._queue.get(timeout=0.2)
            except queue.Empty:
                continue
            batch = [first]
            deadline = time.monotonic() + self.linger_s
            while len(batch) < self.batch_size:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    try:
                        batch.append(self._queue.get(timeout=left))
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

    def _principal(self, msg, conn_box: list) -> Principal:
        """The API key a message carries (MQTT 5 user property ``authorization``, ``Bearer <key>``
        or the bare key), verified like an HTTP bearer key; cached ``key_cache_s`` seconds."""
        token = None
        for name, value in getattr(getattr(msg, "properties", None), "UserProperty", None) or ():
            if name.lower() == "authorization":
                token = value[7:].strip() if value[:7].lower() == "bearer " else value.strip()
                break
        if not token:
            raise IngestError("no API key: publish with MQTT 5 and the user property "
                              "'authorization' = 'Bearer <key>' (create keys with `citytwin key add`)", 401)
        now = time.monotonic()
        hit = self._keys.get(token)
        if hit is None or hit[0] < now:
            if not conn_box:
                conn_box.append(self.service.engine.connect())
            row = verify_key(conn_box[0], token)
            p = None if row is None else Principal(name=f"key:{row['name']}", role=row["role"], kind="apikey",
                                                   datastreams=frozenset(int(d) for d in row["datastreams"]))
            if len(self._keys) > 10_000:
                self._keys.clear()
            hit = self._keys[token] = (now + self.key_cache_s, p)
        if hit[1] is None:
            raise IngestError("the API key is unknown or revoked", 401)
        return hit[1]

    def _authorise(self, msg, body: dict, conn_box: list) -> None:
        """Refuse (IngestError) a message whose key may not write its Datastream."""
        if not self.require_key:
            return
        principal = self._principal(msg, conn_box)
        check_write_scope(principal, ref_id(body.get("Datastream"), "Datastream"))

    def _ingest(self, batch: list) -> None:
        items, msgs = [], []
        conn_box: list = []  # one connection for the key lookups of this batch, opened if needed
        try:
            for msg in batch:
                try:
                    body = self._parse(msg)
                    self._authorise(msg, body, conn_box)
                    items.append(body)
                    msgs.append(msg)
                except IngestError as exc:
                    self._reject(msg, str(exc))
                    self.client.ack(msg.mid, msg.qos)
        except Exception:  # noqa: BLE001 - database down while checking keys: as for a failed ingest
            log.exception("MQTT key check failed; %d messages left unacknowledged", len(batch))
            return
        finally:
            if conn_box:
                conn_box[0].close()
        if items:
            try:
                results = self.service.ingest(items)
                self.batches += 1
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
        """Listener of the service: queue a created entity for the publisher thread (cheap)."""
        self._enqueue((entity_name, body), 1)

    def publish_observations(self, rows: list, base: str) -> None:
        """Row listener of the service: Observations stored in bulk, serialised by the publisher."""
        self._enqueue((_ROWS, (rows, base)), len(rows))

    def _enqueue(self, event, n: int) -> None:
        if self._outbox_n >= self.MAX_OUTBOX:
            self.dropped_notifications += n
            if self.dropped_notifications % 10_000 < n:
                log.warning("MQTT notifications dropped: the broker does not keep up (%d so far)",
                            self.dropped_notifications)
            return
        self._outbox_n += n
        self._outbox.append((event, n))
        self._outbox_ready.set()

    def _publish_loop(self) -> None:
        while not self._stop.is_set():
            self._outbox_ready.wait(0.5)
            self._outbox_ready.clear()
            while self._outbox:
                chunk, size = [], 0
                while self._outbox and size < 2000:
                    event, n = self._outbox.popleft()
                    self._outbox_n -= n
                    chunk.append(event)
                    size += n
                try:
                    self._publish_bulk(chunk)
                except Exception:  # noqa: BLE001 - notifications are best effort; keep the thread alive
                    log.exception("publishing %d MQTT notifications failed", len(chunk))

    def _publish_bulk(self, events: list[tuple[str, dict]]) -> None:
        """Publish notifications; QoS 0 packets are written in large chunks on the bridge's connection.

        The bridge's own connection is used so that its *no local* subscription keeps it from
        receiving its notifications back.
        """
        queue_packet = getattr(self.client, "_packet_queue", None)
        if self.notify_qos or queue_packet is None:
            for _, payload, topics in _messages(events):
                for topic in topics:
                    self.client.publish(topic, payload, qos=self.notify_qos)
            return
        if not self.client.is_connected():
            self.dropped_notifications += len(events)
            return
        parts: list[bytes] = []
        size = 0
        heads: dict[str, bytes] = {}  # topic -> its length-prefixed name (the topics repeat)
        for _, payload, topics in _messages(events):
            payload = payload.encode()
            for topic in topics:
                head = heads.get(topic)
                if head is None:
                    t = topic.encode()
                    head = heads[topic] = len(t).to_bytes(2, "big") + t + b"\x00"  # no properties
                n = len(head) + len(payload)
                parts += (b"\x30", _varint(n), head, payload)
                size += n + 4
            if size > 256_000:
                queue_packet(mqtt.PUBLISH, b"".join(parts), 0, 1)
                parts, size = [], 0
        if parts:
            # qos=1 in paho's bookkeeping only skips its per-message on_publish callback
            queue_packet(mqtt.PUBLISH, b"".join(parts), 0, 1)


def _messages(events):
    """(entity name, JSON payload, topics) per notification; bulk Observation rows expanded."""
    for entity_name, body in events:
        if entity_name == _ROWS:
            rows, base = body
            fast = _fast_observation_json(base)
            for oid, r in rows:
                topics = ["v1.1/Observations", f"v1.1/Datastreams({r[0]})/Observations"]
                if r[1] is not None:
                    topics.append(f"v1.1/FeaturesOfInterest({r[1]})/Observations")
                yield "Observation", fast(oid, r) or observation_json(oid, r, base), topics
        else:
            links = body.pop("__links__", {})
            yield entity_name, json.dumps(body), topics_for(entity_name, links)


def observation_json(oid: int, r, base: str) -> str:
    """The JSON of a stored Observation (as the service serves it) from its ingest row."""
    link = json.dumps(f"{base}/Observations({oid})")
    result = result_value({"result_kind": r[7], "result_number": r[8], "result_string": r[9], "result_json": r[10]})
    dumps = json.dumps
    return (f'{{"@iot.id": {oid}, "@iot.selfLink": {link}, "phenomenonTime": {dumps(_interval(r[2], r[3]))}, '
            f'"resultTime": {dumps(iso(r[4]))}, "result": {dumps(result)}, "resultQuality": {dumps(r[11])}, '
            f'"validTime": {dumps(_interval(r[5], r[6]))}, "parameters": {dumps(r[12])}, '
            f'"Datastream@iot.navigationLink": {link[:-1]}/Datastream", '
            f'"FeatureOfInterest@iot.navigationLink": {link[:-1]}/FeatureOfInterest"}}')


def _fast_observation_json(base: str):
    """``f(oid, row)``: :func:`observation_json` of the common row (a number at a UTC instant and
    nothing else), formatted directly (about a fifth of the time); None for any other row."""
    head = json.dumps(f"{base}/Observations(")[:-1]  # the opening quote and the escaped base
    number, utc, big = s.RESULT_NUMBER, UTC, 2**53
    float_repr, int_repr, is_integer = float.__repr__, int.__repr__, float.is_integer

    def fast(oid: int, r) -> str | None:
        t, v = r[2], r[8]
        if (r[7] != number or type(v) is not float or type(t) is not datetime or t.tzinfo is not utc
                or r[3] is not None or r[4] is not None or r[5] is not None or r[6] is not None
                or r[11] is not None or r[12] is not None or v != v or v in (_INF, -_INF)):
            return None
        result = int_repr(int(v)) if is_integer(v) and -big < v < big else float_repr(v)
        link = f"{head}{oid})"
        return (f'{{"@iot.id": {oid}, "@iot.selfLink": {link}", "phenomenonTime": "{t.isoformat()[:-6]}Z", '
                f'"resultTime": null, "result": {result}, "resultQuality": null, "validTime": null, '
                f'"parameters": null, "Datastream@iot.navigationLink": {link}/Datastream", '
                f'"FeatureOfInterest@iot.navigationLink": {link}/FeatureOfInterest"}}')
    return fast


_INF = float("inf")
_BYTES = [bytes((i,)) for i in range(128)]


def _varint(n: int) -> bytes:
    if n < 128:
        return _BYTES[n]
    if n < 16384:
        return bytes((n % 128 | 0x80, n // 128))
    out = bytearray()
    while True:
        b, n = n % 128, n // 128
        out.append(b | 0x80 if n else b)
        if not n:
            return bytes(out)


def publish_packet(topic: str, payload: bytes) -> bytes:
    """An MQTT 5 PUBLISH packet with QoS 0, no retain and no properties."""
    t = topic.encode()
    body = len(t).to_bytes(2, "big") + t + b"\x00" + payload
    return b"\x30" + _varint(len(body)) + body
