"""The demo feeds: start, publish through the ingest path, label, stop; the hazard finds the wind."""

from __future__ import annotations

import time

import sqlalchemy as sa

from citytwin.hazard.weather import latest_wind
from citytwin.sensors.demo import start_demo_feeds
from citytwin.sensors.feeds.service import (
    parking_view,
    sensors_overview,
    traffic_view,
    vehicles_view,
)
from tests.sensors import _feeds

feeds_template = _feeds.feeds_template  # fixture
city_engine = _feeds.city_engine  # fixture


def n_obs(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.text("SELECT count(*) FROM sta_observations")).scalar_one()


def test_demo_feeds_start_publish_and_stop(settings, city_engine):
    handle = start_demo_feeds(settings=settings, engine=city_engine, speed=3600.0, tick_s=0.5, backfill_s=5.0, seed=7)
    try:
        assert handle.wait_ready(90), "the demo feeds did not start"
        assert handle.error is None
        deadline = time.monotonic() + 30
        with city_engine.connect() as conn:  # the replay attaches its Auckland counters by then
            while time.monotonic() < deadline:
                origins = sensors_overview(conn)["origins"]
                if origins.get("replayed", 0) >= 21:
                    break
                time.sleep(0.5)
        first = n_obs(city_engine)
        time.sleep(1.5)
        assert n_obs(city_engine) > first, "no new observations while running"
    finally:
        handle.stop()
    assert not handle.running
    stopped = n_obs(city_engine)
    time.sleep(1.2)
    assert n_obs(city_engine) == stopped, "observations after stop()"

    with city_engine.connect() as conn:
        over = sensors_overview(conn)
        assert over["origins"]["replayed"] == 21 and over["origins"]["simulated"] >= 3 + 1 + 1 + 1
        replayed = [t for t in over["things"] if t["origin"] == "replayed"]
        assert all(t["zone_id"] is not None and t["feed"] == "camera" for t in replayed)
        assert len({t["zone_id"] for t in replayed}) == 21  # one zone per counter while zones last
        garages = parking_view(conn)["garages"]
        assert 3 <= len(garages) <= 4 and all(g["origin"] == "simulated" and len(g["history"]) >= 5 for g in garages)
        assert {f["properties"]["level"] for f in traffic_view(conn)["features"]} <= {"free", "busy", "jammed"}
        assert len(traffic_view(conn)["features"]) >= 5
        assert vehicles_view(conn)["features"]
        labels = conn.execute(sa.text("SELECT s.description, s.properties FROM sta_sensors s")).all()
        assert any("SIMULATED" in d and '"simulated": true' in p for d, p in labels)
        assert any("REPLAYED" in d and '"replayed": true' in p for d, p in labels)
        descr = conn.execute(sa.text("SELECT description FROM sta_things WHERE name LIKE 'akl %' LIMIT 1")).scalar_one()
        assert "real Auckland counts replayed onto Helsinki zones" in descr

    # idempotent: a second start finds the same sources
    things = over["things"]
    again = start_demo_feeds(settings=settings, engine=city_engine, speed=3600.0, tick_s=0.5, backfill_s=0.0, replay=False)
    try:
        assert again.wait_ready(60) and again.error is None
    finally:
        again.stop()
    with city_engine.connect() as conn:
        assert len(sensors_overview(conn)["things"]) == len(things)


def test_latest_wind_finds_the_simulated_station(settings, city_engine):
    handle = start_demo_feeds(settings=settings, engine=city_engine, speed=60.0, tick_s=1.0, backfill_s=3.0, replay=False)
    try:
        assert handle.wait_ready(90) and handle.error is None
    finally:
        handle.stop()
    with city_engine.connect() as conn:
        ds_id, unit = conn.execute(sa.text(
            "SELECT d.id, d.unit_of_measurement FROM sta_datastreams d JOIN sta_things t ON t.id = d.thing_id "
            "WHERE t.name LIKE '%weather station (simulated)' AND d.name LIKE '%wind speed'")).one()
        value, t = conn.execute(sa.text(
            "SELECT result_number, phenomenon_time FROM sta_observations WHERE datastream_id = :d "
            "ORDER BY phenomenon_time DESC LIMIT 1"), {"d": ds_id}).one()
        wind = latest_wind(conn, city_id=1)
    assert wind is not None
    assert wind["values"]["wind_speed"]["datastream_id"] == ds_id
    assert wind["wind_speed_m_s"] == value and 0 < value <= 75
    assert 0 <= wind["age_s"] < 60 and wind["stale"] is False
    assert wind["simulated"] is True and "[simulated]" in wind["source"]
    assert wind["sigma_theta_deg"] is not None and wind["cloud_cover_octas"] is not None
    assert 0 <= wind["wind_from_deg"] < 360
