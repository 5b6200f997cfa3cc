"""One seeded JuPedSim run of a validated scenario: placement, the stepping loop, sampling.

Private module. JuPedSim does the pedestrian dynamics; this module only sets it up, releases
agents after their pre-movement time, re-routes CFSM standoffs at narrow openings
(:data:`STANDOFF_AFTER_S`), records exit times exactly (per step) and positions every
``sample_interval_s`` for playback and PedPy analysis.
"""

from __future__ import annotations

import dataclasses
import time
import warnings
from collections.abc import Callable

import jupedsim as jps
import numpy as np
import shapely
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree
from shapely.geometry import Polygon

from ._pedsim_schema import AgentGroup, Scenario, ScenarioError

Progress = Callable[[float, str], None]

STANDOFF_AFTER_S = 5.0
"""Standoff recovery (CFSM only): an agent is *held up* after moving < ``STANDOFF_MOVE_M`` in
this many seconds while it should walk.

With CFSM's neighbour repulsion (range 0.25 m by default) two agents that reach a narrow
opening (a 1 m door, a corridor mouth) from either side can hold each other off for ever: each
stands beside the frame and the other's push cancels the sideways part of its desired
direction (docs/pedsim.md, "Standoff recovery"). A small group of held-up agents (2 to
``STANDOFF_MAX_GROUP``, linked by distances ≤ ``STANDOFF_PAIR_M``) with no walking agent near
is sent via a JuPedSim waypoint half a metre beyond its centre, towards the members' targets
(into the opening), then on to their exits. Queues and jams are far larger groups or have
walking agents at their edge, so the rule does not touch crowds."""
STANDOFF_MOVE_M = 0.1
"""Less than this movement (m) in ``STANDOFF_AFTER_S`` counts as held up."""
STANDOFF_PAIR_M = 1.6
"""Held-up agents at most this far apart (m, centre to centre) belong to one standoff group."""
STANDOFF_MAX_GROUP = 4
"""Largest standoff group; a group that size or smaller with no walking agent within
``STANDOFF_PAIR_M`` of any member is re-routed. Jams are far larger groups."""


class SimulationError(RuntimeError):
    """JuPedSim stopped mid-run (e.g. a force model pushed an agent through a wall)."""


@dataclasses.dataclass
class RawRun:
    """What one simulation produced, before analysis (arrays, SI units)."""

    seed: int
    positions0: np.ndarray  # (n, 2) m, start positions
    group: np.ndarray  # (n,) group index
    desired_speed: np.ndarray  # (n,) m/s
    premovement: np.ndarray  # (n,) s
    target_exit: np.ndarray  # (n,) index into scenario.exits
    exit_time: np.ndarray  # (n,) s, door-line crossing; NaN if still inside at the end
    sample_times: np.ndarray  # (f,) s
    x: np.ndarray  # (f, n) float32 m, NaN when not in the simulation
    y: np.ndarray  # (f, n) float32 m
    end_time_s: float
    stalled: bool  # stopped because nobody left for ``stall_timeout_s`` (a jam/deadlock)
    rerouted: np.ndarray  # (n,) int, times re-routed by the standoff recovery
    steps: int
    wall_time_s: float


def _child_seed(seed: int, *keys: int) -> int:
    return int(np.random.SeedSequence([seed, *keys]).generate_state(1, dtype=np.uint32)[0])


def _split(total: int, weights: list[float]) -> list[int]:
    """Split ``total`` by weights with the largest-remainder rule."""
    w = np.asarray(weights, dtype=float)
    raw = total * w / w.sum()
    out = np.floor(raw).astype(int)
    for k in np.argsort(-(raw - out))[: total - out.sum()]:
        out[k] += 1
    return out.tolist()


def place_group(gr: AgentGroup, *, seed: int, index: int, field: str) -> np.ndarray:
    """Start positions (n, 2) in m for one group; ScenarioError if they do not fit."""
    if gr.positions is not None:
        return gr.positions.copy()
    if gr.count == 0:
        return np.zeros((0, 2))
    parts = [p for p in getattr(gr.spawn, "geoms", [gr.spawn]) if isinstance(p, Polygon)]
    counts = _split(gr.count, [p.area for p in parts])
    out = []
    state = np.random.get_state()  # jps.distribute_* seeds numpy's global RNG; restore it
    try:
        for k, (part, n) in enumerate(zip(parts, counts, strict=True)):
            if n == 0:
                continue
            try:
                pts = jps.distribute_by_number(
                    polygon=part, number_of_agents=n, distance_to_agents=2 * gr.radius_m,
                    distance_to_polygon=gr.radius_m, seed=_child_seed(seed, index, k),
                    max_iterations=10000)
            except jps.AgentNumberError as exc:
                raise ScenarioError(field, f"{gr.count} agents do not fit into the spawn area "
                                    f"with {2 * gr.radius_m:g} m spacing ({exc}); lower the "
                                    "count or enlarge the area") from None
            out.append(np.asarray(pts, dtype=float))
    finally:
        np.random.set_state(state)
    return np.concatenate(out) if out else np.zeros((0, 2))


def _draw(rng: np.random.Generator, d: dict, n: int) -> np.ndarray:
    kind = d["distribution"]
    if kind == "constant":
        return np.full(n, d["value"])
    if kind == "uniform":
        return rng.uniform(d["min"], d["max"], n)
    return np.clip(rng.normal(d["mean"], d["sd"], n), d["min"], d["max"])


def _model(sc: Scenario, seed: int):
    p = dict(sc.model_parameters)
    if sc.model == "CollisionFreeSpeedModel":
        return jps.CollisionFreeSpeedModel(**p)
    if sc.model == "CollisionFreeSpeedModelV2":
        return jps.CollisionFreeSpeedModelV2()
    if sc.model == "AnticipationVelocityModel":
        return jps.AnticipationVelocityModel(rng_seed=_child_seed(seed, 9999), **p)
    if sc.model == "SocialForceModel":
        return jps.SocialForceModel(**p)
    if sc.model == "GeneralizedCentrifugalForceModel":
        return jps.GeneralizedCentrifugalForceModel(**p)
    raise AssertionError(sc.model)


def _agent_params(sc: Scenario, pos, speed: float, radius: float, journey: int, stage: int):
    a = dict(sc.agent_parameters)
    common = {"position": tuple(pos), "journey_id": journey, "stage_id": stage,
              "desired_speed": speed}
    if sc.model == "CollisionFreeSpeedModel":
        return jps.CollisionFreeSpeedModelAgentParameters(radius=a.pop("radius", radius),
                                                          **common, **a)
    if sc.model == "CollisionFreeSpeedModelV2":
        return jps.CollisionFreeSpeedModelV2AgentParameters(radius=a.pop("radius", radius),
                                                            **common, **a)
    if sc.model == "AnticipationVelocityModel":
        return jps.AnticipationVelocityModelAgentParameters(radius=a.pop("radius", radius),
                                                            **common, **a)
    if sc.model == "SocialForceModel":
        return jps.SocialForceModelAgentParameters(radius=a.pop("radius", radius), **common, **a)
    return jps.GeneralizedCentrifugalForceModelAgentParameters(**common, **a)


def prepare_agents(sc: Scenario, seed: int) -> tuple[np.ndarray, ...]:
    """Positions, group index, desired speed, pre-movement time and radius for all agents."""
    pos, grp, spd, pre, rad = [], [], [], [], []
    for i, gr in enumerate(sc.groups):
        p = place_group(gr, seed=seed, index=i, field=f"agents[{i}].count")
        rng = np.random.default_rng(np.random.SeedSequence([seed, i, 1]))
        n = len(p)
        v = np.clip(rng.normal(gr.speed["mean"], gr.speed["sd"], n), gr.speed["min"],
                    gr.speed["max"]) if gr.speed["sd"] > 0 else np.full(n, gr.speed["mean"])
        pos.append(p)
        grp.append(np.full(n, i))
        spd.append(v)
        pre.append(_draw(rng, gr.premovement, n))
        rad.append(np.full(n, gr.radius_m))
    return (np.concatenate(pos), np.concatenate(grp).astype(int), np.concatenate(spd),
            np.concatenate(pre), np.concatenate(rad))


def choose_exits(sc: Scenario, positions: np.ndarray, group: np.ndarray) -> np.ndarray:
    """Index (into ``sc.exits``) of the exit with the shortest walking route for each agent."""
    routing = jps.RoutingEngine(sc.geometry)
    targets = {i: e.stage.centroid for i, e in enumerate(sc.exits) if not e.closed}
    dist = np.full((len(positions), len(sc.exits)), np.inf)
    for j, c in targets.items():
        t = (c.x, c.y)
        for k, p in enumerate(positions):
            pts = np.asarray(routing.compute_waypoints(tuple(p), t))
            dist[k, j] = np.sum(np.hypot(*np.diff(pts, axis=0).T)) if len(pts) > 1 else 0.0
    for i, gr in enumerate(sc.groups):
        if gr.exits is None:
            continue
        banned = [j for j, e in enumerate(sc.exits) if e.name not in gr.exits]
        dist[np.ix_(group == i, banned)] = np.inf
    return np.argmin(dist, axis=1)


def _door_counters(sim, sc: Scenario) -> list[Callable[[], object]]:
    """Per open exit, a function returning the ids of agents beyond its door line.

    The area beyond the line is the exit corridor minus the room (the corridor overlaps the
    room by 1 cm to join it). Uses JuPedSim's C++ query with the polygon converted once
    (``agents_in_polygon`` would convert it on every call, ~5× slower).
    """
    out = []
    for e in sc.exits:
        if e.closed:
            continue
        beyond = e.corridor.difference(sc.free_area.buffer(1e-9))
        beyond = max(getattr(beyond, "geoms", [beyond]), key=lambda g: g.area)
        try:
            from jupedsim.geometry_utils import build_geometry

            ring = build_geometry(beyond).boundary()
            query = sim._obj.agents_in_polygon
            out.append(lambda q=query, r=ring: q(r))
        except (ImportError, AttributeError):  # pragma: no cover - other JuPedSim layouts
            out.append(lambda b=beyond: sim.agents_in_polygon(b))
    return out


class _StandoffRecovery:
    """Finds CFSM standoff groups once a simulated second and re-routes them (STANDOFF_AFTER_S).

    Counts re-routings per agent in ``rerouted`` (shared with the caller). Inactive for the force
    models, which push agents past each other (and through door frames if steered at them).
    """

    def __init__(self, sim, sc: Scenario, journeys: dict[int, tuple[int, int]],
                 target: np.ndarray, pre: np.ndarray, index_of: dict[int, int],
                 rerouted: np.ndarray) -> None:
        self.active = sc.model in ("CollisionFreeSpeedModel", "CollisionFreeSpeedModelV2")
        self.sim, self.journeys = sim, journeys
        self.inner = sc.geometry.buffer(-0.2)  # a waypoint must leave room for a body
        self.target, self.pre, self.index_of, self.rerouted = target, pre, index_of, rerouted
        self.anchor = np.full((len(target), 2), np.nan)  # where each agent last moved from
        self.since = np.zeros(len(target))  # ... and when

    def check(self, t: float) -> None:
        agents = list(self.sim.agents())
        if len(agents) < 2:
            return
        ks = np.array([self.index_of[a.id] for a in agents])
        pos = np.array([a.position for a in agents])
        moved = ~(np.hypot(*(pos - self.anchor[ks]).T) < STANDOFF_MOVE_M)  # NaN: first look
        self.anchor[ks[moved]] = pos[moved]
        self.since[ks[moved]] = t
        held = np.flatnonzero((t - self.since[ks] >= STANDOFF_AFTER_S)
                              & (self.pre[ks] + STANDOFF_AFTER_S <= t))
        if len(held) < 2:
            return
        is_held = np.zeros(len(agents), dtype=bool)
        is_held[held] = True
        pairs = cKDTree(pos).query_pairs(STANDOFF_PAIR_M, output_type="ndarray")  # (m, 2)
        both = is_held[pairs].all(axis=1)
        touches_mover = np.zeros(len(agents), dtype=bool)  # a held agent near a walking one
        mixed = pairs[is_held[pairs].any(axis=1) & ~both]
        touches_mover[mixed.ravel()] = True
        links = pairs[both]
        graph = coo_matrix((np.ones(len(links)), (links[:, 0], links[:, 1])),
                           shape=(len(agents), len(agents)))
        _, label = connected_components(graph, directed=False)
        size = np.bincount(label[held])
        for lab in np.flatnonzero((size >= 2) & (size <= STANDOFF_MAX_GROUP)):
            group = held[label[held] == lab]
            if not touches_mover[group].any():
                self._reroute(group.tolist(), agents, ks, pos, t)

    def _reroute(self, group: list[int], agents, ks: np.ndarray, pos: np.ndarray,
                 t: float) -> None:
        heading = sum(_unit(np.asarray(agents[i].target) - pos[i]) for i in group)
        via = pos[group].mean(axis=0) + 0.5 * _unit(heading)
        if not self.inner.contains(shapely.Point(via)):
            return
        for i in group:
            k = ks[i]
            stage = self.journeys[int(self.target[k])][1]
            wp = self.sim.add_waypoint_stage(tuple(via), 0.3)
            desc = jps.JourneyDescription([wp, stage])
            desc.set_transition_for_stage(wp, jps.Transition.create_fixed_transition(stage))
            self.sim.switch_agent_journey(agents[i].id, self.sim.add_journey(desc), wp)
            self.rerouted[k] += 1
            self.since[k] = t  # held up again only after another STANDOFF_AFTER_S


def _unit(v: np.ndarray) -> np.ndarray:
    norm = float(np.hypot(*v))
    return v / norm if norm > 0 else v


def simulate(sc: Scenario, *, seed: int, progress: Progress | None = None) -> RawRun:
    """Run one seed of ``sc`` with JuPedSim until everybody is out or ``max_time_s``."""
    t0 = time.perf_counter()
    positions, group, speed, pre, radius = prepare_agents(sc, seed)
    target = choose_exits(sc, positions, group)
    n = len(positions)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        sim = jps.Simulation(model=_model(sc, seed), geometry=sc.geometry, dt=sc.dt_s)
    journeys: dict[int, tuple[int, int]] = {}
    for j, e in enumerate(sc.exits):
        if not e.closed:
            stage = sim.add_exit_stage(shapely.get_coordinates(e.stage.exterior)[:-1].tolist())
            journeys[j] = (sim.add_journey(jps.JourneyDescription([stage])), stage)
    counters = _door_counters(sim, sc)
    ids = np.empty(n, dtype=np.int64)
    for k in range(n):
        jid, sid = journeys[int(target[k])]
        v0 = speed[k] if pre[k] <= 0 else 0.0
        ids[k] = sim.add_agent(_agent_params(sc, positions[k], v0, radius[k], jid, sid))
    index_of = {int(a): k for k, a in enumerate(ids)}

    order = np.argsort(pre, kind="stable")
    pending = [int(k) for k in order if pre[k] > 0]
    pend_ptr = 0
    exit_time = np.full(n, np.nan)
    every = max(1, int(round(sc.sample_interval_s / sc.dt_s)))
    max_steps = int(np.ceil(sc.max_time_s / sc.dt_s))
    frames_t: list[float] = []
    frames_x: list[np.ndarray] = []
    frames_y: list[np.ndarray] = []

    def sample(t: float) -> None:
        fx = np.full(n, np.nan, dtype=np.float32)
        fy = np.full(n, np.nan, dtype=np.float32)
        for a in sim.agents():
            k = index_of[a.id]
            fx[k], fy[k] = a.position
        frames_t.append(t)
        frames_x.append(fx)
        frames_y.append(fy)

    sample(0.0)
    dt = sc.dt_s
    step = 0
    out = 0
    next_report = 0.0
    iterate = sim.iterate
    removed_agents = sim.removed_agents
    stall_steps = int(np.ceil(sc.stall_timeout_s / dt))
    last_exit_step = int(np.ceil(max(pre.max(initial=0.0), 0.0) / dt))  # wait for everyone
    stalled = False
    rerouted = np.zeros(n, dtype=int)
    standoff = _StandoffRecovery(sim, sc, journeys, target, pre, index_of, rerouted)
    check_every = max(1, int(round(1.0 / dt))) if standoff.active else 0
    while step < max_steps and out < n:
        try:
            iterate()
        except RuntimeError as exc:
            raise SimulationError(f"JuPedSim ({sc.model}) failed at t = {step * dt:.2f} s, "
                                  f"seed {seed}: {exc}; try a smaller dt_s or another model"
                                  ) from None
        step += 1
        t = step * dt
        for beyond in counters:  # exit time = first step past the door line
            for a in beyond():
                k = index_of[a]
                if np.isnan(exit_time[k]):
                    exit_time[k] = t
        if check_every and step % check_every == 0:
            standoff.check(t)
        removed = removed_agents()
        if removed:
            for a in removed:
                k = index_of[a]
                if np.isnan(exit_time[k]):  # not seen beyond the line (cannot happen at dt ≤ 0.1)
                    exit_time[k] = t
            out += len(removed)
            last_exit_step = max(last_exit_step, step)
        elif step - last_exit_step > stall_steps:
            stalled = True
            break
        while pend_ptr < len(pending) and pre[pending[pend_ptr]] <= t:
            k = pending[pend_ptr]
            if np.isnan(exit_time[k]):
                sim.agent(int(ids[k])).model.desired_speed = float(speed[k])
            pend_ptr += 1
        if step % every == 0:
            sample(t)
            if progress is not None:
                frac = max(out / n, t / sc.max_time_s)
                if frac >= next_report:
                    progress(min(frac, 0.99), f"seed {seed}: t = {t:.0f} s, {out}/{n} out")
                    next_report = frac + 0.02
    if step % every != 0:
        sample(step * dt)
    return RawRun(
        seed=seed, positions0=positions, group=group, desired_speed=speed, premovement=pre,
        target_exit=target, exit_time=exit_time, sample_times=np.asarray(frames_t),
        x=np.vstack(frames_x), y=np.vstack(frames_y), end_time_s=step * dt, stalled=stalled,
        rerouted=rerouted, steps=step,
        wall_time_s=time.perf_counter() - t0)
