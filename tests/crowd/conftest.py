"""Synthetic count data for the crowd tests (tiny, generated, offline)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest


def synthetic_counts(
    *, sensors: int = 3, days: int = 84, start: str = "2024-01-01", seed: int = 0
) -> pd.DataFrame:
    """Tidy frame of Poisson counts with a daily and weekly cycle, per-sensor scale."""
    rng = np.random.default_rng(seed)
    times = pd.date_range(start, periods=days * 24, freq="h")
    hour = times.hour.to_numpy()
    dow = times.day_of_week.to_numpy()
    shape = 0.2 + np.exp(-((hour - 13) ** 2) / 18.0) * np.where(dow < 5, 1.0, 0.6)
    rows = []
    for k in range(sensors):
        lam = (50 + 100 * k) * shape
        counts = rng.poisson(lam).astype(float)
        rows.append(pd.DataFrame({"sensor": f"s{k}", "timestamp": times, "count": counts}))
    return pd.concat(rows, ignore_index=True)


@pytest.fixture(scope="session")
def make_counts():
    """Factory fixture: ``make_counts(sensors=3, days=84, start=..., seed=0)``."""
    return synthetic_counts
