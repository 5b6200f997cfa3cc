"""Tables of the SensorThings entities, on the shared :data:`citytwin.store.schema.metadata`.

Times are stored in UTC (:class:`UTCDateTime`). Geometries are GeoJSON (WGS84) in JSON columns
with a bounding box in float columns for pre-filtering. Observation results are split into a
numeric column (fast numeric filters) and a JSON column for anything else.
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa

from citytwin.store.schema import metadata


class UTCDateTime(sa.types.TypeDecorator):
    """A timezone-aware datetime stored in UTC; SQLite (which drops offsets) reads back as UTC."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(UTC)

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def _fk(table: str, *, nullable: bool = False, ondelete: str = "CASCADE") -> sa.ForeignKey:
    return sa.ForeignKey(f"{table}.id", ondelete=ondelete)


def _bbox() -> list[sa.Column]:
    return [sa.Column(n, sa.Float, nullable=True) for n in ("minx", "miny", "maxx", "maxy")]


sta_things = sa.Table(
    "sta_things",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("description", sa.Text, nullable=False),
    sa.Column("properties", sa.JSON, nullable=True),
)

sta_locations = sa.Table(
    "sta_locations",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("description", sa.Text, nullable=False),
    sa.Column("encoding_type", sa.String(64), nullable=False),
    sa.Column("location", sa.JSON, nullable=False),
    sa.Column("properties", sa.JSON, nullable=True),
    *_bbox(),
    # the FeatureOfInterest generated from this Location for Observations that name none
    sa.Column("generated_foi_id", sa.Integer, nullable=True),
)

sta_thing_locations = sa.Table(
    "sta_thing_locations",
    metadata,
    sa.Column("thing_id", sa.Integer, _fk("sta_things"), primary_key=True),
    sa.Column("location_id", sa.Integer, _fk("sta_locations"), primary_key=True),
    sa.Index("ix_sta_thing_locations_location", "location_id"),
)

sta_historical_locations = sa.Table(
    "sta_historical_locations",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("thing_id", sa.Integer, _fk("sta_things"), nullable=False, index=True),
    sa.Column("time", UTCDateTime, nullable=False),
)

sta_historical_location_locations = sa.Table(
    "sta_historical_location_locations",
    metadata,
    sa.Column("historical_location_id", sa.Integer, _fk("sta_historical_locations"), primary_key=True),
    sa.Column("location_id", sa.Integer, _fk("sta_locations"), primary_key=True),
    sa.Index("ix_sta_hll_location", "location_id"),
)

sta_sensors = sa.Table(
    "sta_sensors",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("description", sa.Text, nullable=False),
    sa.Column("encoding_type", sa.String(64), nullable=False),
    sa.Column("metadata", sa.Text, nullable=False),
    sa.Column("properties", sa.JSON, nullable=True),
)

sta_observed_properties = sa.Table(
    "sta_observed_properties",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("definition", sa.String(512), nullable=False),
    sa.Column("description", sa.Text, nullable=False),
    sa.Column("properties", sa.JSON, nullable=True),
)

sta_datastreams = sa.Table(
    "sta_datastreams",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("description", sa.Text, nullable=False),
    sa.Column("observation_type", sa.String(255), nullable=False),
    sa.Column("unit_of_measurement", sa.JSON, nullable=False),
    sa.Column("observed_area", sa.JSON, nullable=True),
    sa.Column("properties", sa.JSON, nullable=True),
    sa.Column("thing_id", sa.Integer, _fk("sta_things"), nullable=False, index=True),
    sa.Column("sensor_id", sa.Integer, _fk("sta_sensors"), nullable=False, index=True),
    sa.Column("observed_property_id", sa.Integer, _fk("sta_observed_properties"), nullable=False, index=True),
    # maintained on ingest: the phenomenon/result time envelope and the latest observation
    sa.Column("phenomenon_time_start", UTCDateTime, nullable=True),
    sa.Column("phenomenon_time_end", UTCDateTime, nullable=True),
    sa.Column("result_time_start", UTCDateTime, nullable=True),
    sa.Column("result_time_end", UTCDateTime, nullable=True),
    sa.Column("last_observation_id", sa.Integer, nullable=True),
    sa.Column("last_phenomenon_time", UTCDateTime, nullable=True),
    sa.Column("last_received_at", UTCDateTime, nullable=True),
)

sta_features = sa.Table(
    "sta_features",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("description", sa.Text, nullable=False),
    sa.Column("encoding_type", sa.String(64), nullable=False),
    sa.Column("feature", sa.JSON, nullable=False),
    sa.Column("properties", sa.JSON, nullable=True),
    *_bbox(),
)

#: result_kind values
RESULT_NUMBER, RESULT_STRING, RESULT_BOOL, RESULT_JSON, RESULT_NULL = 0, 1, 2, 3, 4

sta_observations = sa.Table(
    "sta_observations",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("datastream_id", sa.Integer, _fk("sta_datastreams"), nullable=False),
    sa.Column("feature_id", sa.Integer, _fk("sta_features"), nullable=True, index=True),
    sa.Column("phenomenon_time", UTCDateTime, nullable=False),
    sa.Column("phenomenon_time_end", UTCDateTime, nullable=True),
    sa.Column("result_time", UTCDateTime, nullable=True),
    sa.Column("valid_time_start", UTCDateTime, nullable=True),
    sa.Column("valid_time_end", UTCDateTime, nullable=True),
    sa.Column("result_kind", sa.SmallInteger, nullable=False),
    sa.Column("result_number", sa.Float, nullable=True),
    sa.Column("result_string", sa.Text, nullable=True),
    sa.Column("result_json", sa.JSON, nullable=True),
    sa.Column("result_quality", sa.JSON, nullable=True),
    sa.Column("parameters", sa.JSON, nullable=True),
    sa.Index("ix_sta_observations_ds_time", "datastream_id", "phenomenon_time"),
)

sta_api_keys = sa.Table(
    "sta_api_keys",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(64), nullable=False, unique=True),
    sa.Column("prefix", sa.String(16), nullable=False, unique=True),
    # sha256 of the whole token; tokens carry 32 random bytes, so a fast hash is safe here
    sa.Column("secret_sha256", sa.String(64), nullable=False),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("datastreams", sa.JSON, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("revoked_at", UTCDateTime, nullable=True),
)

ALL_TABLES = (
    sta_things, sta_locations, sta_thing_locations, sta_historical_locations,
    sta_historical_location_locations, sta_sensors, sta_observed_properties, sta_datastreams,
    sta_features, sta_observations, sta_api_keys,
)


def utcnow() -> datetime:
    return datetime.now(UTC)
