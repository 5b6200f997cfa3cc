"""The live wind for an incident: the newest weather observations of the twin's sensor streams.

This is the I/O edge between :mod:`citytwin.sensors` (SensorThings tables, when present) and
:func:`citytwin.hazard.service.assess_incident`. The SensorThings schema is still young, so
every table and column name it relies on lives in :func:`_weather_tables` and
:func:`latest_wind`; without those tables, or without weather streams, there is no live wind
(``None``) and the caller must give the wind by hand.

Weather Datastreams are recognised by their ObservedProperty (or Datastream) name or
definition: *wind speed* (m/s, km/h or knots), *wind direction* (degrees the wind comes from),
*σθ* (standard deviation of the wind direction, degrees) and *cloud cover* (octas or %).
A Sensor or Datastream whose ``properties.simulated`` is true, or whose name or description
says "simulated", marks the value as simulated.
"""

from __future__ import annotations

import logging
import math
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from citytwin.hazard.errors import HazardInputError

log = logging.getLogger(__name__)

#: Observations older than this (seconds) are stale: used only with a visible warning.
STALE_AFTER_S = 1800.0
#: How far (degrees) around the city's bounding box a weather station may stand.
CITY_MARGIN_DEG = 0.5

_KINDS = ("wind_speed", "wind_direction", "sigma_theta", "cloud_cover")


def _kind_of(text: str) -> str | None:
    """Which weather quantity a name/definition describes (None: not weather)."""
    t = text.lower().replace("_", " ").replace("-", " ")
    if (
        "σθ" in t
        or "sigma theta" in t
        or "sigmatheta" in t
        or ("direction" in t and ("standard deviation" in t or " std" in t or "stdev" in t))
    ):
        return "sigma_theta"
    if "wind" in t and "speed" in t or "windspeed" in t:
        return "wind_speed"
    if "wind" in t and ("direction" in t or "from" in t) or "winddirection" in t:
        return "wind_direction"
    if "cloud" in t and ("cover" in t or "amount" in t) or "cloudiness" in t or "cloudcover" in t:
        return "cloud_cover"
    return None


_SPEED_TO_M_S = {
    "m/s": 1.0,
    "m s-1": 1.0,
    "m.s-1": 1.0,
    "mps": 1.0,
    "meter per second": 1.0,
    "metre per second": 1.0,
    "km/h": 1 / 3.6,
    "kmh": 1 / 3.6,
    "kph": 1 / 3.6,
    "kn": 0.514444,
    "kt": 0.514444,
    "knot": 0.514444,
    "knots": 0.514444,
    "mph": 0.44704,
}


def _convert(kind: str, value: float, unit: dict | None) -> tuple[float, str]:
    """Value in the unit assess_incident expects (m/s, degrees, octas) and that unit."""
    sym = ""
    if isinstance(unit, dict):
        sym = str(unit.get("symbol") or unit.get("name") or "").strip().lower()
    if kind == "wind_speed":
        return value * _SPEED_TO_M_S.get(sym, 1.0), "m/s"
    if kind == "cloud_cover":
        if sym in ("%", "percent") or "percent" in sym or value > 8.0:
            return value * 8.0 / 100.0, "octas"
        return value, "octas"
    return value, "degrees"


def _truthy_simulated(*parts: Any) -> bool:
    for p in parts:
        if isinstance(p, dict) and bool(p.get("simulated")):
            return True
        if isinstance(p, str) and "simulat" in p.lower():
            return True
    return False


def _aware(t: datetime | None) -> datetime | None:
    if t is None:
        return None
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def _weather_tables(conn: sa.Connection) -> dict[str, sa.TableClause] | None:
    """Lightweight handles on the SensorThings tables (None when they are not there)."""
    insp = sa.inspect(conn)
    names = {
        "ds": "sta_datastreams",
        "op": "sta_observed_properties",
        "sensor": "sta_sensors",
        "obs": "sta_observations",
        "tl": "sta_thing_locations",
        "loc": "sta_locations",
    }
    for key in ("ds", "op", "obs"):
        if not insp.has_table(names[key]):
            return None
    c = sa.column
    t: dict[str, sa.TableClause] = {
        "ds": sa.table(
            names["ds"],
            c("id"),
            c("name"),
            c("description"),
            c("unit_of_measurement", sa.JSON),
            c("properties", sa.JSON),
            c("thing_id"),
            c("sensor_id"),
            c("observed_property_id"),
        ),
        "op": sa.table(names["op"], c("id"), c("name"), c("definition"), c("description")),
        "obs": sa.table(
            names["obs"],
            c("id"),
            c("datastream_id"),
            c("phenomenon_time", sa.DateTime(timezone=True)),
            c("result_number"),
        ),
    }
    if insp.has_table(names["sensor"]):
        t["sensor"] = sa.table(
            names["sensor"],
            c("id"),
            c("name"),
            c("description"),
            c("properties", sa.JSON),
        )
    if insp.has_table(names["tl"]) and insp.has_table(names["loc"]):
        t["tl"] = sa.table(names["tl"], c("thing_id"), c("location_id"))
        t["loc"] = sa.table(names["loc"], c("id"), c("minx"), c("miny"), c("maxx"), c("maxy"))
    return t


def _city_bbox(conn: sa.Connection, city_id: int) -> tuple[float, float, float, float] | None:
    from citytwin.store.schema import cities

    row = conn.execute(
        sa.select(cities.c.minx, cities.c.miny, cities.c.maxx, cities.c.maxy).where(
            cities.c.id == city_id
        )
    ).first()
    return None if row is None else (row[0], row[1], row[2], row[3])


def latest_wind(
    conn: sa.Connection,
    *,
    city_id: int | None = None,
    max_age_s: float = STALE_AFTER_S,
    now: datetime | None = None,
) -> dict[str, Any] | None:
    """The newest wind observation of the twin's weather streams, or None.

    Parameters
    ----------
    conn : sqlalchemy.Connection
    city_id : int or None
        Only streams whose Thing stands within ~0.5° of this city's bounding box (streams
        without a location are kept).
    max_age_s : float
        Older observations are returned with ``stale: True`` (seconds; default 30 min).
    now : datetime or None
        Reference time for the age (default: the current time, UTC).

    Returns
    -------
    dict or None
        None when there are no SensorThings tables or no wind speed and direction. Otherwise
        ``wind_speed_m_s``, ``wind_from_deg``, ``sigma_theta_deg`` (or None),
        ``cloud_cover_octas`` (or None), ``observed_at`` (ISO, the older of speed and
        direction), ``age_s``, ``stale``, ``simulated``, ``source`` (a readable label) and
        ``values``: per quantity ``{value, unit, observed_at, age_s, stale, datastream_id,
        datastream, simulated}``.
    """
    now = _aware(now) or datetime.now(UTC)
    # a failed query poisons a PostgreSQL transaction: isolate it in a savepoint there
    sp = conn.begin_nested() if conn.dialect.name != "sqlite" and conn.in_transaction() else None
    try:
        found = _query_latest(conn, city_id=city_id)
    except sa.exc.SQLAlchemyError as exc:  # a schema in flux must not break the hazard API
        log.warning("weather streams could not be read: %s", exc)
        if sp is not None:
            sp.rollback()
        return None
    if sp is not None:
        sp.commit()
    if "wind_speed" not in found or "wind_direction" not in found:
        return None
    values: dict[str, dict[str, Any]] = {}
    for kind, rec in found.items():
        obs_at = _aware(rec["phenomenon_time"])
        age = (now - obs_at).total_seconds() if obs_at else math.inf
        value, unit = _convert(kind, float(rec["value"]), rec["unit"])
        if kind == "wind_direction":
            value %= 360.0
        values[kind] = {
            "value": value,
            "unit": unit,
            "observed_at": obs_at.isoformat() if obs_at else None,
            "age_s": round(age, 1),
            "stale": bool(age > max_age_s),
            "datastream_id": rec["datastream_id"],
            "datastream": rec["datastream"],
            "simulated": rec["simulated"],
        }
    ws, wd = values["wind_speed"], values["wind_direction"]
    main = ws if (ws["age_s"] >= wd["age_s"]) else wd
    simulated = ws["simulated"] or wd["simulated"]
    label = f"live: {ws['datastream']} (#{ws['datastream_id']})"
    if wd["datastream_id"] != ws["datastream_id"]:
        label += f", {wd['datastream']} (#{wd['datastream_id']})"
    if simulated:
        label += " [simulated]"
    return {
        "wind_speed_m_s": ws["value"],
        "wind_from_deg": wd["value"],
        "sigma_theta_deg": values.get("sigma_theta", {}).get("value"),
        "cloud_cover_octas": values.get("cloud_cover", {}).get("value"),
        "observed_at": main["observed_at"],
        "age_s": main["age_s"],
        "stale": bool(ws["stale"] or wd["stale"]),
        "simulated": simulated,
        "source": label,
        "values": values,
    }


def _query_latest(conn: sa.Connection, *, city_id: int | None) -> dict[str, dict[str, Any]]:
    t = _weather_tables(conn)
    if t is None:
        return {}
    ds, op, obs = t["ds"], t["op"], t["obs"]
    cols = [
        ds.c.id,
        ds.c.name,
        ds.c.description,
        ds.c.unit_of_measurement,
        ds.c.properties,
        ds.c.thing_id,
        op.c.name.label("op_name"),
        op.c.definition.label("op_def"),
    ]
    frm = ds.join(op, op.c.id == ds.c.observed_property_id)
    if "sensor" in t:
        s = t["sensor"]
        cols += [
            s.c.name.label("s_name"),
            s.c.description.label("s_desc"),
            s.c.properties.label("s_props"),
        ]
        frm = frm.outerjoin(s, s.c.id == ds.c.sensor_id)
    q = sa.select(*cols).select_from(frm)
    candidates: dict[str, list[dict[str, Any]]] = {k: [] for k in _KINDS}
    for r in conn.execute(q).mappings():
        kind = _kind_of(f"{r['op_name']} {r['op_def']}") or _kind_of(str(r["name"]))
        if kind is None:
            continue
        candidates[kind].append(dict(r))
    if not any(candidates.values()):
        return {}
    allowed_things: set[int] | None = None
    if city_id is not None and "loc" in t:
        bb = _city_bbox(conn, city_id)
        if bb is not None:
            tl, loc = t["tl"], t["loc"]
            thing_ids = {c["thing_id"] for cs in candidates.values() for c in cs}
            rows = conn.execute(
                sa.select(tl.c.thing_id, loc.c.minx, loc.c.miny, loc.c.maxx, loc.c.maxy)
                .select_from(tl.join(loc, loc.c.id == tl.c.location_id))
                .where(tl.c.thing_id.in_(thing_ids))
            ).all()
            located: dict[int, bool] = {}
            m = CITY_MARGIN_DEG
            for thing_id, x0, y0, x1, y1 in rows:
                if x0 is None:
                    continue
                inside = x1 >= bb[0] - m and x0 <= bb[2] + m and y1 >= bb[1] - m and y0 <= bb[3] + m
                located[thing_id] = located.get(thing_id, False) or inside
            allowed_things = {tid for tid in thing_ids if located.get(tid, True)}
    out: dict[str, dict[str, Any]] = {}
    for kind, cs in candidates.items():
        best = None
        for c in cs:
            if allowed_things is not None and c["thing_id"] not in allowed_things:
                continue
            row = conn.execute(
                sa.select(obs.c.phenomenon_time, obs.c.result_number)
                .where(obs.c.datastream_id == c["id"], obs.c.result_number.is_not(None))
                .order_by(obs.c.phenomenon_time.desc())
                .limit(1)
            ).first()
            if row is None:
                continue
            t_obs = _aware(row[0])
            if best is None or (t_obs is not None and t_obs > best["phenomenon_time"]):
                best = {
                    "phenomenon_time": t_obs,
                    "value": row[1],
                    "unit": c["unit_of_measurement"],
                    "datastream_id": c["id"],
                    "datastream": c["name"],
                    "simulated": _truthy_simulated(
                        c.get("properties"),
                        c.get("s_props"),
                        c.get("s_name"),
                        c.get("s_desc"),
                        c.get("description"),
                        c.get("name"),
                    ),
                }
        if best is not None:
            out[kind] = best
    return out


def wind_inputs(
    conn: sa.Connection | None,
    *,
    city_id: int | None,
    wind_speed_m_s: float | None,
    wind_from_deg: float | None,
    sigma_theta_deg: float | None = None,
    cloud_cover_octas: float | None = None,
    max_age_s: float = STALE_AFTER_S,
    now: datetime | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The wind to use: the manual override if given, else the live wind.

    Returns
    -------
    (kwargs, wind)
        ``kwargs`` for :func:`~citytwin.hazard.service.assess_incident` (``wind_speed_m_s``,
        ``wind_from_deg``, ``sigma_theta_deg``, ``cloud_cover_octas``, ``weather_source``,
        ``weather_observed_at``) and ``wind``, a JSON-ready description of what was used
        (``source``: ``"manual"`` or ``"live"``, ``age_s``, ``stale``, ``simulated``, …).

    Raises
    ------
    HazardInputError
        ``wind_speed_m_s`` (or ``wind_from_deg``) when no wind is given and no weather stream
        has one, or when only half of a manual wind is given.
    """
    manual = wind_speed_m_s is not None or wind_from_deg is not None
    if manual:
        if wind_speed_m_s is None:
            raise HazardInputError(
                "wind_speed_m_s", "give the wind speed (m/s, > 0) with the direction"
            )
        if wind_from_deg is None:
            raise HazardInputError(
                "wind_from_deg",
                "give the direction the wind comes from (degrees, 0–360) with the speed",
            )
        kwargs = {
            "wind_speed_m_s": wind_speed_m_s,
            "wind_from_deg": wind_from_deg,
            "sigma_theta_deg": sigma_theta_deg,
            "cloud_cover_octas": cloud_cover_octas,
            "weather_source": "manual",
            "weather_observed_at": None,
        }
        wind = {
            "source": "manual",
            "label": "entered by hand",
            "wind_speed_m_s": wind_speed_m_s,
            "wind_from_deg": wind_from_deg,
            "sigma_theta_deg": sigma_theta_deg,
            "cloud_cover_octas": cloud_cover_octas,
            "observed_at": None,
            "age_s": None,
            "stale": False,
            "simulated": False,
        }
        return kwargs, wind
    live = (
        latest_wind(conn, city_id=city_id, max_age_s=max_age_s, now=now)
        if conn is not None
        else None
    )
    if live is None:
        raise HazardInputError(
            "wind_speed_m_s",
            "no weather stream with wind speed and direction: give wind_speed_m_s (> 0 m/s) and "
            "wind_from_deg (0–360, where the wind comes from)",
        )
    kwargs = {
        "wind_speed_m_s": live["wind_speed_m_s"],
        "wind_from_deg": live["wind_from_deg"],
        "sigma_theta_deg": sigma_theta_deg
        if sigma_theta_deg is not None
        else live["sigma_theta_deg"],
        "cloud_cover_octas": cloud_cover_octas
        if cloud_cover_octas is not None
        else live["cloud_cover_octas"],
        "weather_source": live["source"],
        "weather_observed_at": datetime.fromisoformat(live["observed_at"])
        if live["observed_at"]
        else None,
    }
    wind = {"source": "live", "label": live["source"]} | {
        k: live[k]
        for k in (
            "wind_speed_m_s",
            "wind_from_deg",
            "sigma_theta_deg",
            "cloud_cover_octas",
            "observed_at",
            "age_s",
            "stale",
            "simulated",
            "values",
        )
    }
    return kwargs, wind
