"""The SensorThings data model: the eight entity types, their properties and relations.

One table-driven description serves serialisation, parsing, ``$filter`` compilation,
navigation and cascading deletes (:mod:`citytwin.sensors.service`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import sqlalchemy as sa

from citytwin.sensors import schema as s


@dataclass(frozen=True)
class Prop:
    """A JSON property of an entity. ``kind``: str, json, geo, time, interval, result, ro."""

    name: str
    column: str | None
    kind: str
    required: bool = False


@dataclass(frozen=True)
class Rel:
    """A navigation property; ``via`` is ``self`` (FK here), ``other`` (FK on target) or ``link``."""

    name: str
    target: str
    many: bool
    via: str
    column: str | None = None
    link: sa.Table | None = None
    link_self: str | None = None
    link_other: str | None = None
    required: bool = False


@dataclass(frozen=True)
class Entity:
    name: str
    plural: str
    table: sa.Table
    props: tuple[Prop, ...]
    rels: tuple[Rel, ...]
    bbox_prop: str | None = None
    prop_by_name: dict = field(default_factory=dict, compare=False, hash=False)
    rel_by_name: dict = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self):
        self.prop_by_name.update({p.name: p for p in self.props})
        self.rel_by_name.update({r.name: r for r in self.rels})


_NAME = Prop("name", "name", "str", True)
_DESC = Prop("description", "description", "str", True)
_PROPS = Prop("properties", "properties", "json")
_ENC = Prop("encodingType", "encoding_type", "str", True)

ENTITIES: dict[str, Entity] = {}


def _add(e: Entity) -> None:
    ENTITIES[e.name] = e


_add(Entity("Thing", "Things", s.sta_things, (_NAME, _DESC, _PROPS), (
    Rel("Locations", "Location", True, "link", link=s.sta_thing_locations, link_self="thing_id", link_other="location_id"),
    Rel("HistoricalLocations", "HistoricalLocation", True, "other", column="thing_id"),
    Rel("Datastreams", "Datastream", True, "other", column="thing_id"),
)))
_add(Entity("Location", "Locations", s.sta_locations, (_NAME, _DESC, _ENC, Prop("location", "location", "geo", True), _PROPS), (
    Rel("Things", "Thing", True, "link", link=s.sta_thing_locations, link_self="location_id", link_other="thing_id"),
    Rel("HistoricalLocations", "HistoricalLocation", True, "link", link=s.sta_historical_location_locations,
        link_self="location_id", link_other="historical_location_id"),
), bbox_prop="location"))
_add(Entity("HistoricalLocation", "HistoricalLocations", s.sta_historical_locations, (Prop("time", "time", "time", True),), (
    Rel("Thing", "Thing", False, "self", column="thing_id", required=True),
    Rel("Locations", "Location", True, "link", link=s.sta_historical_location_locations,
        link_self="historical_location_id", link_other="location_id"),
)))
_add(Entity("Datastream", "Datastreams", s.sta_datastreams, (
    _NAME, _DESC, Prop("observationType", "observation_type", "str", True),
    Prop("unitOfMeasurement", "unit_of_measurement", "json", True), Prop("observedArea", "observed_area", "geo"),
    Prop("phenomenonTime", "phenomenon_time_start", "ro"), Prop("resultTime", "result_time_start", "ro"), _PROPS,
), (
    Rel("Thing", "Thing", False, "self", column="thing_id", required=True),
    Rel("Sensor", "Sensor", False, "self", column="sensor_id", required=True),
    Rel("ObservedProperty", "ObservedProperty", False, "self", column="observed_property_id", required=True),
    Rel("Observations", "Observation", True, "other", column="datastream_id"),
)))
_add(Entity("Sensor", "Sensors", s.sta_sensors, (_NAME, _DESC, _ENC, Prop("metadata", "metadata", "str", True), _PROPS), (
    Rel("Datastreams", "Datastream", True, "other", column="sensor_id"),
)))
_add(Entity("ObservedProperty", "ObservedProperties", s.sta_observed_properties, (
    _NAME, Prop("definition", "definition", "str", True), _DESC, _PROPS), (
    Rel("Datastreams", "Datastream", True, "other", column="observed_property_id"),
)))
_add(Entity("Observation", "Observations", s.sta_observations, (
    Prop("phenomenonTime", "phenomenon_time", "ptime"), Prop("resultTime", "result_time", "time"),
    Prop("result", None, "result", True), Prop("resultQuality", "result_quality", "json"),
    Prop("validTime", "valid_time_start", "interval"), Prop("parameters", "parameters", "json"),
), (
    Rel("Datastream", "Datastream", False, "self", column="datastream_id", required=True),
    Rel("FeatureOfInterest", "FeatureOfInterest", False, "self", column="feature_id"),
)))
_add(Entity("FeatureOfInterest", "FeaturesOfInterest", s.sta_features, (
    _NAME, _DESC, _ENC, Prop("feature", "feature", "geo", True), _PROPS), (
    Rel("Observations", "Observation", True, "other", column="feature_id"),
), bbox_prop="feature"))

BY_PLURAL: dict[str, Entity] = {e.plural: e for e in ENTITIES.values()}


def inverse(entity: Entity, rel: Rel) -> Rel:
    """The relation on ``rel.target`` that points back to ``entity``."""
    target = ENTITIES[rel.target]
    for r in target.rels:
        if r.target == entity.name:
            return r
    raise KeyError(f"no inverse of {entity.name}.{rel.name}")
