"""Simulated feeds for the demo: parking, traffic, shared vehicles, weather. Seeded; no I/O.

Every generator takes an ``np.random.Generator`` and steps on a *demo clock* (hours of the
day, float), so the same seed gives the same series. What they produce is SIMULATED and is
labelled so wherever it is stored and shown (:mod:`citytwin.sensors.demo`).

The shapes are plausible, not calibrated: a two-peaked weekday profile for traffic and parking,
a BPR-like speed drop with the volume-to-capacity ratio, an AR(1) wind and a daily temperature
cycle.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np


def day_profile(hour: float) -> float:
    """Relative activity 0..1 over the day (peaks around 08:30 and 17:00, low at night).

    >>> round(day_profile(3.0), 2), round(day_profile(8.5), 2) > 0.9
    (0.05, True)
    """
    h = hour % 24.0
    morning = math.exp(-((h - 8.5) ** 2) / (2 * 1.3**2))
    evening = math.exp(-((h - 17.0) ** 2) / (2 * 2.0**2))
    midday = 0.55 * math.exp(-((h - 13.0) ** 2) / (2 * 3.0**2))
    return min(1.0, 0.05 + 0.95 * max(morning, evening, midday))


@dataclass
class ParkingSim:
    """Occupied spaces of one garage: follows a day profile with AR(1) noise.

    Parameters
    ----------
    capacity : int
        Spaces.
    rng : numpy.random.Generator
    base, peak : float
        Occupancy ratio at night and at the busiest hour.
    """

    capacity: int
    rng: np.random.Generator
    base: float = 0.15
    peak: float = 0.92
    _noise: float = 0.0

    def step(self, hour: float) -> int:
        target = self.base + (self.peak - self.base) * day_profile(hour - 1.0)  # garages fill after the morning peak
        self._noise = 0.9 * self._noise + self.rng.normal(0.0, 0.02)
        return int(np.clip(round(self.capacity * (target + self._noise)), 0, self.capacity))


@dataclass
class TrafficSim:
    """Speed (km/h) and flow (veh/h) of one street segment.

    The demand x is the day profile times ``bottleneck`` (> 1 congests earlier); flow saturates
    towards the capacity as q = C·(1 − e^(−1.5x)), and speed drops as
    v = v_free / (1 + 0.15·(x/0.6)^4) (a BPR-like curve); with noise of 3 % of capacity on the flow and 5 % on the speed.
    """

    free_flow_kmh: float
    capacity_veh_h: float
    rng: np.random.Generator
    bottleneck: float = 1.0

    def step(self, hour: float) -> tuple[float, float]:
        x = day_profile(hour) * self.bottleneck
        flow = self.capacity_veh_h * (1.0 - math.exp(-1.5 * x) + self.rng.normal(0, 0.03))
        speed = self.free_flow_kmh / (1.0 + 0.15 * (x / 0.6) ** 4)
        speed *= 1 + self.rng.normal(0, 0.05)
        return round(max(speed, 2.0), 1), round(max(flow, 0.0))


@dataclass
class WeatherSim:
    """A weather station: temperature (°C), wind at 10 m (m/s, FROM degrees, σθ), clouds (octas), rain (mm/h)."""

    rng: np.random.Generator
    mean_temp_c: float = 12.0
    prevailing_from_deg: float = 240.0
    _speed: float = 4.0
    _dir: float = 240.0
    _cloud: float = 4.0
    _rain: float = 0.0

    def step(self, hour: float) -> dict:
        r = self.rng
        self._speed = float(np.clip(0.95 * self._speed + 0.05 * 4.5 + r.normal(0, 0.3), 0.3, 18.0))
        self._dir = (self._dir + 0.1 * (((self.prevailing_from_deg - self._dir + 180) % 360) - 180) + r.normal(0, 4)) % 360
        self._cloud = float(np.clip(self._cloud + r.normal(0, 0.3), 0, 8))
        self._rain = max(0.0, 0.9 * self._rain + (r.exponential(1.0) if self._cloud > 6.5 and r.random() < 0.2 else 0.0))
        temp = self.mean_temp_c + 4.0 * math.sin((hour - 9.0) / 24.0 * 2 * math.pi) + r.normal(0, 0.2)
        # σθ falls with wind speed (more mechanical mixing, less meander): ~25° at 1 m/s, ~8° at 8 m/s
        sigma = float(np.clip(28.0 / (1.0 + 0.3 * self._speed) + r.normal(0, 1.0), 2.5, 40.0))
        return {"temperature_c": round(temp, 1), "wind_speed_m_s": round(self._speed, 1), "wind_from_deg": round(self._dir),
                "sigma_theta_deg": round(sigma, 1), "cloud_cover_octas": int(round(self._cloud)),
                "precipitation_mm_h": round(self._rain, 1)}


@dataclass
class VehicleSim:
    """Shared vehicles around hotspots (lon/lat degrees); ids rotate after every trip, as in GBFS.

    Parameters
    ----------
    hotspots : array (n, 2)
        lon, lat of places vehicles gather (e.g. zone centroids).
    n : int
        Vehicles.
    rng : numpy.random.Generator
    spread_m : float
        Standard deviation of the scatter around a hotspot (m).
    """

    hotspots: np.ndarray
    n: int
    rng: np.random.Generator
    spread_m: float = 80.0
    vehicles: list[dict] = field(default_factory=list)
    _serial: int = 0

    def _place(self) -> tuple[float, float]:
        h = self.hotspots[self.rng.integers(len(self.hotspots))]
        dlat = self.rng.normal(0, self.spread_m) / 111_320.0
        dlon = self.rng.normal(0, self.spread_m) / (111_320.0 * math.cos(math.radians(h[1])))
        return float(h[0] + dlon), float(h[1] + dlat)

    def _new_id(self) -> str:
        self._serial += 1
        return f"v{self.rng.integers(1 << 30):08x}{self._serial:04d}"

    def step(self, hour: float, now: datetime) -> None:
        ts = int(now.timestamp())
        if not self.vehicles:
            for _ in range(self.n):
                lon, lat = self._place()
                self.vehicles.append({"id": self._new_id(), "lon": lon, "lat": lat, "reserved": False,
                                      "disabled": bool(self.rng.random() < 0.05), "ts": ts,
                                      "form": "scooter" if self.rng.random() < 0.6 else "bicycle"})
            return
        p_trip = 0.03 + 0.12 * day_profile(hour)
        for v in self.vehicles:
            if v["reserved"]:  # the trip ends: the vehicle reappears elsewhere with a NEW id
                v["lon"], v["lat"] = self._place()
                v["id"], v["reserved"], v["ts"] = self._new_id(), False, ts
            elif not v["disabled"] and self.rng.random() < p_trip:
                v["reserved"], v["ts"] = True, ts

    def gbfs_23(self, now: datetime) -> dict:
        """The fleet as a GBFS 2.3 ``free_bike_status`` document."""
        return {"last_updated": int(now.timestamp()), "ttl": 0, "version": "2.3", "data": {"bikes": [
            {"bike_id": v["id"], "lat": round(v["lat"], 6), "lon": round(v["lon"], 6), "is_reserved": v["reserved"],
             "is_disabled": v["disabled"], "last_reported": v["ts"], "vehicle_type_id": v["form"]}
            for v in self.vehicles]}}
