"""Street-network attributes: effective width, lanes and a capacity estimate per segment.

Walk capacity (persons/h) = effective width (m) × 1.3 persons/(m·s) × 3600, the IMO
MSC.1/Circ.1533 specific flow for corridors, close to Weidmann's maximum of 1.22. Width is the
``width`` tag (or ``est_width``), else a default per highway type (table below).
Drive capacity (vehicles/h) = lanes × 1,800 veh/(h·lane) (HCM 2010 base saturation flow for
urban streets ~1,900; 1,800 allows for signals); lanes from the tag, else a default per type.
"""

from __future__ import annotations

import math
import re

WALK_SPECIFIC_FLOW_P_PER_M_S = 1.3
DRIVE_VEH_PER_H_PER_LANE = 1800.0

#: Default walkable width (m) per highway type when untagged (assumption, documented).
DEFAULT_WALK_WIDTH_M = {
    "pedestrian": 8.0,
    "living_street": 5.0,
    "footway": 2.5,
    "path": 2.0,
    "steps": 2.0,
    "cycleway": 2.0,
    "corridor": 2.5,
    "residential": 3.0,  # two sidewalks of 1.5 m
    "service": 2.0,
    "unclassified": 3.0,
    "tertiary": 4.0,
    "secondary": 5.0,
    "primary": 5.0,
    "trunk": 3.0,
    "track": 2.5,
    "bridleway": 2.0,
}
#: Default lanes (both directions) per highway type when untagged.
DEFAULT_LANES = {
    "motorway": 4,
    "trunk": 4,
    "primary": 4,
    "secondary": 2,
    "tertiary": 2,
    "unclassified": 2,
    "residential": 2,
    "living_street": 1,
    "service": 1,
    "motorway_link": 1,
    "trunk_link": 1,
    "primary_link": 1,
    "secondary_link": 1,
    "tertiary_link": 1,
}

_NUM = re.compile(r"[-+]?\d+(?:[.,]\d+)?")


def parse_number(value: object) -> float | None:
    """First number in an OSM tag value (``"3.5 m"`` → 3.5, ``"50 mph"`` → 80.5 km/h)."""
    if value is None:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, int | float):
        return float(value)
    text = str(value)
    m = _NUM.search(text)
    if not m:
        return None
    num = float(m.group(0).replace(",", "."))
    if "mph" in text:
        num *= 1.609344
    return num


def walk_capacity(*, highway: str | None, width_tag: object) -> tuple[float, str, float]:
    """``(width_m, width_source, capacity_persons_per_h)`` of a walkable segment."""
    width = parse_number(width_tag)
    source = "tag"
    if width is None or width <= 0 or width > 100:
        width = DEFAULT_WALK_WIDTH_M.get(highway or "", 2.0)
        source = "default"
    return width, source, width * WALK_SPECIFIC_FLOW_P_PER_M_S * 3600.0


def drive_capacity(
    *, highway: str | None, lanes_tag: object, oneway: bool
) -> tuple[int, str, float]:
    """``(lanes, source, capacity_vehicles_per_h)`` in the direction(s) of travel."""
    lanes_f = parse_number(lanes_tag)
    source = "tag"
    if lanes_f is None or lanes_f <= 0 or lanes_f > 16:
        lanes_f = DEFAULT_LANES.get(highway or "", 2)
        if oneway:
            lanes_f = max(1, lanes_f // 2)
        source = "default"
    lanes = int(lanes_f)
    per_direction = lanes if oneway else max(1, lanes // 2)
    return lanes, source, per_direction * DRIVE_VEH_PER_H_PER_LANE
