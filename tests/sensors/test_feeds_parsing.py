"""Feed payload parsing and validation (pure functions; no database)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from citytwin.sensors.feeds import FeedError
from citytwin.sensors.feeds._base import Source
from citytwin.sensors.feeds.appgps import parse_aggregates
from citytwin.sensors.feeds.gbfs import parse_gbfs
from citytwin.sensors.feeds.parking import occupancy_flags, occupancy_items
from citytwin.sensors.feeds.traffic import traffic_items, traffic_level
from citytwin.sensors.feeds.weather import weather_items

T = 1_750_000_000


def bike(i: int, **kw) -> dict:
    return {"bike_id": f"b{i}", "lat": 60.17, "lon": 24.94, "is_reserved": False, "is_disabled": False,
            "last_reported": T - i, **kw}


def vehicle(i: int, **kw) -> dict:
    return {"vehicle_id": f"v{i}", "lat": 60.17, "lon": 24.94, "is_reserved": False, "is_disabled": False,
            "last_reported": "2025-06-15T10:00:00+03:00", **kw}


def test_gbfs_23_good():
    doc = {"last_updated": T, "ttl": 60, "version": "2.3", "data": {"bikes": [bike(0), bike(1, is_reserved=True)]}}
    out = parse_gbfs(doc)
    assert out["version"] == "2.3" and len(out["vehicles"]) == 2
    assert out["last_updated"] == datetime.fromtimestamp(T, UTC)
    assert out["vehicles"][0]["last_reported"] == datetime.fromtimestamp(T, UTC)
    assert "bike_id" not in out["vehicles"][0]  # ids are checked, then dropped


def test_gbfs_30_good():
    doc = {"last_updated": "2025-06-15T10:00:05+03:00", "ttl": 0, "version": "3.0",
           "data": {"vehicles": [vehicle(0), vehicle(1, is_disabled=True)]}}
    out = parse_gbfs(doc)
    assert out["version"] == "3.0" and len(out["vehicles"]) == 2
    assert out["vehicles"][0]["last_reported"] == datetime(2025, 6, 15, 7, 0, tzinfo=UTC)


def test_gbfs_missing_fields_are_all_listed():
    b = bike(1)
    del b["lat"], b["is_disabled"]
    v = bike(2)
    del v["bike_id"]
    doc = {"last_updated": T, "ttl": 60, "version": "2.3", "data": {"bikes": [bike(0), b, v]}}
    with pytest.raises(FeedError) as e:
        parse_gbfs(doc)
    assert e.value.status == 422
    assert set(e.value.fields) == {"data.bikes[1].lat", "data.bikes[1].is_disabled", "data.bikes[2].bike_id"}
    assert "data.bikes[1].lat" in str(e.value) and "nothing stored" in str(e.value)


def test_gbfs_timestamp_types_follow_the_version():
    with pytest.raises(FeedError, match=r"data.bikes\[0\].last_reported \(GBFS 2.3: POSIX"):
        parse_gbfs({"last_updated": T, "ttl": 60, "version": "2.3", "data": {"bikes": [bike(0, last_reported="2025-01-01T00:00:00Z")]}})
    with pytest.raises(FeedError, match=r"data.vehicles\[0\].last_reported \(GBFS 3.0: an RFC 3339"):
        parse_gbfs({"last_updated": "2025-01-01T00:00:00Z", "ttl": 0, "version": "3.0", "data": {"vehicles": [vehicle(0, last_reported=T)]}})
    with pytest.raises(FeedError, match="vehicle_id"):
        parse_gbfs({"last_updated": "2025-01-01T00:00:00Z", "version": "3.0", "data": {"vehicles": [bike(0)]}})


@pytest.mark.parametrize("doc, field", [
    ({"version": "2.3"}, "data"),
    ({"last_updated": T, "data": {"stations": []}}, "data.bikes"),
    ({"last_updated": T, "version": "2.3", "data": {"bikes": {}}}, "data.bikes"),
    ({"last_updated": T, "version": "2.3", "data": {"bikes": [bike(0, lat=123.0)]}}, "data.bikes[0].lat"),
    ({"last_updated": T, "version": "2.3", "data": {"bikes": [bike(0, is_reserved="no")]}}, "data.bikes[0].is_reserved"),
    ({"version": "2.3", "data": {"bikes": [bike(0)]}}, "last_updated"),
])
def test_gbfs_bad_documents(doc, field):
    with pytest.raises(FeedError) as e:
        parse_gbfs(doc)
    assert 400 <= e.value.status < 500 and field in e.value.fields


def test_gbfs_not_an_object_is_400():
    with pytest.raises(FeedError) as e:
        parse_gbfs([1, 2])
    assert e.value.status == 400


@pytest.mark.parametrize("speed, level", [(50, "free"), (35, "free"), (34.9, "busy"), (20, "busy"), (19.9, "jammed"), (0, "jammed")])
def test_traffic_level_from_speed_ratio(speed, level):
    assert traffic_level(speed, 50.0) == level
    assert traffic_level(None, 50.0) is None


def _src(kind: str, streams: dict, **props) -> Source:
    return Source(thing_id=1, name="s", kind=kind, properties=props, streams=streams)


def test_traffic_items_carry_the_level():
    items = traffic_items(_src("traffic", {"speed": 1, "flow": 2}, free_flow_kmh=40.0), {"speed_kmh": 10, "flow_veh_h": 1200})
    assert items[0]["parameters"]["level"] == "jammed" and items[1]["result"] == 1200.0
    with pytest.raises(FeedError, match="speed_kmh"):
        traffic_items(_src("traffic", {"speed": 1, "flow": 2}), {"speed_kmh": "fast"})


def test_parking_over_capacity_is_flagged_not_dropped():
    src = _src("parking", {"occupancy": 7}, capacity=100)
    [item] = occupancy_items(src, {"occupied": 130})
    assert item["result"] == 130 and item["resultQuality"]["flags"] == ["impossible", "over_capacity"]
    [item] = occupancy_items(src, {"free": 25})
    assert item["result"] == 75 and "resultQuality" not in item
    assert occupancy_flags(-1, 10) == ["impossible", "negative"]
    with pytest.raises(FeedError, match="exactly one"):
        occupancy_items(src, {"occupied": 1, "free": 2})


def test_weather_impossible_wind_is_flagged():
    src = _src("weather", {k: i for i, k in enumerate(["temperature", "wind_speed", "wind_direction", "sigma_theta", "cloud_cover", "precipitation"])})
    items = weather_items(src, {"wind_speed_m_s": 80.0, "wind_from_deg": 270})
    assert items[0]["resultQuality"]["flags"] == ["impossible"] and "resultQuality" not in items[1]
    with pytest.raises(FeedError, match="unknown quantity"):
        weather_items(src, {"wind_kmh": 3})


def test_appgps_aggregates_validated_and_raw_positions_refused():
    good = parse_aggregates({"aggregates": [{"zone_id": 1, "hour": "2025-06-01T14:00:00Z", "count": 37}]})
    assert good[0]["count"] == 37
    with pytest.raises(FeedError) as e:
        parse_aggregates({"aggregates": [{"zone_id": 1, "hour": "2025-06-01T14:00:00Z", "count": 3,
                                          "devices": [{"device_id": "x", "lat": 60.1, "lon": 24.9}]}]})
    assert e.value.status == 422 and "raw positions are refused" in str(e.value)
    with pytest.raises(FeedError, match="start of an hour"):
        parse_aggregates({"aggregates": [{"zone_id": 1, "hour": "2025-06-01T14:30:00Z", "count": 3}]})
    with pytest.raises(FeedError, match="missing required fields"):
        parse_aggregates({"aggregates": [{"zone_id": 1}]})


def test_weather_forecast_items_take_hourly_lists_and_only_their_quantities():
    src = Source(thing_id=1, name="s", kind="weather", properties={"kind": "weather_forecast"},
                 streams={"temperature": 1, "precipitation": 2})
    now = datetime(2026, 3, 10, 6, 0, tzinfo=UTC)
    items = weather_items(src, [{"time": "2026-03-10T07:00:00Z", "temperature_c": 4.5, "precipitation_mm_h": 0.0},
                                {"time": "2026-03-10T08:00:00Z", "precipitation_mm_h": 2.5}], now=now)
    assert [(i["Datastream"]["@iot.id"], i["result"]) for i in items] == [(1, 4.5), (2, 0.0), (2, 2.5)]
    # the issue time marks which forecast of an hour is the newest
    assert {i["resultTime"] for i in items} == {"2026-03-10T06:00:00Z"}
    with pytest.raises(FeedError, match=r"\[1\]\.wind_speed_m_s: unknown quantity; accepted: temperature_c, precipitation_mm_h"):
        weather_items(src, [{"time": "2026-03-10T07:00:00Z", "temperature_c": 4.5},
                            {"time": "2026-03-10T08:00:00Z", "wind_speed_m_s": 3.0}], now=now)
    with pytest.raises(FeedError, match=r"\[0\]\.time: each forecast hour needs its time"):
        weather_items(src, [{"temperature_c": 4.5}], now=now)
    with pytest.raises(FeedError, match="non-empty JSON array"):
        weather_items(src, [], now=now)
