"""Live observation summaries for server-sent events, from any writer in any process.

The :class:`Broadcaster` watches the Observations table for new ids (one query every
``poll_s`` seconds, only while someone listens), so observations written by the HTTP API, the
MQTT bridge, the replay or the demo generators — in this process or another — all reach the
dashboard. :meth:`Broadcaster.wake` (called by in-process writers) shortens the wait. Each
poll becomes one event: per Datastream the number of new observations and the newest value.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from datetime import UTC, datetime

import sqlalchemy as sa

from citytwin.sensors.ingest import result_value
from citytwin.sensors.schema import sta_datastreams, sta_observations, sta_things

log = logging.getLogger(__name__)

POLL_S = 0.5
BATCH = 20_000
KEEP = 200  #: events kept for late readers


def _origin(props: dict) -> str:
    if props.get("origin") in ("real", "replayed", "simulated"):
        return props["origin"]
    return "simulated" if props.get("simulated") else "replayed" if props.get("replayed") else "real"


class Broadcaster:
    """Polls for new Observations while subscribed and keeps the recent summaries.

    Parameters
    ----------
    engine
        The store.
    poll_s
        Seconds between polls (default 0.5 s).
    """

    def __init__(self, engine: sa.Engine, *, poll_s: float = POLL_S):
        self.engine = engine
        self.poll_s = poll_s
        self._cond = threading.Condition()
        self._events: deque[tuple[int, dict]] = deque(maxlen=KEEP)
        self._seq = 0
        self._subscribers = 0
        self._thread: threading.Thread | None = None
        self._wake = threading.Event()
        self._closed = False
        self._last_id: int | None = None
        self._meta: dict[int, dict] = {}

    # ----------------------------------------------------------------- subscription

    def subscribe(self) -> int:
        """Register a reader; returns the sequence number to read after (only new events)."""
        with self._cond:
            if self._closed:
                raise RuntimeError("the broadcaster is closed")
            self._subscribers += 1
            if self._thread is None or not self._thread.is_alive():
                self._last_id = None  # start from the newest observation, not from where we stopped
                self._thread = threading.Thread(target=self._run, name="citytwin-live", daemon=True)
                self._thread.start()
            return self._seq

    def unsubscribe(self) -> None:
        with self._cond:
            self._subscribers = max(0, self._subscribers - 1)
            self._cond.notify_all()

    def wait(self, after: int, timeout: float) -> list[tuple[int, dict]]:
        """Events with a sequence number above ``after`` (waits up to ``timeout`` s for one)."""
        with self._cond:
            if self._seq <= after and not self._closed:
                self._cond.wait(timeout)
            return [(s, e) for s, e in self._events if s > after]

    def events_after(self, after: int) -> list[tuple[int, dict]]:
        """Events with a sequence number above ``after`` (no waiting; for async readers)."""
        with self._cond:
            return [(s, e) for s, e in self._events if s > after]

    def wake(self) -> None:
        """Poll now (an in-process writer has committed new observations)."""
        self._wake.set()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    # ----------------------------------------------------------------- polling

    def _run(self) -> None:
        while True:
            with self._cond:
                if self._closed or self._subscribers == 0:
                    self._thread = None
                    return
            try:
                ev = self.poll()
            except Exception:  # noqa: BLE001 - a failed poll (database busy, restarting) is retried
                log.exception("live: polling for observations failed")
                ev = None
            if ev is not None:
                with self._cond:
                    self._seq += 1
                    self._events.append((self._seq, ev))
                    self._cond.notify_all()
            self._wake.wait(self.poll_s)
            self._wake.clear()

    def poll(self) -> dict | None:
        """One poll: a summary of the Observations created since the last one (None if none)."""
        ob = sta_observations
        with self.engine.connect() as conn:
            if self._last_id is None:
                self._last_id = conn.execute(sa.select(sa.func.max(ob.c.id))).scalar() or 0
                return None
            rows = conn.execute(
                sa.select(ob.c.id, ob.c.datastream_id, ob.c.phenomenon_time, ob.c.result_kind, ob.c.result_number,
                          ob.c.result_string, ob.c.result_json, ob.c.result_quality)
                .where(ob.c.id > self._last_id).order_by(ob.c.id).limit(BATCH)
            ).mappings().all()
            if not rows:
                return None
            self._last_id = rows[-1]["id"]
            per: dict[int, dict] = {}
            for r in rows:
                d = per.setdefault(r["datastream_id"], {"datastream_id": r["datastream_id"], "n": 0})
                d["n"] += 1
                t = r["phenomenon_time"]
                if "phenomenon_time" not in d or t >= d["_t"]:
                    v = result_value(r)
                    d.update(_t=t, phenomenon_time=t.isoformat(), observation_id=r["id"],
                             value=len(v) if isinstance(v, list) else v,
                             suppressed=bool((r["result_quality"] or {}).get("suppressed")) if isinstance(r["result_quality"], dict) else False)
            missing = [i for i in per if i not in self._meta]
            if missing:
                ds, th = sta_datastreams, sta_things
                for m in conn.execute(sa.select(ds.c.id, ds.c.name, ds.c.properties, ds.c.thing_id, th.c.name.label("thing"),
                                                th.c.properties.label("tprops"))
                                      .select_from(ds.join(th, th.c.id == ds.c.thing_id)).where(ds.c.id.in_(missing))).mappings():
                    p = m["properties"] or {}
                    tp = m["tprops"] or {}
                    self._meta[m["id"]] = {"name": m["name"], "thing_id": m["thing_id"], "thing": m["thing"],
                                           "stream": p.get("stream"), "feed": tp.get("feed") or p.get("feed"),
                                           "origin": _origin({**p, **tp})}
        streams = []
        for d in per.values():
            d.pop("_t", None)
            streams.append(d | self._meta.get(d["datastream_id"], {}))
        return {"time": datetime.now(UTC).isoformat(), "count": len(rows), "last_id": self._last_id, "datastreams": streams}
