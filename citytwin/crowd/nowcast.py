"""Nowcast of one zone: people, density, range, level, trend, data age — from any sources.

Pure: takes readings (already read from the store), returns a JSON-ready dict. Opens nothing.

How each source becomes an estimate of the people in the zone (persons; density = persons /
usable area in m²):

* **area counter** (``kind="area"``: a camera counting people *in* the zone): people = count,
  range ±10 % (our assumption for camera counting error; dense crowds occlude more);
* **line counter** (``kind="line"``: persons/hour crossing a line of effective width W):
  q = N_h / 3600 / W (persons/m/s), density k = q / v with v = 1.3 m/s (DOMAIN.md §2); the range
  takes v from 1.5 m/s (brisk free flow) down to 0.8 m/s (slowed by the crowd), so
  k ∈ [q/1.5, q/0.8]. In a *standing* zone a line counter under-reads exactly when the square
  fills up: the result says so (``notes``) and its level is a lower bound;
* **app-GPS aggregates** (``kind="appgps"``: visitors per zone-hour): an estimate only when the
  source states an expansion factor (``scale``: people per app user), with ±30 %; otherwise,
  and when suppressed below k, it is listed as context;
* **indicators** (``kind="indicator"``: parking occupancy, shared vehicles, public-transport
  arrivals nearby): listed as context with their value and change over the hour, never turned
  into people.

Sources are *not* averaged away: when the ranges of two fresh estimates do not overlap, the
result says ``disagree: true``, lists every source's own estimate, reports the busier one (the
safe side) and a range covering all of them. A source is stale when its newest value is older
than twice its expected interval (or ``max_age_s``); stale sources are left out while fresh
ones exist, and when only stale ones remain the result is flagged ``stale: true``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from citytwin.crowd.levels import FREE_FLOW_SPEED_M_S, LEVELS, level_of, thresholds_for

__all__ = [
    "APPGPS_REL_ERROR",
    "AREA_REL_ERROR",
    "SPEED_RANGE_M_S",
    "Reading",
    "ZoneSpec",
    "nowcast_zone",
    "worst_level",
]

#: Relative counting error assumed for area-counting cameras (±).
AREA_REL_ERROR = 0.10
#: Relative error assumed for app-GPS visitor counts scaled by an expansion factor (±).
APPGPS_REL_ERROR = 0.30
#: Walking speeds (m/s) bounding the flow → density conversion of a line counter.
SPEED_RANGE_M_S = (0.8, 1.5)
#: A source is stale when its newest value is older than this × its expected interval.
STALE_FACTOR = 2.0
#: Relative change over the last hour that counts as rising/falling.
TREND_THRESHOLD = 0.10


@dataclass(frozen=True)
class ZoneSpec:
    """The zone: ``kind`` moving|standing, ``area_m2`` usable area (m²), threshold overrides."""

    id: int
    name: str
    kind: str
    area_m2: float | None
    thresholds: dict | None = None


@dataclass(frozen=True)
class Reading:
    """The newest value of one source for a zone.

    ``value`` is in the source's unit: persons present (area), persons/hour (line), visitors per
    hour (appgps), anything (indicator). ``age_s`` is seconds since the value's time;
    ``value_1h_ago`` the value about an hour earlier (for the trend).
    """

    source: str
    kind: str
    value: float | None
    age_s: float | None
    expected_interval_s: float | None = None
    width_m: float | None = None
    scale: float | None = None
    value_1h_ago: float | None = None
    origin: str = "real"
    unit: str = ""
    datastream_id: int | None = None
    suppressed: bool = False


def _estimate(r: Reading, zone: ZoneSpec) -> tuple[float, float, float] | None:
    """(people, low, high) from one reading, or None when it says nothing about people."""
    if r.value is None or r.value != r.value:
        return None
    v = max(float(r.value), 0.0)
    if r.kind == "area":
        return v, v * (1 - AREA_REL_ERROR), v * (1 + AREA_REL_ERROR)
    if r.kind == "line":
        if not r.width_m or not zone.area_m2:
            return None
        q = v / 3600.0 / r.width_m  # persons/m/s
        a = zone.area_m2
        return q / FREE_FLOW_SPEED_M_S * a, q / SPEED_RANGE_M_S[1] * a, q / SPEED_RANGE_M_S[0] * a
    if r.kind == "appgps" and r.scale and not r.suppressed:
        p = v * r.scale
        return p, p * (1 - APPGPS_REL_ERROR), p * (1 + APPGPS_REL_ERROR)
    return None


def _is_stale(r: Reading, max_age_s: float | None) -> bool:
    if r.age_s is None:
        return True
    if max_age_s is not None and r.age_s > max_age_s:
        return True
    return r.expected_interval_s is not None and r.age_s > STALE_FACTOR * r.expected_interval_s


def _r(x: float | None, nd: int = 3) -> float | None:
    return None if x is None else round(float(x), nd)


def nowcast_zone(
    zone: ZoneSpec, readings: Sequence[Reading], *, max_age_s: float | None = None
) -> dict[str, Any]:
    """Nowcast one zone from its readings.

    Parameters
    ----------
    zone : ZoneSpec
        The zone (usable area in m², kind and threshold overrides).
    readings : sequence of Reading
        The newest value of every source tied to the zone.
    max_age_s : float, optional
        Treat values older than this (seconds) as stale, whatever their expected interval.

    Returns
    -------
    dict
        ``people``/``people_low``/``people_high`` (persons), ``density``/``density_low``/
        ``density_high`` (persons/m²), ``level`` (and ``level_low``/``level_high`` from the
        range), ``trend`` (rising|falling|steady|None) with ``trend_change`` (relative, over
        the last hour), ``data_age_s`` (oldest value used), ``stale``, ``disagree``,
        ``sources`` (each with its own estimate and flags), ``context`` (indicators),
        ``origins``, ``replayed``, ``notes``, ``error`` (e.g. a zone without area).

    Examples
    --------
    >>> z = ZoneSpec(1, "square", "standing", 100.0)
    >>> nc = nowcast_zone(z, [Reading("cam", "area", 180, age_s=30, expected_interval_s=60)])
    >>> nc["density"], nc["level"], nc["level_high"]
    (1.8, 'amber', 'amber')
    """
    thresholds = thresholds_for(zone.kind, zone.thresholds)
    out: dict[str, Any] = {
        "zone_id": zone.id,
        "name": zone.name,
        "kind": zone.kind,
        "usable_area_m2": _r(zone.area_m2, 1),
        "thresholds": thresholds,
        "people": None,
        "people_low": None,
        "people_high": None,
        "density": None,
        "density_low": None,
        "density_high": None,
        "level": None,
        "level_low": None,
        "level_high": None,
        "trend": None,
        "trend_change": None,
        "data_age_s": None,
        "stale": False,
        "disagree": False,
        "sources": [],
        "context": [],
        "origins": [],
        "replayed": False,
        "notes": [],
        "error": None,
    }
    if not zone.area_m2 or not zone.area_m2 > 0:
        out["error"] = {
            "field": "usable_area_m2",
            "message": f"zone {zone.id} has no usable area; set usable_area_m2 > 0 to get a density",
        }
    ests = []
    for r in readings:
        est = _estimate(r, zone) if out["error"] is None else None
        stale = _is_stale(r, max_age_s)
        row: dict[str, Any] = {
            "source": r.source,
            "kind": r.kind,
            "datastream_id": r.datastream_id,
            "value": _r(r.value, 2),
            "unit": r.unit,
            "age_s": _r(r.age_s, 1),
            "stale": stale,
            "origin": r.origin,
            "suppressed": r.suppressed,
        }
        if est is None:
            if r.kind == "appgps" and not r.scale:
                row["note"] = "app-GPS visitors without an expansion factor: context only"
            if r.suppressed:
                row["note"] = "suppressed (fewer than k visitors in the zone-hour)"
            out["context"].append(row)
            continue
        people, lo, hi = est
        a = zone.area_m2
        row.update(
            people=_r(people, 1),
            people_low=_r(lo, 1),
            people_high=_r(hi, 1),
            density=_r(people / a),
            density_low=_r(lo / a),
            density_high=_r(hi / a),
            level=level_of(people / a, thresholds),
        )
        if r.kind == "line" and zone.kind == "standing":
            row["note"] = (
                "line counter in a standing zone: under-reads when the square fills up (lower bound)"
            )
        out["sources"].append(row)
        ests.append((r, est, stale))

    for r in readings:
        if r.kind == "line" and zone.kind == "standing":
            out["notes"].append(
                "a line counter measures flow, not the people standing in the square: "
                "its level is a lower bound"
            )
            break
    fresh = [e for e in ests if not e[2]]
    used = fresh or ests
    if not used:
        if readings and out["error"] is None:
            out["notes"].append("no source gives a people estimate for this zone")
        out["origins"] = sorted({r.origin for r in readings})
        out["replayed"] = "replayed" in out["origins"]
        return out
    if not fresh:
        out["stale"] = True
        out["notes"].append("every source is stale: the figures are old")
    elif len(fresh) < len(ests):
        out["notes"].append(f"{len(ests) - len(fresh)} stale source(s) left out")

    lows = [e[1][1] for e in used]
    highs = [e[1][2] for e in used]
    points = [e[1][0] for e in used]
    if max(lows) <= min(highs):  # all ranges overlap: they tell one story
        lo, hi = max(lows), min(highs)
        pts = sorted(points)
        mid = (
            pts[len(pts) // 2]
            if len(pts) % 2
            else 0.5 * (pts[len(pts) // 2 - 1] + pts[len(pts) // 2])
        )
        people = min(max(mid, lo), hi)
    else:
        out["disagree"] = True
        lo, hi = min(lows), max(highs)
        people = max(points)
        desc = ", ".join(
            f"{e[0].source}: {e[1][0]:.0f} ({e[1][1]:.0f}–{e[1][2]:.0f})" for e in used
        )
        out["notes"].append(
            f"sources disagree (people {desc}); showing the busiest, range covers all"
        )
    a = zone.area_m2
    primary = max(used, key=lambda e: e[1][0])[0]
    out.update(
        people=_r(people, 1),
        people_low=_r(lo, 1),
        people_high=_r(hi, 1),
        density=_r(people / a),
        density_low=_r(lo / a),
        density_high=_r(hi / a),
        level=level_of(people / a, thresholds),
        level_low=level_of(lo / a, thresholds),
        level_high=level_of(hi / a, thresholds),
        data_age_s=_r(max((e[0].age_s or 0.0) for e in used), 1),
    )
    if primary.value_1h_ago is not None and primary.value is not None:
        before = float(primary.value_1h_ago)
        change = (float(primary.value) - before) / max(before, 1.0)
        out["trend_change"] = _r(change)
        out["trend"] = (
            "rising"
            if change > TREND_THRESHOLD
            else "falling"
            if change < -TREND_THRESHOLD
            else "steady"
        )
    out["origins"] = sorted({r.origin for r in readings})
    out["replayed"] = "replayed" in out["origins"]
    return out


def worst_level(levels: Sequence[str | None]) -> str | None:
    """The highest level in ``levels`` (None ignored).

    >>> worst_level(["green", None, "red", "amber"])
    'red'
    """
    idx = [LEVELS.index(x) for x in levels if x is not None]
    return LEVELS[max(idx)] if idx else None
