"""Privacy rules for crowd data: k-anonymity per zone-hour, and no raw positions.

Dutch practice suppresses counts below 15 per cell per hour (DOMAIN.md §1: Amsterdam's crowd
monitoring, the 2020 RIVM telecom counts), so the default k is 15. A suppressed count is
stored as ``null`` with ``{"suppressed": true, "k": k}``; the true number is never kept.
Pure functions, no I/O.
"""

from __future__ import annotations

from typing import Any

DEFAULT_K = 15

#: Field names that reveal individual devices or their positions (compared lower-case).
RAW_POSITION_FIELDS = frozenset({
    "lat", "lon", "lng", "latitude", "longitude", "coordinates", "coords", "position", "positions", "location",
    "locations", "geometry", "point", "points", "trace", "traces", "track", "tracks", "gps", "geo",
    "device", "device_id", "deviceid", "devices", "device_ids", "user_id", "userid", "ad_id", "advertising_id",
    "idfa", "gaid", "mac", "mac_address", "imei", "imsi", "msisdn",
})


def suppress(count: int, *, k: int = DEFAULT_K) -> tuple[int | None, dict]:
    """``(result, quality)``: the count when ``count >= k``, else ``None`` and ``suppressed: True``.

    >>> suppress(14)
    (None, {'suppressed': True, 'k': 15})
    >>> suppress(15)
    (15, {'suppressed': False, 'k': 15})
    """
    if k < 2:
        raise ValueError("k: must be >= 2")
    if count < k:
        return None, {"suppressed": True, "k": k}
    return count, {"suppressed": False, "k": k}


def find_raw_positions(payload: Any, *, path: str = "", limit: int = 100) -> list[str]:
    """Paths of fields that carry device positions or ids, anywhere in a JSON value.

    >>> find_raw_positions({"aggregates": [{"zone_id": 1, "hour": "…", "count": 20}]})
    []
    >>> find_raw_positions({"points": [{"device_id": "x", "lat": 60.1, "lon": 24.9}]})
    ['points']
    >>> find_raw_positions([{"lat": 60.1, "lon": 24.9}])
    ['[0].lat', '[0].lon']
    """
    found: list[str] = []

    def walk(v: Any, p: str) -> None:
        if len(found) >= limit:
            return
        if isinstance(v, dict):
            for key, val in v.items():
                kp = f"{p}.{key}" if p else str(key)
                if str(key).lower() in RAW_POSITION_FIELDS:
                    found.append(kp)
                else:
                    walk(val, kp)
        elif isinstance(v, list):
            for i, val in enumerate(v[:10_000]):
                walk(val, f"{p}[{i}]")

    walk(payload, path)
    return found
