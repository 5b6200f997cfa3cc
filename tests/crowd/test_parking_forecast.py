"""Parking garages forecast by the same quantile machinery as the counters: occupancy for the
next 24 h with bands, P(full) per hour and when the garage is expected to be full."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from citytwin.sensors.feeds import parking
from citytwin.sensors.service import StaService
from tests.crowd._twin import ZONE, seed_garage, seeded_twin

NOW = datetime(2026, 3, 10, 22, 0, tzinfo=UTC)  # local midnight opening Wednesday 11 March
CAPACITY = 200


@pytest.fixture(scope="module")
def garages(helsinki_engine, tmp_path_factory):
    engine, svc, _ = seeded_twin(helsinki_engine, tmp_path_factory.mktemp("crowd-parking"),
                                 now=NOW, train=False)
    seed_garage(engine, now=NOW, days=56, name="city garage", capacity=CAPACITY, zone_id=ZONE, seed=1)
    seed_garage(engine, now=NOW, days=3, name="new garage", capacity=CAPACITY, zone_id=ZONE, seed=2)
    svc.train(now=NOW)
    yield svc
    engine.dispose()


def test_training_fits_the_garages_model(garages) -> None:
    info = garages.model_info()["info"]["parking_model"]
    assert info["status"] == "trained" and len(info["garages"]) == 2
    assert info["version"] != garages.model_info()["version"]


def test_garage_forecast_says_when_it_will_be_full(garages) -> None:
    out = garages.parking(now=NOW)
    assert out["parking_model"]["status"] == "trained"
    g = next(x for x in out["garages"] if x["name"] == "city garage")
    fc = g["forecast"]
    assert len(fc["hours"]) == 24 and fc["hours"][0]["time"] == "2026-03-10T22:00:00+00:00"
    for x in fc["hours"]:
        assert 0 <= x["q0.025"] <= x["q0.1"] <= x["point"] <= x["q0.9"] <= x["q0.975"] <= CAPACITY
    p = [x["p_full"] for x in fc["hours"]]
    # a weekday: nearly certain to be full around noon (lead 12), not at night
    assert p[12] >= 0.5 and max(p[:6]) < 0.05, p
    assert fc["full_in_h"] is not None and 8 <= fc["full_in_h"] <= 12
    assert fc["full_at"] == fc["hours"][fc["full_in_h"]]["time"]
    assert fc["p_full_horizon"] == pytest.approx(max(p))


def test_a_new_garage_gets_a_labelled_cold_start_and_one_without_data_the_reason(garages) -> None:
    out = garages.parking(now=NOW)
    by = {x["name"]: x["forecast"] for x in out["garages"]}
    assert by["city garage"]["method"] == "model"
    assert by["new garage"]["method"] == "cold_start" and len(by["new garage"]["hours"]) == 24
    sta = StaService(garages.engine)
    parking.register_garage(sta, name="empty garage", lon=24.94, lat=60.17, capacity=50,
                            origin="simulated")
    out = garages.parking(now=NOW)
    empty = next(x for x in out["garages"] if x["name"] == "empty garage")
    assert empty["forecast"]["error"].startswith("empty garage: no occupancy history in ")
