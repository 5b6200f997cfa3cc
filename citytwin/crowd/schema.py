"""Tables of the crowd domain, on the shared :data:`citytwin.store.schema.metadata`.

* ``crowd_events``: the events calendar (zone, start, end, expected visitors);
* ``crowd_models``: every trained forecast model (version, training window, file);
* ``crowd_forecasts``: every stored forecast row, per zone (``datastream_id`` NULL) and per
  sensor, with the model version and training window behind it;
* ``crowd_alerts``: alerts (zone, level, probability, lead time, forecast snapshot, raised,
  acknowledged, closed, episode) — the alert log;
* ``crowd_skill``: backtest skill per zone (``datastream_id`` NULL) and per sensor.

Times are UTC (:class:`citytwin.sensors.schema.UTCDateTime`).
"""

from __future__ import annotations

import sqlalchemy as sa

from citytwin.sensors.schema import UTCDateTime
from citytwin.store.schema import metadata

crowd_events = sa.Table(
    "crowd_events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column(
        "zone_id",
        sa.Integer,
        sa.ForeignKey("zones.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("start", UTCDateTime, nullable=False),
    sa.Column("end", UTCDateTime, nullable=False),
    sa.Column("expected_visitors", sa.Integer, nullable=False),
    sa.Column("notes", sa.Text, nullable=True),
    sa.Column("created_by", sa.String(64), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.CheckConstraint('"end" > start', name="end_after_start"),
    sa.CheckConstraint("expected_visitors >= 0", name="visitors_nonnegative"),
)

crowd_models = sa.Table(
    "crowd_models",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("version", sa.String(64), nullable=False, unique=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("training_start", sa.String(32), nullable=False),
    sa.Column("training_end", sa.String(32), nullable=False),
    sa.Column("n_sensors", sa.Integer, nullable=False),
    sa.Column("path", sa.Text, nullable=False),
    sa.Column("info", sa.JSON, nullable=False),
)

crowd_forecasts = sa.Table(
    "crowd_forecasts",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("zone_id", sa.Integer, sa.ForeignKey("zones.id", ondelete="CASCADE"), nullable=True),
    sa.Column("datastream_id", sa.Integer, nullable=True),
    sa.Column("issued_at", UTCDateTime, nullable=False),
    sa.Column("target_time", UTCDateTime, nullable=False),
    sa.Column("lead_h", sa.Integer, nullable=False),
    sa.Column("unit", sa.String(32), nullable=False),
    sa.Column("point", sa.Float, nullable=True),
    sa.Column("q025", sa.Float, nullable=True),
    sa.Column("q10", sa.Float, nullable=True),
    sa.Column("q90", sa.Float, nullable=True),
    sa.Column("q975", sa.Float, nullable=True),
    sa.Column("level", sa.String(16), nullable=True),
    sa.Column("p_levels", sa.JSON, nullable=True),
    sa.Column("method", sa.String(32), nullable=False),
    sa.Column("model_version", sa.String(64), nullable=False),
    sa.Column("training_start", sa.String(32), nullable=False),
    sa.Column("training_end", sa.String(32), nullable=False),
    sa.Column("data_age_h", sa.Float, nullable=True),
    sa.Index("ix_crowd_forecasts_zone_issued", "zone_id", "issued_at"),
)

crowd_alerts = sa.Table(
    "crowd_alerts",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column(
        "zone_id",
        sa.Integer,
        sa.ForeignKey("zones.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    sa.Column("episode", sa.Integer, nullable=False),
    sa.Column("level", sa.String(16), nullable=False),
    sa.Column("probability", sa.Float, nullable=False),
    sa.Column("threshold", sa.Float, nullable=False),
    sa.Column("lead_h", sa.Integer, nullable=False),
    sa.Column("expected_at", UTCDateTime, nullable=False),
    sa.Column("raised_at", UTCDateTime, nullable=False),
    sa.Column("forecast", sa.JSON, nullable=False),
    sa.Column("model_version", sa.String(64), nullable=False),
    sa.Column("message", sa.Text, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("acknowledged_by", sa.String(64), nullable=True),
    sa.Column("acknowledged_at", UTCDateTime, nullable=True),
    sa.Column("closed_at", UTCDateTime, nullable=True),
    sa.CheckConstraint("status IN ('open', 'acknowledged', 'closed')", name="status_valid"),
    sa.UniqueConstraint("zone_id", "episode"),
)

crowd_skill = sa.Table(
    "crowd_skill",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column(
        "zone_id",
        sa.Integer,
        sa.ForeignKey("zones.id", ondelete="CASCADE"),
        nullable=True,
        index=True,
    ),
    sa.Column("datastream_id", sa.Integer, nullable=True),
    sa.Column("computed_at", UTCDateTime, nullable=False),
    sa.Column("test_start", sa.String(32), nullable=False),
    sa.Column("test_end", sa.String(32), nullable=False),
    sa.Column("model_version", sa.String(64), nullable=False),
    sa.Column("mae", sa.Float, nullable=True),
    sa.Column("mase", sa.Float, nullable=True),
    sa.Column("coverage_80", sa.Float, nullable=True),
    sa.Column("coverage_95", sa.Float, nullable=True),
    sa.Column("width_95", sa.Float, nullable=True),
    sa.Column("n", sa.Integer, nullable=False),
    sa.Column("unit", sa.String(32), nullable=False),
)

ALL_TABLES = (crowd_events, crowd_models, crowd_forecasts, crowd_alerts, crowd_skill)
