"""The relational schema, shared by SQLite and PostgreSQL.

Geometries are stored as GeoJSON text in WGS84 (EPSG:4326) with their bounding box in four
indexed float columns, so that bbox queries use one code path on both databases without a
spatial extension. Projected metric geometry is derived on load (see :mod:`citytwin.city.crs`).
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


def _bbox_columns() -> list[sa.Column]:
    return [
        sa.Column("minx", sa.Float, nullable=False),
        sa.Column("miny", sa.Float, nullable=False),
        sa.Column("maxx", sa.Float, nullable=False),
        sa.Column("maxy", sa.Float, nullable=False),
    ]


users = sa.Table(
    "users",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(64), nullable=False, unique=True),
    sa.Column("password_hash", sa.String(255), nullable=False),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)

cities = sa.Table(
    "cities",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(128), nullable=False, unique=True),
    sa.Column("source", sa.String(512), nullable=False),
    sa.Column("crs_epsg", sa.Integer, nullable=False),
    sa.Column("country", sa.String(2), nullable=True),
    *_bbox_columns(),
    sa.Column("imported_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("stats", sa.JSON, nullable=False),
)

buildings = sa.Table(
    "buildings",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("city_id", sa.Integer, sa.ForeignKey("cities.id", ondelete="CASCADE"), nullable=False),
    sa.Column("osm_id", sa.String(32), nullable=True),
    sa.Column("name", sa.Text, nullable=True),
    sa.Column("address", sa.Text, nullable=True),
    sa.Column("building", sa.String(64), nullable=True),
    sa.Column("use_class", sa.String(32), nullable=False),
    sa.Column("safety_class", sa.String(16), nullable=False),
    sa.Column("safety_reason", sa.JSON, nullable=False),
    sa.Column("height_m", sa.Float, nullable=False),
    sa.Column("height_source", sa.String(16), nullable=False),
    sa.Column("levels", sa.Float, nullable=True),
    sa.Column("footprint_m2", sa.Float, nullable=False),
    sa.Column("floor_area_m2", sa.Float, nullable=False),
    sa.Column("occupants_day", sa.Float, nullable=False),
    sa.Column("occupants_night", sa.Float, nullable=False),
    sa.Column("lon", sa.Float, nullable=False),
    sa.Column("lat", sa.Float, nullable=False),
    *_bbox_columns(),
    sa.Column("geometry", sa.Text, nullable=False),
    sa.Index("ix_buildings_city_bbox", "city_id", "minx", "miny"),
    sa.Index("ix_buildings_city_class", "city_id", "safety_class"),
)

network_edges = sa.Table(
    "network_edges",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("city_id", sa.Integer, sa.ForeignKey("cities.id", ondelete="CASCADE"), nullable=False),
    sa.Column("network", sa.String(8), nullable=False),  # walk | drive
    sa.Column("u", sa.BigInteger, nullable=False),
    sa.Column("v", sa.BigInteger, nullable=False),
    sa.Column("osm_id", sa.String(32), nullable=True),
    sa.Column("name", sa.Text, nullable=True),
    sa.Column("highway", sa.String(64), nullable=True),
    sa.Column("oneway", sa.Boolean, nullable=False),
    sa.Column("length_m", sa.Float, nullable=False),
    sa.Column("width_m", sa.Float, nullable=True),
    sa.Column("width_source", sa.String(16), nullable=False),
    sa.Column("lanes", sa.Integer, nullable=True),
    sa.Column("maxspeed_kmh", sa.Float, nullable=True),
    sa.Column("capacity_per_h", sa.Float, nullable=False),
    *_bbox_columns(),
    sa.Column("geometry", sa.Text, nullable=False),
    sa.Index("ix_network_edges_city_net_bbox", "city_id", "network", "minx", "miny"),
)

network_nodes = sa.Table(
    "network_nodes",
    metadata,
    sa.Column("city_id", sa.Integer, sa.ForeignKey("cities.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("network", sa.String(8), primary_key=True),
    sa.Column("node_id", sa.BigInteger, primary_key=True),
    sa.Column("lon", sa.Float, nullable=False),
    sa.Column("lat", sa.Float, nullable=False),
)

zones = sa.Table(
    "zones",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("city_id", sa.Integer, sa.ForeignKey("cities.id", ondelete="CASCADE"), nullable=False),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),  # moving | standing
    sa.Column("category", sa.String(32), nullable=False),
    sa.Column("usable_area_m2", sa.Float, nullable=False),
    sa.Column("source", sa.String(64), nullable=False),
    sa.Column("osm_id", sa.Text, nullable=True),
    sa.Column("thresholds", sa.JSON, nullable=True),
    *_bbox_columns(),
    sa.Column("geometry", sa.Text, nullable=False),
    sa.CheckConstraint("usable_area_m2 > 0", name="usable_area_positive"),
    sa.CheckConstraint("kind IN ('moving', 'standing')", name="kind_valid"),
)
