"""A weather station: temperature, wind at 10 m (speed, direction FROM, σθ), cloud cover, rain;
and a weather *forecast* (hourly temperature and rain for the next day, as a provider issues it).

ObservedProperty names and definitions are chosen so that
:func:`citytwin.hazard.weather.latest_wind` recognises them: ``wind speed``, ``wind direction``
(where the wind comes FROM, degrees clockwise from north), ``wind direction standard deviation
(σθ)`` and ``cloud cover``. Wind speed above 75 m/s (beyond any measured surface gust) is
physically impossible: it is stored and flagged (``validRange``), not dropped.

A forecast source (``register_station(..., forecast=True)``) is a separate Thing with
``kind: weather_forecast`` and only the temperature and precipitation Datastreams, whose
Observations lie in the future (at most one day, the ingest limit). It carries no wind, so the
hazard module's :func:`~citytwin.hazard.weather.latest_wind` never takes a forecast for a
measurement; the crowd forecast uses it for the hours ahead (:mod:`citytwin.crowd.service`).
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
FORECAST_SENSOR = {"name": "numerical weather forecast", "description": "hourly point forecast issued by a weather service",
                   "encodingType": "text/html", "metadata": "https://example.org/citytwin/sensors/weather-forecast"}
#: quantities a forecast source carries (the crowd forecast's weather inputs)
FORECAST_QUANTITIES = ("temperature_c", "precipitation_mm_h")
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
                     origin: str = "real", forecast: bool = False, conn: sa.Connection | None = None) -> Source:
    """Register a weather station with its six Datastreams, or with ``forecast=True`` a weather
    forecast with temperature and precipitation only (idempotent by name)."""
    if not (isinstance(interval_s, int | float) and interval_s > 0):
        raise FeedError("interval_s: the reporting interval in seconds (> 0)", fields=["interval_s"])
    if not isinstance(forecast, bool):
        raise FeedError(f"forecast: true or false, got {forecast!r}", fields=["forecast"])
    fields = FORECAST_QUANTITIES if forecast else tuple(QUANTITIES)
    specs = [StreamSpec(key=key, name=f"{name} {label}", description=op["description"], unit=unit, observed_property=op,
                        properties={"expectedInterval_s": interval_s, "validRange": rng, "height_m": 10 if key.startswith(("wind", "sigma")) else None})
             for key, label, unit, op, rng in (QUANTITIES[f] for f in fields)]
    kind = "weather_forecast" if forecast else "weather_station"
    return register_source(svc, kind="weather", name=name, description="weather forecast" if forecast else "weather station",
                           lon=lon, lat=lat, properties={"kind": kind}, origin=origin, specs=specs,
                           sensor=FORECAST_SENSOR if forecast else SENSOR, conn=conn)


def weather_items(source: Source, payload: Any, *, now: datetime | None = None) -> list[dict]:
    """``{"temperature_c": .., "wind_speed_m_s": .., "wind_from_deg": .., "sigma_theta_deg": ..,
    "cloud_cover_octas": .., "precipitation_mm_h": .., "time": t?}`` (any subset the source
    has) → Observations. A forecast source takes a list of such objects, one per hour, each
    with its ``time``; all of them or none are stored."""
    now = now or datetime.now(UTC)
    forecast = source.properties.get("kind") == "weather_forecast"
    if forecast:
        if isinstance(payload, dict):
            payload = [payload]
        if not isinstance(payload, list) or not payload:
            raise FeedError("the body must be a non-empty JSON array of hourly forecast objects", status=400)
        out = []
        for j, p in enumerate(payload):
            if not isinstance(p, dict) or p.get("time") is None:
                raise FeedError(f"[{j}].time: each forecast hour needs its time (ISO 8601 UTC)", fields=[f"[{j}].time"])
            try:
                items = _items(source, p, now=now)
            except FeedError as exc:
                raise FeedError(f"[{j}].{exc}", status=exc.status, fields=[f"[{j}].{f}" for f in exc.fields]) from None
            for it in items:  # the issue time: a later issue of the same hour replaces this one
                it["resultTime"] = iso_z(now)
            out += items
        return out
    if not isinstance(payload, dict):
        raise FeedError("the body must be a JSON object of weather quantities", status=400)
    return _items(source, payload, now=now)


def _items(source: Source, payload: dict, *, now: datetime) -> list[dict]:
    accepted = [f for f, q in QUANTITIES.items() if q[0] in source.streams]
    unknown = sorted(set(payload) - set(accepted) - {"time"})
    if unknown:
        raise FeedError(f"{unknown[0]}: unknown quantity; accepted: {', '.join(accepted)}, time", fields=unknown)
    try:
        t = parse_time(payload["time"], "time") if payload.get("time") is not None else now
    except ValueError as exc:
        raise FeedError(str(exc), fields=["time"]) from None
    items = []
    for field, (key, _label, _unit, _op, rng) in QUANTITIES.items():
        if field not in payload or key not in source.streams:
            continue
        v = payload[field]
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise FeedError(f"{field}: a number, got {v!r}", fields=[field])
        item: dict = {"Datastream": {"@iot.id": source.streams[key]}, "result": float(v), "phenomenonTime": iso_z(t)}
        if v < rng[0] or v > rng[1]:
            item["resultQuality"] = {"flags": ["impossible"], "validRange": rng}
        items.append(item)
    if not items:
        raise FeedError(f"no quantity given; accepted: {', '.join(accepted)}", fields=accepted)
    return items


def ingest_weather(svc: StaService, source: Source, payload: Any) -> list[int]:
    return publish(svc, weather_items(source, payload))
