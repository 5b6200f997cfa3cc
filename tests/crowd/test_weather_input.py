"""Weather as a crowd-forecast input: the station's observations in training, a weather
forecast (or, without one, diurnal persistence) for the hours ahead, and what was used."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from citytwin.crowd.service import CrowdService, CrowdSettings
from citytwin.sensors.feeds.weather import ingest_weather, register_station
from citytwin.sensors.service import StaService
from citytwin.store import migrate
from citytwin.store.schema import zones
from tests.crowd._twin import LOW_THRESHOLDS, ZONE, copy_engine, hourly_profile, seed_camera

TZ = "Europe/Helsinki"
NOW = datetime(2026, 3, 10, 22, 0, tzinfo=UTC)  # local midnight opening 11 March
DAYS = 42


@pytest.fixture(scope="module")
def wet_twin(helsinki_engine, tmp_path_factory):
    """One counter whose counts drop to 40 % on rainy days, and a station that saw the rain."""
    tmp = tmp_path_factory.mktemp("crowd-weather")
    engine = copy_engine(helsinki_engine, tmp / "crowd.sqlite")
    migrate(engine)
    with engine.begin() as conn:
        conn.execute(sa.update(zones).where(zones.c.id == ZONE).values(thresholds=LOW_THRESHOLDS))
    times = pd.date_range(NOW - timedelta(days=DAYS), NOW, freq="h", inclusive="left", tz=UTC)
    local = times.tz_convert(TZ).tz_localize(None)
    rng = np.random.default_rng(7)
    days = local.floor("D")
    rainy_days = {d for d in days.unique() if rng.random() < 0.4}
    rain = np.array([d in rainy_days for d in days])
    counts = hourly_profile(local, peak=300.0, seed=1) * np.where(rain, 0.4, 1.0)
    seed_camera(engine, zone_id=ZONE, now=NOW, days=DAYS, counting="zone", name="square camera",
                values=np.round(counts))
    svc_sta = StaService(engine)
    station = register_station(svc_sta, name="roof station", lon=24.94, lat=60.17,
                               interval_s=3600, origin="simulated")
    temp = 2.0 + 4.0 * np.sin((local.hour.to_numpy() - 9) / 24 * 2 * np.pi)
    items = []
    for t, r, tc in zip(times.to_pydatetime(), rain, temp, strict=True):
        ts = t.isoformat().replace("+00:00", "Z")
        items += [{"Datastream": {"@iot.id": station.streams["precipitation"]},
                   "result": 3.0 if r else 0.0, "phenomenonTime": ts},
                  {"Datastream": {"@iot.id": station.streams["temperature"]},
                   "result": round(float(tc), 2), "phenomenonTime": ts}]
    assert all(isinstance(x, int) for x in svc_sta.ingest(items))
    svc = CrowdService(engine, CrowdSettings(data_dir=tmp / "data", first_run_delay_s=3600))
    svc.train(now=NOW)
    yield engine, svc, svc_sta, rain, temp
    engine.dispose()


def _forecast_hours(fc_rows: list[dict]) -> list[dict]:
    return [{"time": (NOW + timedelta(hours=h)).isoformat().replace("+00:00", "Z"),
             **fc_rows[h % len(fc_rows)]} for h in range(24)]


def test_training_records_the_weather_it_saw(wet_twin) -> None:
    _, svc, *_ = wet_twin
    info = svc.model_info()["info"]
    assert info["weather_in_training"]["station"] == "roof station (simulated)"
    # hours of the training frame with observed rain and temperature
    assert info["weather_in_training"]["hours"]["precipitation_mm_h"] >= 24 * 30
    assert {"temperature_c", "precipitation_mm_h"} <= set(info["config"]["extra_features"])


def test_without_a_weather_forecast_the_last_observed_day_is_persisted(wet_twin) -> None:
    engine, svc, _, rain, temp = wet_twin
    issue = pd.Timestamp(NOW).tz_convert(TZ).tz_localize(None)
    with engine.connect() as conn:
        wx, info = svc.weather_covariates(conn, start=issue - pd.Timedelta(days=2),
                                          end=issue + pd.Timedelta(hours=24), tz=TZ, issue=issue)
    assert info["station"] == "roof station (simulated)" and info["forecast"] is None
    assert info["ahead"]["temperature_c"] == {"forecast": 0, "persistence": 24, "missing": 0}
    past = wx["timestamp"] < issue
    # hours before the issue are the observations; each hour ahead repeats the same hour
    # of the last observed day
    np.testing.assert_allclose(wx.loc[past, "temperature_c"], np.round(temp[-48:], 2))
    np.testing.assert_allclose(wx.loc[~past, "temperature_c"].to_numpy(),
                               wx.loc[past, "temperature_c"].to_numpy()[-24:])
    fc = svc.forecast_zone(ZONE, now=NOW, store=False)
    assert fc["weather"]["used_by_model"] is True
    assert fc["weather"]["hours_ahead"]["precipitation_mm_h"]["persistence"] == 24


def test_a_rain_forecast_lowers_the_crowd_forecast(wet_twin) -> None:
    _, svc, svc_sta, *_ = wet_twin
    fsrc = register_station(svc_sta, name="met service forecast", lon=24.94, lat=60.17,
                            forecast=True, origin="simulated")
    assert set(fsrc.streams) == {"temperature", "precipitation"}
    ingest_weather(svc_sta, fsrc, _forecast_hours([{"temperature_c": 3.0, "precipitation_mm_h": 0.0}]))
    dry = svc.forecast_zone(ZONE, now=NOW, store=False)
    assert dry["weather"]["forecast"] == "met service forecast (simulated)"
    assert dry["weather"]["hours_ahead"]["precipitation_mm_h"] == {
        "forecast": 24, "persistence": 0, "missing": 0}
    # a newer issue of the same hours replaces the older one
    ingest_weather(svc_sta, fsrc, _forecast_hours([{"temperature_c": 3.0, "precipitation_mm_h": 3.0}]))
    wet = svc.forecast_zone(ZONE, now=NOW, store=False)
    s_dry = sum(h["point"] for h in dry["sensors"][0]["hours"])
    s_wet = sum(h["point"] for h in wet["sensors"][0]["hours"])
    # the counts of rainy days were 40 % of dry days'; the model learned it from the station
    assert s_wet < 0.7 * s_dry, (s_wet, s_dry)
