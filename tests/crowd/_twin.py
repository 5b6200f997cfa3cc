"""Seed a twin with counting-camera history through the one ingest path (small and generated)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd


def hourly_profile(times_local: pd.DatetimeIndex, *, peak: float, seed: int = 0) -> np.ndarray:
    """Poisson counts with a daily (13:00 peak) and weekly cycle, in persons/hour."""
    rng = np.random.default_rng(seed)
    hour = times_local.hour.to_numpy()
    dow = times_local.day_of_week.to_numpy()
    shape = 0.15 + np.exp(-((hour - 13) ** 2) / 10.0) * np.where(dow < 5, 1.0, 0.7)
    return rng.poisson(peak * shape).astype(float)


def seed_camera(
    engine,
    *,
    zone_id: int,
    now: datetime,
    days: int = 42,
    peak: float = 1000.0,
    counting: str = "line",
    width_m: float | None = 3.0,
    origin: str = "simulated",
    name: str = "test counter",
    seed: int = 0,
    tz: str = "Europe/Helsinki",
    values: np.ndarray | None = None,
) -> dict:
    """Register a counting camera on ``zone_id`` and ingest ``days`` of hourly counts ending
    before ``now``'s hour; returns ``{"datastream_id", "thing_id", "n"}``."""
    from citytwin.sensors.feeds.cameras import register_camera
    from citytwin.sensors.service import StaService

    svc = StaService(engine)
    src = register_camera(
        svc,
        name=name,
        lon=24.94,
        lat=60.17,
        zone_id=zone_id,
        counting=counting,
        effective_width_m=width_m if counting == "line" else None,
        interval_s=3600.0,
        origin=origin,
    )
    end = now.replace(minute=0, second=0, microsecond=0)
    times = pd.date_range(end - timedelta(days=days), end, freq="h", inclusive="left", tz=UTC)
    local = times.tz_convert(tz).tz_localize(None)
    v = (
        hourly_profile(local, peak=peak, seed=seed)
        if values is None
        else np.asarray(values, float)[-len(times) :]
    )
    ds = src.streams["count"]
    items = [
        {
            "Datastream": {"@iot.id": ds},
            "result": int(x),
            "phenomenonTime": f"{t.isoformat()}/{(t + timedelta(hours=1)).isoformat()}",
        }
        for t, x in zip(times.to_pydatetime(), v, strict=False)
        if x == x
    ]
    for k in range(0, len(items), 2000):
        res = svc.ingest(items[k : k + 2000])
        assert all(isinstance(r, int) for r in res), [r for r in res if not isinstance(r, int)][:3]
    return {"datastream_id": ds, "thing_id": src.thing_id, "n": len(items)}


def seed_garage(
    engine,
    *,
    now: datetime,
    days: int,
    name: str,
    capacity: int = 200,
    zone_id: int | None = None,
    seed: int = 0,
    tz: str = "Europe/Helsinki",
):
    """Register a parking garage and ingest ``days`` of hourly occupancy ending before ``now``'s
    hour: full from late morning to early afternoon on weekdays, half full at most at weekends."""
    from citytwin.sensors.feeds import parking
    from citytwin.sensors.service import StaService

    svc = StaService(engine)
    g = parking.register_garage(svc, name=name, lon=24.94, lat=60.17, capacity=capacity,
                                zone_id=zone_id, retention_days=90, interval_s=3600.0,
                                origin="simulated")
    end = now.replace(minute=0, second=0, microsecond=0)
    times = pd.date_range(end - timedelta(days=days), end, freq="h", inclusive="left", tz=UTC)
    local = times.tz_convert(tz).tz_localize(None)
    h, weekday = local.hour.to_numpy(), local.day_of_week.to_numpy() < 5
    ratio = 0.1 + np.where(weekday, 1.2, 0.4) * np.exp(-((h - 12) ** 2) / 8.0)
    rng = np.random.default_rng(seed)
    occ = np.clip(np.round(capacity * ratio + rng.normal(0, 4, len(times))), 0, capacity)
    items = [{"Datastream": {"@iot.id": g.streams["occupancy"]}, "result": int(v),
              "phenomenonTime": t.isoformat().replace("+00:00", "Z")}
             for t, v in zip(times.to_pydatetime(), occ, strict=True)]
    assert all(isinstance(x, int) for x in svc.ingest(items))
    return g


def copy_engine(src_engine, path):
    """A copy of a SQLite twin (WAL checkpointed first) at ``path``."""
    import shutil

    from citytwin.store import make_engine

    with src_engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    shutil.copy(src_engine.url.database, path)
    return make_engine(f"sqlite:///{path}")


#: The zone the tests seed (Narinkkatori, a standing square of ~643 m² in the Helsinki extract)
#: and thresholds low enough that the midday peak of the seeded counts is red.
ZONE = 1
LOW_THRESHOLDS = {"amber": 0.2, "red": 0.4, "critical": 2.0}


def seeded_twin(helsinki_engine, tmp_path, *, now: datetime, days: int = 42, train: bool = True):
    """A copy of the Helsinki twin with one area-counting camera on zone 1 (low thresholds),
    ``days`` of hourly history before ``now`` and (optionally) a trained model.

    Returns ``(engine, service, seeded)``.
    """
    import sqlalchemy as sa

    from citytwin.crowd.service import CrowdService, CrowdSettings
    from citytwin.store import migrate
    from citytwin.store.schema import zones

    engine = copy_engine(helsinki_engine, tmp_path / "crowd.sqlite")
    migrate(engine)
    with engine.begin() as conn:
        conn.execute(sa.update(zones).where(zones.c.id == ZONE).values(thresholds=LOW_THRESHOLDS))
    seeded = seed_camera(
        engine,
        zone_id=ZONE,
        now=now,
        days=days,
        peak=300.0,
        counting="zone",
        name="square camera",
        origin="simulated",
    )
    svc = CrowdService(engine, CrowdSettings(data_dir=tmp_path / "data", first_run_delay_s=3600))
    if train:
        svc.train(now=now)
    return engine, svc, seeded
