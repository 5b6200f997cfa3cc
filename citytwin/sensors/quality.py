"""Data quality per Datastream: age and staleness, impossible values, outliers, gaps.

Values are flagged, never dropped. :func:`assess` is a pure kernel over arrays;
:func:`quality_report` reads the store.

Examples
--------
>>> r = assess([0.0, 60.0, 600.0], [1.0, -2.0, 3.0], now_s=660.0, expected_interval_s=60.0, valid_range=(0, None))
>>> r["stale"], r["impossible"], r["gaps"]
(False, 1, [[60.0, 600.0]])
"""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import sqlalchemy as sa

from citytwin.sensors.schema import sta_datastreams, sta_observations

#: Physically possible ranges per unit symbol (UCUM-like) — a value outside is impossible.
VALID_RANGES: dict[str, tuple[float | None, float | None]] = {
    "{count}": (0, None), "count": (0, None), "%": (0, 100), "Cel": (-80, 60), "°C": (-80, 60),
    "m/s": (0, 120), "km/h": (0, 400), "deg": (0, 360), "°": (0, 360), "mm": (0, None), "mm/h": (0, 500),
    "okta": (0, 9), "hPa": (850, 1100), "1/m2": (0, 10), "/m2": (0, 10),
}
OUTLIER_Z = 6.0  #: robust z-score (median/MAD) above which a value is an outlier
OUTLIER_HALF_WINDOW = 3  #: neighbours on each side of the running median the residual is taken from
WINDOW = 1000  #: observations per Datastream examined


def assess(times_s, values, *, now_s: float, expected_interval_s: float | None,
           valid_range: tuple[float | None, float | None] | None) -> dict:
    """Quality of one series: times in POSIX seconds (ascending), values (NaN = non-numeric)."""
    t = np.asarray(times_s, dtype=float)
    v = np.asarray(values, dtype=float)
    out: dict = {"n": int(t.size), "age_s": None, "stale": None, "impossible": 0, "outliers": 0, "gaps": []}
    if t.size == 0:
        out["stale"] = expected_interval_s is not None
        return out
    out["age_s"] = float(now_s - t[-1])
    if expected_interval_s:
        out["stale"] = bool(out["age_s"] > 2 * expected_interval_s)
        dt = np.diff(t)
        idx = np.nonzero(dt > 2 * expected_interval_s)[0]
        out["gaps"] = [[float(t[i]), float(t[i + 1])] for i in idx]
    finite = np.isfinite(v)
    if valid_range is not None:
        lo, hi = valid_range
        bad = np.zeros(v.shape, bool)
        if lo is not None:
            bad |= finite & (v < lo)
        if hi is not None:
            bad |= finite & (v > hi)
        out["impossible"] = int(bad.sum())
    if finite.sum() >= 10:
        # residuals from a running median of the neighbours, so that a daily cycle (rush hours,
        # a garage filling up) is not an outlier but a spike against its neighbours is
        x = v[finite]
        pad = np.pad(x, OUTLIER_HALF_WINDOW, constant_values=np.nan)
        windows = np.lib.stride_tricks.sliding_window_view(pad, 2 * OUTLIER_HALF_WINDOW + 1)
        res = x - np.nanmedian(windows, axis=1)
        mad = np.median(np.abs(res)) * 1.4826
        if mad == 0:  # mostly constant series: fall back to the mean absolute deviation
            mad = np.mean(np.abs(res)) * 1.2533
        if mad > 0:
            out["outliers"] = int((np.abs(res) / mad > OUTLIER_Z).sum())
    return out


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def quality_report(conn: sa.Connection, *, now: datetime | None = None) -> list[dict]:
    """One entry per Datastream, using ``properties.expectedInterval_s`` and ``properties.validRange``."""
    now = now or datetime.now(UTC)
    ds, ob = sta_datastreams, sta_observations
    out = []
    for d in conn.execute(sa.select(ds.c.id, ds.c.name, ds.c.unit_of_measurement, ds.c.properties,
                                    ds.c.last_phenomenon_time).order_by(ds.c.id)).mappings():
        props = d["properties"] or {}
        interval = props.get("expectedInterval_s")
        unit = (d["unit_of_measurement"] or {}).get("symbol")
        rng = tuple(props["validRange"]) if "validRange" in props else VALID_RANGES.get(unit)
        rows = conn.execute(sa.select(ob.c.phenomenon_time, ob.c.result_number).where(ob.c.datastream_id == d["id"])
                            .order_by(ob.c.phenomenon_time.desc()).limit(WINDOW)).all()[::-1]
        times = [r[0].timestamp() for r in rows]
        values = [np.nan if r[1] is None else r[1] for r in rows]
        q = assess(times, values, now_s=now.timestamp(), expected_interval_s=interval, valid_range=rng)
        q["gaps"] = [[_iso(a), _iso(b)] for a, b in q["gaps"]]
        out.append({"datastream_id": d["id"], "name": d["name"],
                    "last_observation_time": None if d["last_phenomenon_time"] is None else d["last_phenomenon_time"].isoformat(),
                    "expected_interval_s": interval, "valid_range": rng, "simulated": bool(props.get("simulated")),
                    "replayed": bool(props.get("replayed")), **q})
    return out
