"""Estimated occupants by day and by night from floor area and a density per use class.

Occupants = floor area (m²) / m² per person × presence fraction (day or night). The table
``data/occupancy.csv`` states each density, its basis and its source. **Assumption:** design
occupant loads (IBC) are upper bounds for egress; they are scaled by a presence fraction to
estimate the people actually inside on a weekday afternoon ("day") and at night. The figures
are estimates for planning and incident triage, not a census.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

_TABLE = Path(__file__).resolve().parent / "data" / "occupancy.csv"

#: Storey height used to derive levels from a height tag and height from levels (m).
STOREY_HEIGHT_M = 3.2
#: Levels assumed when neither height nor levels is tagged (documented assumption).
DEFAULT_LEVELS = 3.0


@dataclass(frozen=True)
class OccupancyRule:
    use_class: str
    m2_per_person: float
    day_fraction: float
    night_fraction: float
    basis: str
    source: str


@lru_cache(maxsize=1)
def occupancy_table() -> dict[str, OccupancyRule]:
    """The occupancy table keyed by use class."""
    with _TABLE.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    return {
        r["use_class"]: OccupancyRule(
            use_class=r["use_class"],
            m2_per_person=float(r["m2_per_person"]),
            day_fraction=float(r["day_fraction"]),
            night_fraction=float(r["night_fraction"]),
            basis=r["basis"],
            source=r["source"],
        )
        for r in rows
    }


def occupants(
    *, floor_area_m2: np.ndarray, use_classes: np.ndarray | list[str]
) -> tuple[np.ndarray, np.ndarray]:
    """Estimated occupants ``(day, night)`` for arrays of floor areas (m²) and use classes.

    Examples
    --------
    >>> d, n = occupants(floor_area_m2=np.array([400.0, 139.0]),
    ...                  use_classes=["residential", "office"])
    >>> np.round(d, 1).tolist(), np.round(n, 1).tolist()
    ([3.5, 6.0], [9.5, 0.2])
    """
    table = occupancy_table()
    area = np.asarray(floor_area_m2, dtype=float)
    dens = np.empty_like(area)
    dayf = np.empty_like(area)
    nightf = np.empty_like(area)
    for i, u in enumerate(use_classes):
        rule = table.get(u) or table["mixed"]
        dens[i] = 0.0 if rule.m2_per_person == 0 else 1.0 / rule.m2_per_person
        dayf[i] = rule.day_fraction
        nightf[i] = rule.night_fraction
    people = area * dens
    return people * dayf, people * nightf


def levels_and_height(
    *, height_tag: float | None, levels_tag: float | None
) -> tuple[float, float, str]:
    """``(levels, height_m, source)`` from tags: height, else levels × 3.2 m, else default."""
    if height_tag is not None and height_tag > 0:
        levels = levels_tag if levels_tag and levels_tag > 0 else max(1.0, round(height_tag / STOREY_HEIGHT_M))
        return float(levels), float(height_tag), "height"
    if levels_tag is not None and levels_tag > 0:
        return float(levels_tag), float(levels_tag) * STOREY_HEIGHT_M, "levels"
    return DEFAULT_LEVELS, DEFAULT_LEVELS * STOREY_HEIGHT_M, "default"
