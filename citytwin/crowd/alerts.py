"""Crowd alerts: one alert per zone and episode when red-or-worse becomes likely.

Rule (DOMAIN.md §3: alerts use the upper part of the forecast distribution, not the point):
for each zone, ``p`` = the highest probability over the forecast horizon of reaching *red or
worse* (from the predictive quantiles, :func:`citytwin.crowd.forecast.exceedance_probability`).

* no open episode and ``p > threshold`` → **raise** an alert (new episode) with its lead time
  (hours until the first hour where ``p > threshold``), the level (``critical`` when that is
  likely too, else ``red``), the probability and a snapshot of the forecast behind it;
* an open episode (``open`` or ``acknowledged``) stays one alert — no alert storm — while ``p``
  stays above ``clear_below``; a rise to critical updates its level and probability in place;
* the episode **closes** once ``p < clear_below`` (hysteresis) and the zone is not red now.

Operators acknowledge alerts; raise, update, acknowledge and close are logged (``logging``)
and kept in ``crowd_alerts`` (the alert log). New alerts are published to MQTT topic
``citytwin/alerts/{zone_id}`` when an MQTT URL is configured.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from citytwin.crowd.schema import crowd_alerts

log = logging.getLogger(__name__)

__all__ = [
    "AlertError",
    "AlertPolicy",
    "acknowledge",
    "decide",
    "evaluate_zone",
    "list_alerts",
    "publish_mqtt",
]


class AlertError(ValueError):
    """An alert request that cannot be served; ``status`` (404/409) and ``field``."""

    def __init__(self, message: str, *, field: str, status: int = 422) -> None:
        super().__init__(message)
        self.field = field
        self.status = status


@dataclass(frozen=True)
class AlertPolicy:
    """``threshold``: probability of red-or-worse that raises an alert; ``clear_below``: that
    closes the episode (hysteresis); ``critical_threshold``: probability of critical that makes
    the alert critical."""

    threshold: float = 0.3
    clear_below: float = 0.15
    critical_threshold: float = 0.3

    def __post_init__(self) -> None:
        for name in ("threshold", "clear_below", "critical_threshold"):
            v = getattr(self, name)
            if not 0 < v < 1:
                raise AlertError(f"{name}: a probability in (0, 1), got {v!r}", field=name)
        if self.clear_below > self.threshold:
            raise AlertError("clear_below must not exceed threshold", field="clear_below")


def decide(*, p_max: float, has_open: bool, red_now: bool, policy: AlertPolicy) -> str:
    """``raise`` | ``keep`` | ``close`` | ``none`` for one zone (pure).

    Examples
    --------
    >>> pol = AlertPolicy(threshold=0.3, clear_below=0.15)
    >>> decide(p_max=0.5, has_open=False, red_now=False, policy=pol)
    'raise'
    >>> decide(p_max=0.2, has_open=True, red_now=False, policy=pol)
    'keep'
    >>> decide(p_max=0.1, has_open=True, red_now=False, policy=pol)
    'close'
    """
    if has_open:
        return "close" if p_max < policy.clear_below and not red_now else "keep"
    return "raise" if p_max > policy.threshold else "none"


def _row(r) -> dict[str, Any]:
    d = dict(r._mapping)
    for k in ("expected_at", "raised_at", "acknowledged_at", "closed_at"):
        if d.get(k) is not None:
            d[k] = d[k].isoformat()
    return d


def evaluate_zone(
    conn: sa.Connection,
    *,
    zone: dict,
    forecast: dict,
    red_now: bool,
    policy: AlertPolicy,
    now: datetime | None = None,
) -> dict | None:
    """Apply the alert rule to one zone's forecast; returns the new alert (raised) or None.

    ``forecast`` is a zone forecast of :mod:`citytwin.crowd.service` (``hours`` with
    ``p_levels`` and ``time``; ``model_version``).
    """
    now = now or datetime.now(UTC)
    hours = forecast.get("hours") or []
    p_red = [max(h["p_levels"].get("red", 0.0), h["p_levels"].get("critical", 0.0)) for h in hours]
    p_crit = [h["p_levels"].get("critical", 0.0) for h in hours]
    p_max = max(p_red, default=0.0)
    open_row = conn.execute(
        sa.select(crowd_alerts)
        .where(crowd_alerts.c.zone_id == zone["id"], crowd_alerts.c.status != "closed")
        .order_by(crowd_alerts.c.episode.desc())
        .limit(1)
    ).first()
    action = decide(p_max=p_max, has_open=open_row is not None, red_now=red_now, policy=policy)
    if action == "none":
        return None
    if action == "close":
        conn.execute(
            crowd_alerts.update()
            .where(crowd_alerts.c.id == open_row.id)
            .values(status="closed", closed_at=now)
        )
        log.info("crowd alert %s closed: zone %s p(red+)=%.2f", open_row.id, zone["id"], p_max)
        return None
    level = "critical" if max(p_crit, default=0.0) > policy.critical_threshold else "red"
    if action == "keep":
        if level == "critical" and open_row.level != "critical":
            conn.execute(
                crowd_alerts.update()
                .where(crowd_alerts.c.id == open_row.id)
                .values(level="critical", probability=max(open_row.probability, p_max))
            )
            log.warning("crowd alert %s escalated to critical: zone %s", open_row.id, zone["id"])
        return None
    first = next(i for i, p in enumerate(p_red) if p > policy.threshold)
    h = hours[first]
    lead_h = int(h["lead_h"])
    episode = (
        conn.execute(
            sa.select(sa.func.max(crowd_alerts.c.episode)).where(
                crowd_alerts.c.zone_id == zone["id"]
            )
        ).scalar()
        or 0
    ) + 1
    expected = datetime.fromisoformat(h["time"])
    message = (
        f"{zone['name']}: {level} or worse likely (p = {p_max:.0%}) within {len(hours)} h; "
        f"first at {expected.isoformat(timespec='minutes')} (in {lead_h} h)"
    )
    snapshot = {
        k: forecast.get(k)
        for k in (
            "zone_id",
            "issued_at",
            "model_version",
            "training_window",
            "thresholds",
            "unit",
            "primary_sensor",
            "replayed",
        )
    }
    snapshot["hours"] = [
        {
            k: x.get(k)
            for k in (
                "time",
                "lead_h",
                "point",
                "q0.1",
                "q0.9",
                "q0.025",
                "q0.975",
                "level",
                "p_levels",
            )
        }
        for x in hours
    ]
    values = dict(
        zone_id=zone["id"],
        episode=episode,
        level=level,
        probability=round(p_max, 4),
        threshold=policy.threshold,
        lead_h=lead_h,
        expected_at=expected,
        raised_at=now,
        forecast=json.loads(json.dumps(snapshot, default=str)),
        model_version=forecast.get("model_version") or "",
        message=message,
        status="open",
    )
    new_id = conn.execute(crowd_alerts.insert().values(**values)).inserted_primary_key[0]
    log.warning("crowd alert %s raised: %s", new_id, message)
    return {
        "id": int(new_id),
        **{k: v for k, v in values.items() if k != "forecast"},
        "expected_at": expected.isoformat(),
        "raised_at": now.isoformat(),
    }


def list_alerts(
    conn: sa.Connection,
    *,
    status: str | None = None,
    zone_id: int | None = None,
    limit: int = 200,
    with_forecast: bool = False,
) -> list[dict]:
    """Alerts, newest first (the log); ``status`` open|acknowledged|closed|active (= not closed)."""
    q = (
        sa.select(crowd_alerts)
        .order_by(crowd_alerts.c.raised_at.desc(), crowd_alerts.c.id.desc())
        .limit(limit)
    )
    if status == "active":
        q = q.where(crowd_alerts.c.status != "closed")
    elif status is not None:
        if status not in ("open", "acknowledged", "closed"):
            raise AlertError("status: one of open, acknowledged, closed, active", field="status")
        q = q.where(crowd_alerts.c.status == status)
    if zone_id is not None:
        q = q.where(crowd_alerts.c.zone_id == zone_id)
    out = []
    for r in conn.execute(q):
        d = _row(r)
        if not with_forecast:
            d.pop("forecast", None)
        out.append(d)
    return out


def acknowledge(
    conn: sa.Connection, *, alert_id: int, operator: str, now: datetime | None = None
) -> dict:
    """Acknowledge an alert by an operator (logged); a closed or already acknowledged alert → 409."""
    now = now or datetime.now(UTC)
    row = conn.execute(sa.select(crowd_alerts).where(crowd_alerts.c.id == alert_id)).first()
    if row is None:
        raise AlertError(f"alert_id: no alert {alert_id}", field="alert_id", status=404)
    if row.status == "acknowledged":
        raise AlertError(
            f"alert {alert_id} was acknowledged by {row.acknowledged_by} at "
            f"{row.acknowledged_at.isoformat()}",
            field="alert_id",
            status=409,
        )
    if row.status == "closed":
        raise AlertError(f"alert {alert_id} is closed", field="alert_id", status=409)
    conn.execute(
        crowd_alerts.update()
        .where(crowd_alerts.c.id == alert_id)
        .values(status="acknowledged", acknowledged_by=operator, acknowledged_at=now)
    )
    log.info("crowd alert %s acknowledged by %s", alert_id, operator)
    d = _row(conn.execute(sa.select(crowd_alerts).where(crowd_alerts.c.id == alert_id)).first())
    d.pop("forecast", None)
    return d


def publish_mqtt(url: str, alert: dict, *, timeout_s: float = 5.0) -> bool:
    """Publish an alert (JSON, QoS 1, retained) to ``citytwin/alerts/{zone_id}``; False on failure."""
    import paho.mqtt.publish as publish

    from citytwin.sensors.mqtt import parse_mqtt_url

    host, port = parse_mqtt_url(url)
    try:
        publish.single(
            f"citytwin/alerts/{alert['zone_id']}",
            json.dumps(alert, default=str),
            qos=1,
            retain=True,
            hostname=host,
            port=port,
            keepalive=int(max(timeout_s, 5)),
        )
        return True
    except Exception as exc:  # noqa: BLE001 - a broker outage must not stop the forecasts
        log.warning("could not publish crowd alert to MQTT %s: %s", url, exc)
        return False
