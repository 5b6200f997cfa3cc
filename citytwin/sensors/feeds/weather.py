"""A weather station: temperature, wind at 10 m (speed, direction FROM, σθ), cloud cover, rain.

ObservedProperty names and definitions are chosen so that
:func:`citytwin.hazard.weather.latest_wind` recognises them: ``wind speed``, ``wind direction``
(where the wind comes FROM, degrees clockwise from north), ``wind direction standard deviation
(σθ)`` and ``cloud cover``. Wind speed above 75 m/s (beyond any measured surface gust) is
physically impossible: it is stored and flagged (``validRange``), not dropped.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from citytwin.sensors.feeds._base import (
    FeedError,
    Source,
    StreamSpec,
    iso_z,
    publish,
    register_source,
)
from citytwin.sensors.ingest import parse_time
from citytwin.sensors.service import StaService

UCUM = "http://unitsofmeasure.org/ucum.html"
SENSOR = {"name": "automatic weather station", "description": "10-minute means; wind measured at 10 m above ground",
          "encodingType": "text/html", "metadata": "https://example.org/citytwin/sensors/weather-station"}

#: payload field → (stream key, name, unit, ObservedProperty, validRange)
QUANTITIES: dict[str, tuple[str, str, dict, dict, list]] = {
    "temperature_c": ("temperature", "air temperature", {"name": "degree Celsius", "symbol": "Cel", "definition": UCUM},
                      {"name": "air temperature", "definition": "https://example.org/citytwin/air-temperature",
                       "description": "air temperature at 2 m"}, [-80, 60]),
    "wind_speed_m_s": ("wind_speed", "wind speed", {"name": "metre per second", "symbol": "m/s", "definition": UCUM},
                       {"name": "wind speed", "definition": "https://example.org/citytwin/wind-speed-10m",
                        "description": "10-minute mean wind speed at 10 m"}, [0, 75]),
    "wind_from_deg": ("wind_direction", "wind direction", {"name": "degree", "symbol": "deg", "definition": UCUM},
                      {"name": "wind direction", "definition": "https://example.org/citytwin/wind-from-direction",
                       "description": "direction the wind comes FROM, degrees clockwise from north"}, [0, 360]),
    "sigma_theta_deg": ("sigma_theta", "wind direction standard deviation (σθ)",
                        {"name": "degree", "symbol": "deg", "definition": UCUM},
                        {"name": "wind direction standard deviation (σθ)",
                         "definition": "https://example.org/citytwin/sigma-theta",
                         "description": "standard deviation of the wind direction over 10 minutes"}, [0, 180]),
    "cloud_cover_octas": ("cloud_cover", "cloud cover", {"name": "okta", "symbol": "okta", "definition": UCUM},
                          {"name": "cloud cover", "definition": "https://example.org/citytwin/cloud-cover",
                           "description": "total cloud cover in octas (0 clear … 8 overcast, 9 sky obscured)"}, [0, 9]),
    "precipitation_mm_h": ("precipitation", "precipitation rate", {"name": "millimetre per hour", "symbol": "mm/h", "definition": UCUM},
                           {"name": "precipitation rate", "definition": "https://example.org/citytwin/precipitation-rate",
                            "description": "precipitation intensity"}, [0, 500]),
}


def register_station(svc: StaService, *, name: str, lon: float, lat: float, interval_s: float = 600.0,
                     origin: str = "real", conn: sa.Connection | None = None) -> Source:
    """Register a weather station with its six Datastreams (idempotent by name)."""
    if not (isinstance(interval_s, int | float) and interval_s > 0):
        raise FeedError("interval_s: the reporting interval in seconds (> 0)", fields=["interval_s"])
    specs = [StreamSpec(key=key, name=f"{name} {label}", description=op["description"], unit=unit, observed_property=op,
                        properties={"expectedInterval_s": interval_s, "validRange": rng, "height_m": 10 if key.startswith(("wind", "sigma")) else None})
             for key, label, unit, op, rng in QUANTITIES.values()]
    return register_source(svc, kind="weather", name=name, description="weather station", lon=lon, lat=lat,
                           properties={"kind": "weather_station"}, origin=origin, specs=specs, sensor=SENSOR, conn=conn)


def weather_items(source: Source, payload: Any, *, now: datetime | None = None) -> list[dict]:
    """``{"temperature_c": .., "wind_speed_m_s": .., "wind_from_deg": .., "sigma_theta_deg": ..,
    "cloud_cover_octas": .., "precipitation_mm_h": .., "time": t?}`` (any subset) → Observations."""
    now = now or datetime.now(UTC)
    if not isinstance(payload, dict):
        raise FeedError("the body must be a JSON object of weather quantities", status=400)
    unknown = sorted(set(payload) - set(QUANTITIES) - {"time"})
    if unknown:
        raise FeedError(f"{unknown[0]}: unknown quantity; accepted: {', '.join(QUANTITIES)}, time", fields=unknown)
    try:
        t = parse_time(payload["time"], "time") if payload.get("time") is not None else now
    except ValueError as exc:
        raise FeedError(str(exc), fields=["time"]) from None
    items = []
    for field, (key, _label, _unit, _op, rng) in QUANTITIES.items():
        if field not in payload:
            continue
        v = payload[field]
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise FeedError(f"{field}: a number, got {v!r}", fields=[field])
        item: dict = {"Datastream": {"@iot.id": source.streams[key]}, "result": float(v), "phenomenonTime": iso_z(t)}
        if v < rng[0] or v > rng[1]:
            item["resultQuality"] = {"flags": ["impossible"], "validRange": rng}
        items.append(item)
    if not items:
        raise FeedError(f"no quantity given; accepted: {', '.join(QUANTITIES)}", fields=list(QUANTITIES))
    return items


def ingest_weather(svc: StaService, source: Source, payload: Any) -> list[int]:
    return publish(svc, weather_items(source, payload))
