"""Crowd service on a small seeded twin: train, forecast per zone and sensor, stale input,
events as covariate, skill, parking, nowcast from the STA tables."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
import sqlalchemy as sa

from citytwin.crowd.forecast import FORECAST_SCHEMA_VERSION
from citytwin.crowd.schema import crowd_forecasts, crowd_models, crowd_skill
from citytwin.crowd.service import CrowdError, city_locale
from tests.crowd._twin import ZONE, seeded_twin

NOW = datetime(2026, 3, 10, 9, 30, tzinfo=UTC)  # 11:30 in Helsinki


@pytest.fixture(scope="module")
def twin(helsinki_engine, tmp_path_factory):
    engine, svc, seeded = seeded_twin(
        helsinki_engine, tmp_path_factory.mktemp("crowd-svc"), now=NOW
    )
    yield engine, svc, seeded
    engine.dispose()


def test_city_locale_guesses_helsinki() -> None:
    assert city_locale(
        {"country": None, "minx": 24.9, "maxx": 25.0, "miny": 60.1, "maxy": 60.2}
    ) == ("FI", "Europe/Helsinki")
    assert (
        city_locale({"country": "NL", "minx": 0, "maxx": 0, "miny": 0, "maxy": 0})[1]
        == "Europe/Amsterdam"
    )
    assert city_locale({"country": None, "minx": 0, "maxx": 1, "miny": 0, "maxy": 1}) == (
        None,
        "UTC",
    )


def test_training_records_version_and_window(twin) -> None:
    engine, svc, _ = twin
    info = svc.model_info()
    assert info is not None and info["version"].startswith(f"{FORECAST_SCHEMA_VERSION}.")
    assert info["info"]["timezone"] == "Europe/Helsinki" and info["info"]["country"] == "FI"
    assert info["training_start"] < info["training_end"]
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(crowd_models)).scalar() == 1


def test_forecast_zone_bands_probabilities_and_storage(twin) -> None:
    engine, svc, seeded = twin
    fc = svc.forecast_zone(ZONE, now=NOW)
    assert len(fc["hours"]) == 24 and fc["unit"] == "persons/m²"
    assert fc["hours"][0]["time"] == "2026-03-10T09:00:00+00:00" and fc["hours"][0]["lead_h"] == 0
    cols = ["q0.025", "q0.1", "point", "q0.9", "q0.975"]
    arr = np.array([[h[c] for c in cols] for h in fc["hours"]])
    assert (np.diff(arr, axis=1) >= -1e-9).all()
    for h in fc["hours"]:
        p = h["p_levels"]
        assert 1 >= p["amber"] >= p["red"] >= p["critical"] >= 0
    # midday is red on the low test thresholds, night is green
    assert max(h["p_levels"]["red"] for h in fc["hours"]) > 0.5
    assert min(h["p_levels"]["red"] for h in fc["hours"]) < 0.1
    assert fc["model_version"] == svc.model_info()["version"] and fc["training_window"]["start"]
    assert len(fc["history"]) >= 40 and fc["sensors"][0]["datastream_id"] == seeded["datastream_id"]
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(crowd_forecasts).where(crowd_forecasts.c.issued_at == NOW)
        ).all()
    assert len(rows) == 48  # 24 zone rows + 24 sensor rows
    assert {r.model_version for r in rows} == {fc["model_version"]}
    assert all(r.training_start and r.training_end for r in rows)


def test_stale_input_is_refused_unless_allowed(twin) -> None:
    _, svc, _ = twin
    later = NOW + timedelta(days=2)
    with pytest.raises(CrowdError) as e:
        svc.forecast_zone(ZONE, now=later, store=False)
    assert e.value.field == "allow_stale" and e.value.status == 409
    assert "allow_stale" in str(e.value)
    fc = svc.forecast_zone(ZONE, now=later, allow_stale=True, store=False)
    assert fc["stale"] is True and any("stale" in n for n in fc["notes"])


def test_zone_without_counter_and_unknown_zone(twin) -> None:
    _, svc, _ = twin
    with pytest.raises(CrowdError) as e:
        svc.forecast_zone(2, now=NOW)
    assert e.value.field == "zone_id" and e.value.status == 422
    with pytest.raises(CrowdError) as e:
        svc.forecast_zone(999_999, now=NOW)
    assert e.value.status == 404


def test_events_are_validated_and_raise_the_forecast(twin) -> None:
    _, svc, _ = twin
    with pytest.raises(CrowdError) as e:
        svc.create_event(
            {
                "zone_id": ZONE,
                "name": "x",
                "start": "2026-03-10T18:00:00Z",
                "end": "2026-03-10T17:00:00Z",
                "expected_visitors": 10,
            },
            user="op",
        )
    assert e.value.field == "end"
    with pytest.raises(CrowdError) as e:
        svc.create_event(
            {
                "zone_id": ZONE,
                "name": "x",
                "start": "2026-03-10T18:00:00",
                "end": "2026-03-10T19:00:00",
                "expected_visitors": 10,
            },
            user="op",
        )
    assert e.value.field == "start"
    base = svc.forecast_zone(ZONE, now=NOW, store=False)
    ev = svc.create_event(
        {
            "zone_id": ZONE,
            "name": "concert",
            "start": "2026-03-10T18:00:00Z",
            "end": "2026-03-10T21:00:00Z",
            "expected_visitors": 3000,
        },
        user="op",
    )
    try:
        fc = svc.forecast_zone(ZONE, now=NOW, store=False)
        assert [x["name"] for x in fc["events"]] == ["concert"]
        hit = [h for h in fc["hours"] if h["event_visitors"] > 0]
        assert [h["time"][11:16] for h in hit] == ["18:00", "19:00", "20:00"]
        j = base["hours"].index(next(h for h in base["hours"] if h["time"] == hit[0]["time"]))
        assert hit[0]["q0.975"] > base["hours"][j]["q0.975"]
        assert "event_prior" in hit[0]["method"]
        moved = svc.update_event(ev["id"], {"expected_visitors": 10})
        assert moved["expected_visitors"] == 10
    finally:
        svc.delete_event(ev["id"])
    assert svc.list_events() == []


def test_skill_is_stored_per_zone_and_sensor(twin) -> None:
    engine, svc, seeded = twin
    out = svc.compute_skill(now=NOW, test_days=3)
    assert out["n"] > 0 and out["mase"] is not None and 0 <= out["coverage_95"] <= 1
    sk = svc.skill()
    assert [z["zone_id"] for z in sk["zones"]] == [ZONE]
    assert sk["sensors"][0]["datastream_id"] == seeded["datastream_id"]
    fc = svc.forecast_zone(ZONE, now=NOW, store=False)
    assert {s["datastream_id"] for s in fc["skill"]} == {None, seeded["datastream_id"]}
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(crowd_skill)).scalar() == 2


def test_nowcast_reads_the_sensor_tables(twin) -> None:
    _, svc, _ = twin
    nc = svc.nowcast(now=NOW)
    z = next(x for x in nc["zones"] if x["zone_id"] == ZONE)
    assert z["people"] is not None and z["level"] in ("green", "amber", "red", "critical")
    assert z["data_age_s"] == pytest.approx(1800.0)  # the 08:00–09:00 count, read at 09:30
    assert z["trend"] in ("rising", "steady", "falling")
    assert z["thresholds"]["red"] == 0.4
    others = [x for x in nc["zones"] if x["zone_id"] != ZONE]
    assert others and all(x["level"] is None for x in others)
    assert sum(nc["levels"].values()) == 1


def test_parking_full_in_how_long(twin) -> None:
    engine, svc, _ = twin
    from citytwin.sensors.feeds import parking
    from citytwin.sensors.service import StaService

    sta = StaService(engine)
    g = parking.register_garage(
        sta,
        name="test garage",
        lon=24.94,
        lat=60.17,
        capacity=200,
        building_id=None,
        zone_id=ZONE,
        retention_days=30,
        interval_s=300.0,
        origin="simulated",
    )
    for k in range(12):  # +10 spaces every 5 minutes = 120 spaces/h
        t = NOW - timedelta(minutes=55 - 5 * k)
        parking.ingest_occupancy(sta, g, {"occupied": 60 + 10 * k, "time": t.isoformat()})
    out = svc.parking(now=NOW)
    garage = next(x for x in out["garages"] if x["name"] == "test garage")
    assert garage["occupied"] == 170 and garage["free"] == 30
    assert garage["trend_spaces_per_h"] == pytest.approx(120, rel=0.01)
    assert garage["full_in_min"] == pytest.approx(15, abs=1)


# ---------------------------------------------------------------------------- batch path
@pytest.fixture(scope="module")
def multi(helsinki_engine, tmp_path_factory):
    """Three zones: zone 1 with an area camera and a line counter, a second zone with a camera,
    a third zone with one fresh camera and one whose feed stopped 10 h ago (stale sensor)."""
    from tests.crowd._twin import seed_camera

    engine, svc, seeded = seeded_twin(
        helsinki_engine, tmp_path_factory.mktemp("crowd-batch"), now=NOW, train=False
    )
    with engine.connect() as conn:
        from citytwin.store.schema import zones

        others = [
            r.id
            for r in conn.execute(
                sa.select(zones.c.id)
                .where(zones.c.usable_area_m2 > 0, zones.c.id != ZONE)
                .order_by(zones.c.id)
                .limit(2)
            )
        ]
    assert len(others) == 2
    seed_camera(engine, zone_id=ZONE, now=NOW, peak=2000.0, name="gate line", seed=1)
    seed_camera(engine, zone_id=others[0], now=NOW, peak=500.0, counting="zone", name="b", seed=2)
    seed_camera(engine, zone_id=others[1], now=NOW, peak=800.0, name="c fresh", seed=3)
    stale = seed_camera(
        engine, zone_id=others[1], now=NOW - timedelta(hours=10), peak=400.0, name="c stale", seed=4
    )
    svc.train(now=NOW)
    yield engine, svc, [ZONE, *others], stale
    engine.dispose()


class _PerSensorService:
    """The pre-batch path: ``ForecastModel.predict`` called once per sensor."""

    @staticmethod
    def patch(svc, monkeypatch):
        def per_sensor(model, hist, streams, *, issue, cov, stale_after_h):
            from citytwin.crowd.forecast import StaleInputError

            fcs, errs = {}, {}
            for s in streams:
                try:
                    fcs[s.key] = model.predict(
                        hist[hist["sensor"] == s.key],
                        issue_time=issue,
                        horizon_h=svc.settings.horizon_h,
                        sensors=[s.key],
                        covariates=cov,
                        stale_after_h=stale_after_h,
                    )
                except StaleInputError as exc:
                    errs[s.key] = {
                        "sensor": s.key,
                        "field": "allow_stale",
                        "stale": True,
                        "message": f"{s.name}: {exc}",
                    }
            return fcs, errs

        monkeypatch.setattr(svc, "_predict_sensors", per_sensor)


def _count_predict(monkeypatch) -> list[int]:
    from citytwin.crowd.forecast import ForecastModel

    calls: list[int] = []
    orig = ForecastModel.predict

    def counted(self, *a, **k):
        calls.append(len(k.get("sensors") or []))
        return orig(self, *a, **k)

    monkeypatch.setattr(ForecastModel, "predict", counted)
    return calls


def test_forecast_all_equals_the_per_zone_forecasts(multi, monkeypatch) -> None:
    _, svc, zids, stale = multi
    calls = _count_predict(monkeypatch)
    batch = svc.forecast_all(now=NOW, store=False)
    assert sorted(batch) == sorted(zids) and calls == [5]  # one predict for all five sensors
    per_zone = {z: svc.forecast_zone(z, now=NOW, store=False) for z in zids}
    assert batch == per_zone
    # and the same as the old per-sensor predict loop, number for number
    with monkeypatch.context() as m:
        _PerSensorService.patch(svc, m)
        ref = {z: svc.forecast_zone(z, now=NOW, store=False) for z in zids}
    for z in zids:
        a, b = batch[z], ref[z]
        assert [s["sensor"] for s in a["sensors"]] == [s["sensor"] for s in b["sensors"]]
        for c in ("point", "q0.025", "q0.1", "q0.9", "q0.975"):
            np.testing.assert_allclose(
                [h[c] for h in a["hours"]], [h[c] for h in b["hours"]], rtol=1e-9, atol=1e-12
            )
        assert [h["p_levels"] for h in a["hours"]] == [h["p_levels"] for h in b["hours"]]
        assert a["errors"] == b["errors"]
    # the stale sensor is listed, its zone still forecast from the fresh one
    err = batch[zids[2]]["errors"]
    assert [e["sensor"] for e in err] == [f"ds{stale['datastream_id']}"]
    assert err[0]["field"] == "allow_stale" and err[0]["stale"] is True
    assert len(batch[zids[0]]["sensors"]) == 2 and not batch[zids[0]]["errors"]


def test_forecast_all_refuses_stale_input_per_zone(multi) -> None:
    _, svc, zids, _ = multi
    later = NOW + timedelta(days=2)
    out = svc.forecast_all(now=later, store=False)
    assert set(out) == set(zids)
    for z in zids:
        assert out[z]["error"]["field"] == "allow_stale" and out[z]["error"]["status"] == 409
    with pytest.raises(CrowdError) as e:
        svc.forecast_zone(zids[0], now=later, store=False)
    assert e.value.field == "allow_stale" and str(e.value) == out[zids[0]]["error"]["detail"]
    ok = svc.forecast_all(now=later, allow_stale=True, store=False)
    assert all(ok[z]["stale"] is True and not ok[z]["errors"] for z in zids)


def test_forecast_all_stores_in_one_issue_and_refresh_uses_it(multi, monkeypatch) -> None:
    engine, svc, zids, _ = multi
    at = NOW + timedelta(minutes=5)
    calls = _count_predict(monkeypatch)
    out = svc.refresh(now=at)
    assert out["forecast_zones"] == sorted(zids) and out["skipped"] == []
    assert calls == [5]
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(crowd_forecasts.c.zone_id, crowd_forecasts.c.datastream_id).where(
                crowd_forecasts.c.issued_at == at
            )
        ).all()
    # 24 zone rows per zone + 24 rows per forecast sensor (the stale one is not forecast)
    assert len(rows) == 24 * (3 + 4)
    assert {r.zone_id for r in rows} == set(zids)


def test_scheduler_run_measures_skill_for_a_new_model(multi) -> None:
    from citytwin.crowd.service import CrowdScheduler

    engine, svc = multi[0], multi[1]
    with engine.begin() as conn:
        conn.execute(crowd_skill.delete())
        conn.execute(crowd_models.delete())
    out = CrowdScheduler(svc).run_once(now=NOW)
    assert "error" not in out["trained"], out["trained"]
    assert out["trained"]["skill"]["n"] > 0
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(crowd_skill)).scalar() > 0
