"""Crowd levels: density thresholds per zone kind (DOMAIN.md §2), configurable per zone.

Density is persons per m² of *usable* area. Defaults:

========  =============================  ==========================  =========================  ===========================
kind      green                          amber                       red                        critical
========  =============================  ==========================  =========================  ===========================
moving    < 0.7 /m² (Fruin walkway A–C)  0.7–1.1 (Fruin D)           1.1–2 (Fruin E)            ≥ 2 (Fruin F, flow breakdown)
standing  < 1.5 /m² (Fruin queue A–C)    1.5–3 (queue D; NL events   3–4.7 (queue E)            ≥ 4.7 (Taylor Report / UK
                                         plan 2–2.5 on average)                                 Green Guide static maximum,
                                                                                                47 per 10 m²; Still: > 5
                                                                                                dangerous)
========  =============================  ==========================  =========================  ===========================

Sources: J. J. Fruin, *Pedestrian Planning and Design* (1971/1987), level-of-service tables for
walkways and queues; G. K. Still, *Introduction to Crowd Science* (2014); the Taylor Report
(1990) recommendation of 47 persons per 10 m². DOMAIN.md gives the standing critical threshold
as "≥ 4.7–5"; the default takes the lower, safer 4.7.

A zone overrides any of the three boundaries with its ``thresholds`` JSON column, e.g.
``{"amber": 0.5, "red": 0.9, "critical": 1.5}`` (persons/m²); missing keys keep the default.

A line counter measures flow, not density. With the walkway's effective width W (m) and the
free-flow walking speed v ≈ 1.3 m/s: q = N_hour / 3600 / W (persons/m/s) and k ≈ q / v
(persons/m²) (DOMAIN.md §2). :func:`count_thresholds` turns density thresholds into counts.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = [
    "DEFAULT_THRESHOLDS",
    "FREE_FLOW_SPEED_M_S",
    "LEVELS",
    "SOURCES",
    "LevelError",
    "count_thresholds",
    "flow_to_density",
    "level_index",
    "level_of",
    "thresholds_for",
]

#: Levels, lowest first.
LEVELS: tuple[str, ...] = ("green", "amber", "red", "critical")
#: Boundaries (persons/m², lower bound of each level above green) per zone kind.
DEFAULT_THRESHOLDS: dict[str, dict[str, float]] = {
    "moving": {"amber": 0.7, "red": 1.1, "critical": 2.0},
    "standing": {"amber": 1.5, "red": 3.0, "critical": 4.7},
}
#: Where each default comes from (shown by the API next to the thresholds).
SOURCES: dict[str, dict[str, str]] = {
    "moving": {
        "amber": "Fruin walkway level of service D starts at 0.7 /m² (Pedestrian Planning and Design, 1971/1987)",
        "red": "Fruin walkway level of service E starts at about 1.1 /m²",
        "critical": "Fruin walkway level of service F (flow breakdown) at 2 /m²",
    },
    "standing": {
        "amber": "Fruin queue level of service D starts at 1.5 /m²; Dutch event planning uses 2–2.5 on average",
        "red": "Fruin queue level of service E starts at 3 /m²",
        "critical": "Taylor Report / UK Green Guide static maximum 47 per 10 m² (4.7 /m²); Still (2014): above 5 dangerous",
    },
}
#: Free-flow walking speed for the flow → density conversion (m/s), DOMAIN.md §2.
FREE_FLOW_SPEED_M_S = 1.3
_BOUNDS = ("amber", "red", "critical")


class LevelError(ValueError):
    """Bad thresholds or zone parameters; ``field`` names the offending field."""

    def __init__(self, message: str, *, field: str) -> None:
        super().__init__(message)
        self.field = field


def thresholds_for(kind: str, override: Mapping[str, Any] | None = None) -> dict[str, float]:
    """The density boundaries (persons/m²) of a zone: defaults of its kind, then its overrides.

    Parameters
    ----------
    kind : str
        ``"moving"`` or ``"standing"``.
    override : mapping, optional
        Any of ``amber``, ``red``, ``critical`` in persons/m² (the zone's ``thresholds``).

    Raises
    ------
    LevelError
        Unknown kind (field ``kind``), unknown key, a non-positive value or boundaries that do
        not increase (field ``thresholds.<key>``).

    Examples
    --------
    >>> thresholds_for("moving")
    {'amber': 0.7, 'red': 1.1, 'critical': 2.0}
    >>> thresholds_for("standing", {"critical": 5.0})["critical"]
    5.0
    """
    if kind not in DEFAULT_THRESHOLDS:
        raise LevelError(
            f"kind: one of {', '.join(DEFAULT_THRESHOLDS)}, got {kind!r}", field="kind"
        )
    out = dict(DEFAULT_THRESHOLDS[kind])
    for key, value in (override or {}).items():
        if key not in _BOUNDS:
            raise LevelError(
                f"thresholds.{key}: unknown; accepted: amber, red, critical (persons/m²)",
                field=f"thresholds.{key}",
            )
        if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
            raise LevelError(
                f"thresholds.{key}: a density > 0 persons/m², got {value!r}",
                field=f"thresholds.{key}",
            )
        out[key] = float(value)
    if not out["amber"] < out["red"] < out["critical"]:
        raise LevelError(
            f"thresholds: must increase amber < red < critical, got {out}", field="thresholds.red"
        )
    return out


def level_index(density: float | np.ndarray, thresholds: Mapping[str, float]) -> np.ndarray:
    """Index into :data:`LEVELS` per density (persons/m²); NaN → -1.

    Examples
    --------
    >>> level_index(np.array([0.1, 0.7, 1.5, 2.0, np.nan]), thresholds_for("moving")).tolist()
    [0, 1, 2, 3, -1]
    """
    d = np.asarray(density, dtype=float)
    edges = np.array([thresholds[k] for k in _BOUNDS])
    idx = np.searchsorted(edges, d, side="right")
    return np.where(np.isnan(d), -1, idx)


def level_of(density: float | None, thresholds: Mapping[str, float]) -> str | None:
    """The level name of one density (persons/m²); None for a missing density.

    Examples
    --------
    >>> level_of(1.2, thresholds_for("moving")), level_of(1.2, thresholds_for("standing"))
    ('red', 'green')
    """
    if density is None or density != density:
        return None
    return LEVELS[int(level_index(density, thresholds))]


def flow_to_density(
    persons_per_hour: float | np.ndarray, *, width_m: float, speed_m_s: float = FREE_FLOW_SPEED_M_S
) -> np.ndarray:
    """Density (persons/m²) from a line counter's hourly flow: k = N_h / 3600 / W / v.

    Examples
    --------
    >>> float(flow_to_density(4680.0, width_m=1.0))  # 1.3 persons/m/s at 1.3 m/s
    1.0
    """
    if not width_m > 0:
        raise LevelError(
            f"effective_width_m: the line's effective width in metres (> 0), got {width_m!r}",
            field="effective_width_m",
        )
    return np.asarray(persons_per_hour, dtype=float) / 3600.0 / width_m / speed_m_s


def count_thresholds(
    thresholds: Mapping[str, float],
    *,
    counting: str,
    area_m2: float | None = None,
    width_m: float | None = None,
    speed_m_s: float = FREE_FLOW_SPEED_M_S,
) -> dict[str, float]:
    """Density boundaries expressed in the sensor's own unit.

    ``counting="zone"``: people present (density × usable area, m²); ``counting="line"``:
    persons/hour crossing the line (density × v × W × 3600).

    Examples
    --------
    >>> count_thresholds({"amber": 0.5, "red": 1.0, "critical": 2.0}, counting="zone", area_m2=100)
    {'amber': 50.0, 'red': 100.0, 'critical': 200.0}
    >>> round(count_thresholds({"amber": 1.0, "red": 2.0, "critical": 3.0}, counting="line", width_m=1.0)["amber"])
    4680
    """
    if counting == "zone":
        if area_m2 is None or not area_m2 > 0:
            raise LevelError(
                f"usable_area_m2: the zone has no usable area (got {area_m2!r}); "
                "set it to a value > 0 m²",
                field="usable_area_m2",
            )
        factor = float(area_m2)
    elif counting == "line":
        if width_m is None or not width_m > 0:
            raise LevelError(
                "effective_width_m: a line counter needs the line's effective width in metres (> 0)",
                field="effective_width_m",
            )
        factor = float(width_m) * speed_m_s * 3600.0
    else:
        raise LevelError(f"counting: 'zone' or 'line', got {counting!r}", field="counting")
    return {k: float(thresholds[k]) * factor for k in _BOUNDS}
