"""The demo replay keeps true hourly time and lines the source week up with the city's clock."""

from datetime import UTC, datetime

import pandas as pd
import sqlalchemy as sa

from citytwin.city.osm import default_pbf
from citytwin.city.service import import_osm
from citytwin.sensors.replay import replay_aligned
from citytwin.sensors.schema import sta_observations as observations
from citytwin.sensors.service import StaService
from citytwin.store import make_engine, migrate


def test_history_is_hourly_ends_now_and_aligned(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'r.sqlite'}")
    migrate(engine)
    import_osm(engine, path=default_pbf(), name="Helsinki", bbox=(24.940, 60.165, 24.950, 60.172))
    now = datetime(2026, 11, 28, 14, 37, tzinfo=UTC)  # 16:37 in Helsinki, a Saturday
    n = replay_aligned(StaService(engine), tz="Europe/Helsinki", history_hours=48, sensors=3, now=now, live=False)
    assert 0 < n <= 3 * 49
    with engine.connect() as conn:
        rows = conn.execute(sa.select(observations.c.phenomenon_time, observations.c.parameters)).all()
    assert len(rows) == n
    times = sorted({pd.Timestamp(r[0]).tz_localize("UTC") if pd.Timestamp(r[0]).tzinfo is None else pd.Timestamp(r[0]) for r in rows})
    assert times[-1] == pd.Timestamp("2026-11-28 13:00", tz="UTC")  # the last completed hour
    assert all((b - a) == pd.Timedelta(hours=1) for a, b in zip(times, times[1:], strict=False))
    for stamp, params in rows[:50]:
        local = pd.Timestamp(stamp).tz_localize("UTC") if pd.Timestamp(stamp).tzinfo is None else pd.Timestamp(stamp)
        local = local.tz_convert("Europe/Helsinki")
        src = pd.Timestamp(params["source_time_local"])
        assert (src.day_of_week, src.hour) == (local.day_of_week, local.hour)
        assert params["replayed"] is True
