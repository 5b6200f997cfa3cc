"""Privacy kernels: k-anonymity per zone-hour, raw positions found anywhere in a payload."""

from __future__ import annotations

import pytest

from citytwin.sensors.privacy import DEFAULT_K, find_raw_positions, suppress


def test_default_k_is_15_per_zone_hour():
    assert DEFAULT_K == 15
    assert suppress(14) == (None, {"suppressed": True, "k": 15})
    assert suppress(15) == (15, {"suppressed": False, "k": 15})
    assert suppress(0)[0] is None


def test_k_is_configurable_and_checked():
    assert suppress(9, k=10)[1]["suppressed"] and not suppress(10, k=10)[1]["suppressed"]
    with pytest.raises(ValueError, match="k"):
        suppress(3, k=1)


@pytest.mark.parametrize("payload, expected", [
    ({"aggregates": [{"zone_id": 1, "hour": "2025-01-01T10:00:00Z", "count": 20}]}, []),
    ({"points": [{"lat": 1, "lon": 2}]}, ["points"]),
    ({"aggregates": [{"zone_id": 1, "latitude": 60.1, "longitude": 24.9}]}, ["aggregates[0].latitude", "aggregates[0].longitude"]),
    ({"aggregates": [{"zone_id": 1, "count": 3, "device_id": "abc"}]}, ["aggregates[0].device_id"]),
    ([{"Lat": 1.0, "LON": 2.0}], ["[0].Lat", "[0].LON"]),
])
def test_raw_positions_are_found(payload, expected):
    assert find_raw_positions(payload) == expected
