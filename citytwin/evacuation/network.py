"""Network evacuation: capacity-aware routes out of a hazard area over the street network.

Two layers:

* :func:`plan_evacuation` -- the pure kernel. Arrays in (a :class:`StreetNetwork`, origin nodes
  and persons, a hazard polygon or destination nodes), an :class:`EvacuationPlan` out. No I/O.
* :func:`evacuate` -- the service helper. Takes a street GeoDataFrame (walk or drive), buildings
  with occupants and a hazard polygon in one projected metric CRS, derives capacities and speeds,
  snaps buildings to graph nodes and returns a JSON-serialisable dict with GeoJSON-ready
  geometries (input CRS).

Method (see ``docs/evacuation-network.md``): a discrete-time point-queue model (step ``dt``
seconds, integer persons), routed by the Capacity Constrained Route Planner (CCRP, Lu, George &
Shekhar 2005) with lazy A* searches over a time-expanded reservation profile and shifted batch
reservations; compared with everyone on their free-flow shortest path (same queue model) and,
on request, with the exact optimum (binary search on the horizon with max flow on the
time-expanded network).

Units: metres, seconds, persons, persons per second. Coordinates: a projected metric CRS.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
import shapely
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import breadth_first_order
from scipy.spatial import cKDTree

from ._flow import FlowProblem, cap_profile, ccrp, queue_sim, static_times_to_sink
from ._flow_exact import min_clearance_steps, ten_arcs

__all__ = [
    "WALK_SPEED_M_PER_S",
    "WALK_SPECIFIC_FLOW_P_PER_M_S",
    "DRIVE_LANE_CAPACITY_VEH_PER_H",
    "DRIVE_OCCUPANCY_P_PER_VEH",
    "EvacuationInputError",
    "EmptyAreaError",
    "NoSafeDestinationError",
    "StreetNetwork",
    "EvacuationPlan",
    "walk_capacity_p_per_s",
    "drive_capacity_p_per_s",
    "plan_evacuation",
    "evacuate",
]

SCHEMA_VERSION = "1"

#: Free walking speed, m/s (Weidmann).
WALK_SPEED_M_PER_S = 1.34
#: Specific flow of a corridor or door, persons per metre of effective width per second (IMO).
WALK_SPECIFIC_FLOW_P_PER_M_S = 1.3
#: Boundary layer subtracted from a walkway's width, metres (0.15 m on each side).
WALK_BOUNDARY_LAYER_M = 0.3
#: Saturation flow of one traffic lane, vehicles per hour.
DRIVE_LANE_CAPACITY_VEH_PER_H = 1800.0
#: Persons per evacuating vehicle.
DRIVE_OCCUPANCY_P_PER_VEH = 1.5
#: Share of the posted speed driven in an evacuation (signals, turns, caution).
DRIVE_SPEED_FACTOR = 0.8


class EvacuationInputError(ValueError):
    """An input to the network evacuation is invalid; ``field`` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class EmptyAreaError(EvacuationInputError):
    """Nobody is inside the area to evacuate."""


class NoSafeDestinationError(EvacuationInputError):
    """No safe destination can be reached from the area."""


# --------------------------------------------------------------------------- capacities


def walk_capacity_p_per_s(width_m: Any) -> np.ndarray:
    """Pedestrian capacity of a walkway, persons per second, from its width in metres.

    ``1.3 p/(m s) * max(width - 0.3 m, 0.6 m)`` (IMO MSC.1/Circ.1533 specific flow; a 0.15 m
    boundary layer on each side).

    Examples
    --------
    >>> float(walk_capacity_p_per_s(2.3))
    2.6
    """
    w = np.asarray(width_m, dtype=float)
    return np.round(WALK_SPECIFIC_FLOW_P_PER_M_S * np.maximum(w - WALK_BOUNDARY_LAYER_M, 0.6), 9)


def drive_capacity_p_per_s(lanes_per_direction: Any) -> np.ndarray:
    """Road capacity, persons per second per direction, from lanes per direction.

    ``lanes * 1800 veh/h * 1.5 persons/veh / 3600 s/h`` = 0.75 p/s per lane.

    Examples
    --------
    >>> float(drive_capacity_p_per_s(2))
    1.5
    """
    lanes = np.maximum(np.asarray(lanes_per_direction, dtype=float), 1.0)
    return lanes * DRIVE_LANE_CAPACITY_VEH_PER_H * DRIVE_OCCUPANCY_P_PER_VEH / 3600.0


# --------------------------------------------------------------------------- kernel types


@dataclass(frozen=True)
class StreetNetwork:
    """A street network as arrays; lengths in metres, coordinates in a projected metric CRS.

    Each edge is two-way unless ``oneway`` is true (then only ``u -> v``). Capacity and speed
    hold per direction. ``node_capacity_persons`` (optional, NaN or inf = unlimited) limits how
    many persons may wait at a node at once. ``edge_geometry`` (optional shapely LineStrings,
    oriented ``u -> v``) is used for the hazard tests and the output geometries; straight
    segments otherwise.
    """

    node_id: np.ndarray
    x_m: np.ndarray
    y_m: np.ndarray
    edge_u: np.ndarray
    edge_v: np.ndarray
    length_m: np.ndarray
    capacity_p_per_s: np.ndarray
    speed_m_per_s: np.ndarray
    oneway: np.ndarray | None = None
    edge_id: np.ndarray | None = None
    node_capacity_persons: np.ndarray | None = None
    edge_geometry: np.ndarray | None = None


@dataclass
class EvacuationPlan:
    """Result of :func:`plan_evacuation`; times in seconds from the start of the evacuation.

    ``routes``: one entry per origin node and distinct path, with ``node_ids``, ``edge_ids``,
    ``persons``, first/last departure and arrival. ``bottlenecks``: edges at capacity, by peak
    queue (persons waiting at once to enter the edge, including those still at their start
    node). ``edge_loads``: persons per edge (both directions). ``shortest_path``: the same
    people on their free-flow shortest paths through the same queues.
    """

    mode_note: str
    time_step_s: float
    persons_total: int
    persons_evacuated: int
    persons_stranded: int
    clearance_90_s: float | None
    clearance_100_s: float | None
    routes: list[dict]
    origins: list[dict]
    bottlenecks: list[dict]
    edge_loads: dict[str, list]
    shortest_path: dict | None
    exact_optimum: dict | None
    stats: dict = field(default_factory=dict)
    schema_version: str = SCHEMA_VERSION

    def to_dict(self) -> dict:
        """A JSON-serialisable dict."""
        return _jsonable(asdict(self))


def _jsonable(o: Any) -> Any:
    if isinstance(o, dict):
        return {str(k): _jsonable(v) for k, v in o.items()}
    if isinstance(o, list | tuple):
        return [_jsonable(v) for v in o]
    if isinstance(o, np.ndarray):
        return [_jsonable(v) for v in o.tolist()]
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating | float):
        f = float(o)
        return f if math.isfinite(f) else None
    if isinstance(o, np.bool_):
        return bool(o)
    return o


# --------------------------------------------------------------------------- kernel


def _arr(name: str, v: Any, n: int | None, dtype: Any = float) -> np.ndarray:
    a = np.asarray(v, dtype=dtype).reshape(-1)
    if n is not None and a.size != n:
        raise EvacuationInputError(name, f"expected {n} values, got {a.size}")
    return a


def _lookup(field_name: str, ids_sorted: np.ndarray, order: np.ndarray, wanted: Any) -> np.ndarray:
    w = np.asarray(list(wanted) if not isinstance(wanted, np.ndarray) else wanted).reshape(-1)
    if w.size == 0:
        return np.zeros(0, np.int64)
    w = w.astype(ids_sorted.dtype, copy=False)
    pos = np.searchsorted(ids_sorted, w)
    pos = np.minimum(pos, ids_sorted.size - 1)
    bad = ids_sorted[pos] != w
    if bad.any():
        raise EvacuationInputError(field_name, f"unknown id(s): {w[bad][:5].tolist()}")
    return order[pos]


def _choose_dt(ttime_s: np.ndarray, horizon_s: float, m: int) -> float:
    """Largest of 1, 2, 5, 10 s that is <= median arc time / 3, then grow for memory."""
    med = float(np.median(ttime_s)) if ttime_s.size else 1.0
    dt = 1.0
    for c in (1.0, 2.0, 5.0, 10.0):
        if c <= med / 3.0:
            dt = c
    for c in (1.0, 2.0, 5.0, 10.0, 15.0, 30.0, 60.0):
        if c >= dt and m * horizon_s / c <= 60e6:
            return c
    return 60.0


def _clearance(arrivals: np.ndarray, dt: float, share: float) -> float | None:
    """arrivals[i] = persons arriving in step i - 1 (index 0: at time 0)."""
    tot = arrivals.sum()
    if tot <= 0:
        return None
    c = np.cumsum(arrivals)
    i = int(np.searchsorted(c, share * tot - 1e-9))
    return float(i * dt)


def plan_evacuation(
    network: StreetNetwork,
    *,
    origin_nodes: Sequence[int] | np.ndarray,
    origin_persons: Sequence[int] | np.ndarray,
    hazard: shapely.Geometry | None = None,
    margin_m: float = 100.0,
    destination_nodes: Sequence[int] | np.ndarray | None = None,
    destination_capacity_persons: Sequence[float] | np.ndarray | None = None,
    closed_edges: Iterable[Any] = (),
    closed_nodes: Iterable[Any] = (),
    time_step_s: float | None = None,
    batch_slack: float = 0.03,
    compare_shortest_path: bool = True,
    exact: bool | Literal["auto"] = False,
    exact_max_arcs: int = 40_000_000,
) -> EvacuationPlan:
    """Plan a capacity-aware evacuation of the persons at ``origin_nodes``.

    Parameters
    ----------
    network
        The street network (one travel mode), metric CRS.
    origin_nodes, origin_persons
        Node ids where persons start and how many (integers >= 0; repeated nodes are summed).
    hazard
        Area to leave (shapely polygon, network CRS). Nobody may enter it from outside, and an
        edge between two outside nodes that crosses it is closed; edges that start inside are
        open (people start inside and leave).
    margin_m
        Without ``destination_nodes``: every node at least this far outside ``hazard`` is safe.
    destination_nodes, destination_capacity_persons
        Assembly points or shelters (node ids) and how many persons each can take (NaN or inf:
        unlimited). They replace the margin rule.
    closed_edges, closed_nodes
        Edge ids (``network.edge_id``, default the edge index) and node ids that cannot be used.
    time_step_s
        Step of the discrete-time model, s; default chosen from the arc travel times.
    batch_slack
        Share of the arrival time by which a batch reservation may deviate from CCRP's strict
        earliest-arrival order (0.03 = 3 %).
    compare_shortest_path
        Also simulate everyone on their free-flow shortest path through the same queues.
    exact
        Also compute the exact optimum (max flow on the time-expanded network); ``"auto"``
        does so when it has at most ``exact_max_arcs`` arcs.

    Returns
    -------
    EvacuationPlan

    Examples
    --------
    >>> import numpy as np, shapely
    >>> net = StreetNetwork(node_id=np.array([0, 1, 2]), x_m=np.array([0., 100, 200]),
    ...     y_m=np.zeros(3), edge_u=np.array([0, 1]), edge_v=np.array([1, 2]),
    ...     length_m=np.array([100., 100]), capacity_p_per_s=np.array([2., 2]),
    ...     speed_m_per_s=np.array([1., 1]))
    >>> plan = plan_evacuation(net, origin_nodes=[0], origin_persons=[100],
    ...     destination_nodes=[2], time_step_s=1)
    >>> plan.clearance_100_s  # 200 s walking + 100 persons / 2 p/s
    250.0
    """
    t0 = time.perf_counter()
    c0 = time.process_time()
    nd = network
    node_id = np.asarray(nd.node_id).reshape(-1)
    N = node_id.size
    if N == 0:
        raise EvacuationInputError("network.node_id", "the network has no nodes")
    x = _arr("network.x_m", nd.x_m, N)
    y = _arr("network.y_m", nd.y_m, N)
    E = np.asarray(nd.edge_u).size
    order_n = np.argsort(node_id, kind="stable")
    ids_sorted = node_id[order_n]
    if np.any(ids_sorted[1:] == ids_sorted[:-1]):
        raise EvacuationInputError("network.node_id", "node ids must be unique")
    eu = _lookup("network.edge_u", ids_sorted, order_n, np.asarray(nd.edge_u))
    ev = _lookup("network.edge_v", ids_sorted, order_n, np.asarray(nd.edge_v))
    length = _arr("network.length_m", nd.length_m, E)
    capps = _arr("network.capacity_p_per_s", nd.capacity_p_per_s, E)
    speed = _arr("network.speed_m_per_s", nd.speed_m_per_s, E)
    if E and (not np.all(np.isfinite(length)) or length.min() < 0):
        raise EvacuationInputError("network.length_m", "lengths must be finite and >= 0 m")
    if E and (not np.all(np.isfinite(capps)) or capps.min() <= 0):
        raise EvacuationInputError("network.capacity_p_per_s", "capacities must be > 0 p/s")
    if E and (not np.all(np.isfinite(speed)) or speed.min() <= 0):
        raise EvacuationInputError("network.speed_m_per_s", "speeds must be > 0 m/s")
    oneway = np.zeros(E, bool) if nd.oneway is None else _arr("network.oneway", nd.oneway, E, bool)
    edge_id = np.arange(E) if nd.edge_id is None else np.asarray(nd.edge_id).reshape(-1)
    if edge_id.size != E:
        raise EvacuationInputError("network.edge_id", f"expected {E} values")
    if not (0.0 <= batch_slack <= 0.5):
        raise EvacuationInputError("batch_slack", "must be within 0 .. 0.5")
    if time_step_s is not None and not (0 < float(time_step_s) <= 600):
        raise EvacuationInputError("time_step_s", "must be within (0, 600] s")

    # arcs: forward for all edges, backward for two-way edges
    two = np.flatnonzero(~oneway)
    a_edge = np.concatenate([np.arange(E), two])
    a_tail = np.concatenate([eu, ev[two]])
    a_head = np.concatenate([ev, eu[two]])
    a_rev = np.concatenate([np.zeros(E, bool), np.ones(two.size, bool)])
    ok = a_tail != a_head

    closed_e = list(closed_edges)
    if closed_e:
        order_e = np.argsort(edge_id, kind="stable")
        ce = _lookup("closed_edges", edge_id[order_e], order_e, np.asarray(closed_e))
        bad_e = np.zeros(E, bool)
        bad_e[ce] = True
        ok &= ~bad_e[a_edge]
    node_closed = np.zeros(N, bool)
    closed_n = list(closed_nodes)
    if closed_n:
        node_closed[_lookup("closed_nodes", ids_sorted, order_n, np.asarray(closed_n))] = True
        ok &= ~node_closed[a_tail] & ~node_closed[a_head]

    # hazard rule
    inside = np.zeros(N, bool)
    if hazard is not None:
        if not isinstance(hazard, shapely.Geometry) or hazard.is_empty:
            raise EvacuationInputError("hazard", "must be a non-empty shapely polygon")
        if hazard.geom_type not in ("Polygon", "MultiPolygon"):
            raise EvacuationInputError("hazard", f"must be a polygon, got {hazard.geom_type}")
        shapely.prepare(hazard)
        inside = shapely.intersects_xy(hazard, x, y)
        ok &= ~(~inside[a_tail] & inside[a_head])  # never into the area
        out2 = np.flatnonzero(ok & ~inside[a_tail] & ~inside[a_head])
        if out2.size:
            # edges between two outside nodes may still cut through the area
            minx, miny, maxx, maxy = hazard.bounds
            ex0, ex1 = x[a_tail[out2]], x[a_head[out2]]
            ey0, ey1 = y[a_tail[out2]], y[a_head[out2]]
            near = (
                (np.maximum(ex0, ex1) >= minx)
                & (np.minimum(ex0, ex1) <= maxx)
                & (np.maximum(ey0, ey1) >= miny)
                & (np.minimum(ey0, ey1) <= maxy)
            )
            cand = out2[near]
            if cand.size:
                if nd.edge_geometry is not None:
                    geoms = np.asarray(nd.edge_geometry, dtype=object)[a_edge[cand]]
                else:
                    coords = np.stack(
                        [
                            np.stack([x[a_tail[cand]], y[a_tail[cand]]], 1),
                            np.stack([x[a_head[cand]], y[a_head[cand]]], 1),
                        ],
                        1,
                    )
                    geoms = shapely.linestrings(coords)
                ok[cand[shapely.intersects(geoms, hazard)]] = False

    # destinations (sinks)
    sink_cap = np.full(N, -1, np.int64)
    if destination_nodes is not None:
        dn = _lookup("destination_nodes", ids_sorted, order_n, np.asarray(destination_nodes))
        if dn.size == 0:
            raise NoSafeDestinationError("destination_nodes", "no destination given")
        if destination_capacity_persons is None:
            dc = np.full(dn.size, np.inf)
        else:
            dc = _arr("destination_capacity_persons", destination_capacity_persons, dn.size)
        if np.any(dc < 0):
            raise EvacuationInputError("destination_capacity_persons", "must be >= 0 persons")
        if inside[dn].any():
            raise EvacuationInputError(
                "destination_nodes",
                f"destination(s) inside the hazard area: {node_id[dn[inside[dn]]][:5].tolist()}",
            )
        big = np.iinfo(np.int64).max // 8
        for i, c in zip(dn.tolist(), dc.tolist(), strict=True):
            if node_closed[i]:
                continue
            c = big if not math.isfinite(c) else int(c)
            sink_cap[i] = c if sink_cap[i] < 0 else min(big, sink_cap[i] + c)
    else:
        if hazard is None:
            raise EvacuationInputError(
                "destination_nodes", "give destination nodes or a hazard polygon"
            )
        if margin_m < 0 or not math.isfinite(margin_m):
            raise EvacuationInputError("margin_m", "must be >= 0 m")
        cand = np.flatnonzero(~inside & ~node_closed)
        dist = shapely.distance(hazard, shapely.points(x[cand], y[cand]))
        sink_cap[cand[dist >= margin_m]] = np.iinfo(np.int64).max // 8
    is_sink = sink_cap >= 0
    if not is_sink.any():
        raise NoSafeDestinationError(
            "destination_nodes" if destination_nodes is not None else "margin_m",
            "no safe destination node in the network",
        )
    ok &= ~is_sink[a_tail]  # arrivals stay at their destination

    # origins
    on = _lookup("origin_nodes", ids_sorted, order_n, np.asarray(origin_nodes))
    op = _arr("origin_persons", origin_persons, on.size)
    if np.any(~np.isfinite(op)) or np.any(op < 0) or np.any(op != np.round(op)):
        raise EvacuationInputError("origin_persons", "must be whole numbers >= 0")
    supply_all = np.zeros(N, np.int64)
    np.add.at(supply_all, on, op.astype(np.int64))
    total = int(supply_all.sum())
    if total <= 0:
        raise EmptyAreaError("origin_persons", "nobody to evacuate (0 persons)")
    if node_closed[supply_all > 0].any():
        raise EvacuationInputError("closed_nodes", "an origin node is closed")

    # relevant sub-network: reachable from the origins
    arcs = np.flatnonzero(ok)
    g = csr_matrix(
        (np.ones(arcs.size + 0, np.int8), (a_tail[arcs], a_head[arcs])), shape=(N + 1, N + 1)
    )
    orig_nodes = np.flatnonzero(supply_all > 0)
    g2 = g.tolil()
    g2[N, orig_nodes] = 1
    reach = breadth_first_order(g2.tocsr(), N, directed=True, return_predecessors=False)
    reach = np.sort(reach[reach != N])
    local = np.full(N, -1, np.int64)
    local[reach] = np.arange(reach.size)
    arcs = arcs[(local[a_tail[arcs]] >= 0) & (local[a_head[arcs]] >= 0)]
    n = reach.size
    ttime = length[a_edge[arcs]] / speed[a_edge[arcs]]
    cap_in = capps[a_edge[arcs]][is_sink[a_head[arcs]]].sum()
    if cap_in <= 0:
        raise NoSafeDestinationError(
            "destination_nodes" if destination_nodes is not None else "hazard",
            "no safe destination can be reached from the area",
        )
    dt = (
        float(time_step_s)
        if time_step_s
        else _choose_dt(
            ttime,
            3 * float(ttime.sum() if ttime.size < 50 else np.percentile(ttime, 90) * 50)
            + 2 * total / cap_in,
            arcs.size,
        )
    )
    hold = np.full(n, -1, np.int64)
    if nd.node_capacity_persons is not None:
        ncap = _arr("network.node_capacity_persons", nd.node_capacity_persons, N)[reach]
        fin = np.isfinite(ncap)
        hold[fin] = np.maximum(ncap[fin], 0).astype(np.int64)
    prob = FlowProblem(
        n=n,
        tail=local[a_tail[arcs]],
        head=local[a_head[arcs]],
        tau=np.maximum(1, np.round(ttime / dt)).astype(np.int64),
        rate=capps[a_edge[arcs]] * dt,
        supply=supply_all[reach],
        sink_cap=sink_cap[reach],
        hold_cap=hold,
    )
    h, next_arc = static_times_to_sink(prob)
    reachable = np.isfinite(h)
    if not (reachable & (prob.supply > 0)).any():
        raise NoSafeDestinationError(
            "destination_nodes" if destination_nodes is not None else "hazard",
            "no safe destination can be reached from any origin",
        )
    t_pre = time.perf_counter()
    sol = ccrp(prob, h, slack=batch_slack)
    t_ccrp = time.perf_counter()
    arrivals = sol.arrivals
    evac = int(arrivals.sum())
    stranded = total - evac
    c90 = _clearance(arrivals, dt, 0.9)
    c100 = _clearance(arrivals, dt, 1.0)

    # ---------------------------------------------------------------- routes
    gl_arc = arcs  # local arc -> global arc
    routes: dict[tuple, dict] = {}
    for pc in sol.pieces:  # (plain Python on small lists: ~10^5 pieces on a city)
        key = (pc.origin, pc.arcs.tobytes())
        dep0 = int(pc.dep[0]) if pc.arcs.size else 0
        sh = pc.shifts.tolist()
        s_lo, s_hi = min(sh), max(sh)
        persons = sum(pc.persons.tolist())
        first_dep = (dep0 + s_lo) * dt
        last_dep = (dep0 + s_hi) * dt
        first_arr = (pc.arrive + 1 + s_lo) * dt
        last_arr = (pc.arrive + 1 + s_hi) * dt
        r = routes.get(key)
        if r is None:
            ga = gl_arc[pc.arcs]
            onode = reach[pc.origin]
            nodes = [node_id[onode]] + [node_id[v] for v in a_head[ga].tolist()]
            routes[key] = {
                "origin_node": node_id[onode],
                "destination_node": nodes[-1],
                "persons": persons,
                "node_ids": nodes,
                "edge_ids": edge_id[a_edge[ga]].tolist(),
                "edge_reversed": a_rev[ga].tolist(),
                "departure_first_s": first_dep,
                "departure_last_s": last_dep,
                "arrival_first_s": first_arr,
                "arrival_last_s": last_arr,
                "free_flow_s": float(prob.tau[pc.arcs].sum() * dt),
            }
        else:
            r["persons"] += persons
            r["departure_first_s"] = min(r["departure_first_s"], first_dep)
            r["departure_last_s"] = max(r["departure_last_s"], last_dep)
            r["arrival_first_s"] = min(r["arrival_first_s"], first_arr)
            r["arrival_last_s"] = max(r["arrival_last_s"], last_arr)
    route_list = sorted(routes.values(), key=lambda r: (str(r["origin_node"]), -r["persons"]))
    per_origin: dict[Any, dict] = {}
    for r in route_list:
        o = per_origin.setdefault(
            r["origin_node"],
            {
                "origin_node": r["origin_node"],
                "persons": 0,
                "routes": 0,
                "main_destination_node": r["destination_node"],
                "departure_first_s": r["departure_first_s"],
                "arrival_last_s": r["arrival_last_s"],
            },
        )
        o["persons"] += r["persons"]
        o["routes"] += 1
        o["departure_first_s"] = min(o["departure_first_s"], r["departure_first_s"])
        o["arrival_last_s"] = max(o["arrival_last_s"], r["arrival_last_s"])
    origins_out = list(per_origin.values())
    for i in np.flatnonzero(sol.stranded > 0).tolist():
        origins_out.append(
            {
                "origin_node": node_id[reach[i]],
                "persons": 0,
                "routes": 0,
                "stranded_persons": int(sol.stranded[i]),
            }
        )

    # ---------------------------------------------------------------- loads & bottlenecks
    prof = cap_profile(prob.rate, 0, sol.horizon)
    used = prof - sol.residual
    carried = used.sum(axis=1)
    sat_steps = ((sol.residual == 0) & (prof > 0)).sum(axis=1)
    peak_util = (used / np.maximum(prof, 1)).max(axis=1) if prob.m else np.zeros(0)
    del prof, used
    eload = np.zeros(E, np.int64)
    np.add.at(eload, a_edge[gl_arc], carried)
    loaded = np.flatnonzero(eload > 0)
    edge_loads = {
        "edge_ids": edge_id[loaded].tolist(),
        "persons": eload[loaded].tolist(),
        "load_ratio": (eload[loaded] / max(1, eload.max())).round(4).tolist(),
    }
    bn = np.flatnonzero((sat_steps > 0) & (sol.peak_queue > 0))
    bn = bn[np.argsort(-sol.peak_queue[bn], kind="stable")][:50]
    bottlenecks = [
        {
            "edge_id": edge_id[a_edge[gl_arc[a]]],
            "from_node": node_id[a_tail[gl_arc[a]]],
            "to_node": node_id[a_head[gl_arc[a]]],
            "peak_queue_persons": int(sol.peak_queue[a]),
            "persons": int(carried[a]),
            "capacity_p_per_s": float(capps[a_edge[gl_arc[a]]]),
            "saturated_s": float(sat_steps[a] * dt),
            "peak_utilisation": float(round(peak_util[a], 4)),
        }
        for a in bn.tolist()
    ]

    # ---------------------------------------------------------------- comparisons
    sp = None
    if compare_shortest_path:
        sp_arr, _ = queue_sim(prob, next_arc)
        s90 = _clearance(sp_arr, dt, 0.9)
        s100 = _clearance(sp_arr, dt, 1.0)
        sp = {
            "clearance_90_s": s90,
            "clearance_100_s": s100,
            "persons": int(sp_arr.sum()),
            "saving_100_s": (s100 - c100) if (s100 is not None and c100 is not None) else None,
            "saving_100_pct": round(100 * (s100 - c100) / s100, 2) if s100 and c100 else None,
            "saving_90_s": (s90 - c90) if (s90 is not None and c90 is not None) else None,
            "note": "everyone on the free-flow shortest path to the nearest destination; "
            "same point queues; destination capacities ignored",
        }
    t_sp = time.perf_counter()
    c_sp = time.process_time()
    ex = None
    if exact and stranded == 0 and c100 is not None:
        hi = int(round(c100 / dt))
        lo = int(np.max(h[prob.supply > 0])) + 1
        size = ten_arcs(prob, hi)
        if exact is True or size <= exact_max_arcs:
            T = min_clearance_steps(prob, lo, hi, max_arcs=max(exact_max_arcs, size))
            if T is not None:
                ex = {
                    "clearance_100_s": T * dt,
                    "gap_pct": round(100 * (c100 - T * dt) / (T * dt), 2),
                    "time_expanded_arcs": size,
                    "runtime_s": round(time.perf_counter() - t_sp, 3),
                }
        else:
            ex = {"clearance_100_s": None, "skipped": f"time-expanded network too big ({size})"}
    t_end = time.perf_counter()

    return EvacuationPlan(
        mode_note="discrete-time point-queue model; CCRP (lazy A*, batch reservations)",
        time_step_s=dt,
        persons_total=total,
        persons_evacuated=evac,
        persons_stranded=stranded,
        clearance_90_s=c90,
        clearance_100_s=c100,
        routes=route_list,
        origins=origins_out,
        bottlenecks=bottlenecks,
        edge_loads=edge_loads,
        shortest_path=sp,
        exact_optimum=ex,
        stats={
            "nodes": N,
            "edges": E,
            "relevant_nodes": int(n),
            "relevant_arcs": int(prob.m),
            "origin_nodes": int((prob.supply > 0).sum()),
            "horizon_steps": int(sol.horizon),
            "searches": int(sol.searches),
            "search_pops": int(sol.stats.get("pops", 0)),
            "requeued_without_search": int(sol.stats.get("requeued_without_search", 0)),
            "ea_cells_updated": int(sol.stats.get("ea_cells_updated", 0)),
            "runtime_prepare_s": round(t_pre - t0, 3),
            "runtime_ccrp_s": round(t_ccrp - t_pre, 3),
            "runtime_total_s": round(t_sp - t0, 3),
            "cpu_total_s": round(c_sp - c0, 3),
            "runtime_exact_s": round(t_end - t_sp, 3),
        },
    )


# --------------------------------------------------------------------------- service

#: Default walkable width (m) by OSM ``highway`` when no ``width`` is tagged.
WALK_DEFAULT_WIDTH_M = {
    "footway": 2.0,
    "path": 1.5,
    "pedestrian": 6.0,
    "steps": 1.5,
    "living_street": 3.0,
    "residential": 3.0,
    "service": 2.0,
    "unclassified": 3.0,
    "tertiary": 4.0,
    "secondary": 5.0,
    "primary": 6.0,
    "cycleway": 1.5,
    "track": 2.0,
}
#: Default lanes per direction by OSM ``highway`` when no ``lanes`` is tagged.
DRIVE_DEFAULT_LANES = {
    "motorway": 2,
    "trunk": 2,
    "primary": 2,
    "secondary": 1,
    "tertiary": 1,
    "motorway_link": 1,
    "trunk_link": 1,
    "primary_link": 1,
    "residential": 1,
    "unclassified": 1,
    "service": 1,
    "living_street": 1,
}
#: Default speed limit (km/h) by OSM ``highway`` when no ``maxspeed`` is tagged.
DRIVE_DEFAULT_KMH = {
    "motorway": 100,
    "trunk": 80,
    "primary": 50,
    "secondary": 50,
    "tertiary": 40,
    "residential": 30,
    "living_street": 20,
    "service": 20,
    "unclassified": 40,
}
_NOT_WALKABLE = {"motorway", "motorway_link", "trunk", "trunk_link"}
_NOT_DRIVABLE = {"footway", "path", "pedestrian", "steps", "cycleway", "track", "bridleway"}


def _first(v: Any) -> Any:
    return v[0] if isinstance(v, list | tuple) and v else v


def _num(v: Any) -> float:
    """First number in an OSM tag value ('2', '2;3', '30 mph', ['3', '4']); NaN if none."""
    v = _first(v)
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return float("nan")
    if isinstance(v, int | float | np.integer | np.floating):
        return float(v)
    mt = re.search(r"[-+]?\d+(?:[.,]\d+)?", str(v))
    if not mt:
        return float("nan")
    x = float(mt.group(0).replace(",", "."))
    return x * 1.609344 if "mph" in str(v) else x


def _col(gdf: Any, name: str) -> list:
    return gdf[name].tolist() if name in gdf.columns else [None] * len(gdf)


def _network_from_gdf(
    edges: Any, mode: str, walk_speed_m_per_s: float
) -> tuple[StreetNetwork, np.ndarray]:
    """StreetNetwork (ids = GeoDataFrame index) and edge geometries from a street GeoDataFrame."""
    if "geometry" not in getattr(edges, "columns", ()):
        raise EvacuationInputError("edges", "must be a GeoDataFrame with line geometries")
    hw = [str(_first(v)) if v is not None else "" for v in _col(edges, "highway")]
    bad = _NOT_WALKABLE if mode == "walk" else _NOT_DRIVABLE
    keep = np.array([h not in bad for h in hw], bool)
    e = edges[keep]
    hw = [h for h, k in zip(hw, keep, strict=True) if k]
    geoms = np.asarray(e.geometry.values, dtype=object)
    if len(e) == 0:
        raise EvacuationInputError("edges", f"no street usable for mode {mode!r}")
    types = shapely.get_type_id(geoms)
    if np.any(types != 1):
        geoms = np.array(
            [shapely.line_merge(g) if t == 5 else g for g, t in zip(geoms, types, strict=True)],
            dtype=object,
        )
        if np.any(shapely.get_type_id(geoms) != 1):
            raise EvacuationInputError("edges", "geometries must be LineStrings")
    p0 = shapely.get_coordinates(shapely.get_point(geoms, 0))
    p1 = shapely.get_coordinates(shapely.get_point(geoms, -1))
    if "u" in e.columns and "v" in e.columns:
        u = e["u"].to_numpy()
        v = e["v"].to_numpy()
        ids = np.concatenate([u, v])
        xy = np.concatenate([p0, p1])
        node_id, first = np.unique(ids, return_index=True)
        nx_, ny_ = xy[first, 0], xy[first, 1]
    else:  # node = endpoint, snapped to 1 cm
        key = np.round(np.concatenate([p0, p1]) * 100).astype(np.int64)
        uniq, first, inv = np.unique(key, axis=0, return_index=True, return_inverse=True)
        inv = inv.reshape(-1)
        xy = np.concatenate([p0, p1])
        node_id = np.arange(uniq.shape[0])
        nx_, ny_ = xy[first, 0], xy[first, 1]
        u, v = inv[: len(e)], inv[len(e) :]
    length = np.array([_num(x) for x in _col(e, "length")], float)
    glen = shapely.length(geoms)
    length = np.where(np.isfinite(length) & (length > 0), length, glen)
    ow_raw = [str(_first(x)).lower() if x is not None else "" for x in _col(e, "oneway")]
    reverse = np.array([x == "-1" for x in ow_raw], bool)
    if mode == "walk":
        oneway = np.zeros(len(e), bool)
        w = np.array([_num(x) for x in _col(e, "width")], float)
        dflt = np.array([WALK_DEFAULT_WIDTH_M.get(h, 3.0) for h in hw], float)
        w = np.where(np.isfinite(w) & (w > 0), w, dflt)
        cap = walk_capacity_p_per_s(w)
        speed = np.full(len(e), float(walk_speed_m_per_s))
        reverse[:] = False
    else:
        oneway = np.array([x in ("yes", "true", "1", "-1") for x in ow_raw], bool)
        oneway |= np.array([h in ("motorway", "motorway_link") for h in hw], bool)
        lanes = np.array([_num(x) for x in _col(e, "lanes")], float)
        dl = np.array([DRIVE_DEFAULT_LANES.get(h, 1) for h in hw], float)
        lanes_dir = np.where(
            np.isfinite(lanes) & (lanes > 0), np.where(oneway, lanes, lanes / 2.0), dl
        )
        cap = drive_capacity_p_per_s(np.maximum(np.floor(lanes_dir), 1))
        kmh = np.array([_num(x) for x in _col(e, "maxspeed")], float)
        dk = np.array([DRIVE_DEFAULT_KMH.get(h, 40) for h in hw], float)
        kmh = np.where(np.isfinite(kmh) & (kmh > 0), kmh, dk)
        speed = kmh / 3.6 * DRIVE_SPEED_FACTOR
    u2 = np.where(reverse, v, u)
    v2 = np.where(reverse, u, v)
    geoms = np.where(reverse, shapely.reverse(geoms), geoms)
    net = StreetNetwork(
        node_id=node_id,
        x_m=nx_,
        y_m=ny_,
        edge_u=u2,
        edge_v=v2,
        length_m=length,
        capacity_p_per_s=cap,
        speed_m_per_s=speed,
        oneway=oneway,
        edge_id=e.index.to_numpy(),
        edge_geometry=geoms,
    )
    return net, geoms


def _points(
    obj: Any, field_name: str, value_col: str | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, list]:
    """(x, y, values, ids) from a GeoDataFrame (representative points) or (x, y[, value]) rows."""
    if hasattr(obj, "geometry") and hasattr(obj, "columns"):
        pts = shapely.point_on_surface(np.asarray(obj.geometry.values, dtype=object))
        xy = shapely.get_coordinates(pts)
        if xy.shape[0] != len(obj):
            raise EvacuationInputError(field_name, "every feature needs a non-empty geometry")
        vals = None
        if value_col is not None and value_col in obj.columns:
            vals = obj[value_col].to_numpy(dtype=float)
        return xy[:, 0], xy[:, 1], vals, obj.index.tolist()
    rows = np.asarray(obj, dtype=float)
    if rows.ndim != 2 or rows.shape[1] not in (2, 3):
        raise EvacuationInputError(
            field_name, "expected a GeoDataFrame or rows of (x_m, y_m[, value])"
        )
    vals = rows[:, 2] if rows.shape[1] == 3 else None
    return rows[:, 0], rows[:, 1], vals, list(range(rows.shape[0]))


def evacuate(
    *,
    edges: Any,
    buildings: Any,
    hazard_polygon: shapely.Geometry,
    mode: str,
    margin_m: float = 100.0,
    occupants_column: str = "occupants",
    assembly_points: Any = None,
    assembly_capacity_column: str = "capacity",
    closed_edges: Iterable[Any] = (),
    closed_assembly_points: Iterable[Any] = (),
    walk_speed_m_per_s: float = WALK_SPEED_M_PER_S,
    time_step_s: float | None = None,
    exact: bool | Literal["auto"] = False,
    max_snap_m: float = 500.0,
) -> dict:
    """Evacuate the occupants of the buildings inside ``hazard_polygon`` over a street network.

    Parameters
    ----------
    edges
        Street GeoDataFrame (LineStrings, projected metric CRS), one row per street segment,
        its index the edge id. Optional columns: ``u``, ``v`` (node ids; else endpoints are
        matched), ``length`` (m), ``highway``, ``width`` (m, walk), ``lanes`` and
        ``maxspeed`` (km/h or "NN mph", drive), ``oneway``. Or a :class:`StreetNetwork`.
    buildings
        GeoDataFrame with ``occupants_column`` (persons), or rows ``(x_m, y_m, persons)``.
        Only buildings inside the hazard polygon are evacuated.
    hazard_polygon
        Area to evacuate (shapely, same CRS).
    mode
        ``"walk"`` or ``"drive"``.
    margin_m
        Without assembly points, nodes at least this far outside the area are safe.
    assembly_points
        Optional GeoDataFrame (points; ``assembly_capacity_column`` persons, missing =
        unlimited) or rows ``(x_m, y_m[, capacity])``; snapped to the nearest node.
    closed_edges, closed_assembly_points
        Edge ids (``edges`` index) and assembly point ids (index or row number) closed.
    exact
        Also compute the exact optimum (slow on large areas); ``"auto"``: when small enough.

    Returns
    -------
    dict
        JSON-serialisable: the :class:`EvacuationPlan` fields plus ``routes_geojson``,
        ``bottlenecks_geojson`` and ``edge_loads_geojson`` (FeatureCollections, input CRS),
        ``buildings_evacuated`` and ``crs``.
    """
    if mode not in ("walk", "drive"):
        raise EvacuationInputError("mode", f"must be 'walk' or 'drive', got {mode!r}")
    if (
        not isinstance(hazard_polygon, shapely.Geometry)
        or hazard_polygon.is_empty
        or (hazard_polygon.geom_type not in ("Polygon", "MultiPolygon"))
    ):
        raise EvacuationInputError("hazard_polygon", "must be a non-empty shapely polygon")
    crs = getattr(edges, "crs", None)
    if crs is not None and getattr(crs, "is_geographic", False):
        raise EvacuationInputError("edges", "use a projected metric CRS, not degrees")
    if isinstance(edges, StreetNetwork):
        net = edges
        geoms = net.edge_geometry
    else:
        net, geoms = _network_from_gdf(edges, mode, walk_speed_m_per_s)

    bx, by, bocc, bids = _points(buildings, "buildings", occupants_column)
    if bocc is None:
        raise EvacuationInputError("buildings", f"no {occupants_column!r} column / value")
    bocc = np.nan_to_num(bocc, nan=0.0)
    if np.any(bocc < 0):
        raise EvacuationInputError(occupants_column, "occupants must be >= 0 persons")
    shapely.prepare(hazard_polygon)
    inb = shapely.intersects_xy(hazard_polygon, bx, by) & (bocc > 0)
    persons_in = float(bocc[inb].sum())
    if not inb.any() or persons_in < 0.5:
        raise EmptyAreaError("hazard_polygon", "nobody inside the area (no occupied building)")

    nodes_xy = np.column_stack([np.asarray(net.x_m, float), np.asarray(net.y_m, float)])
    # origins snap to nodes inside the area or within reach of it (usable to leave)
    tree = cKDTree(nodes_xy)
    dist, nidx = tree.query(np.column_stack([bx[inb], by[inb]]))
    if np.any(dist > max_snap_m):
        raise EvacuationInputError(
            "buildings",
            f"{int((dist > max_snap_m).sum())} building(s) farther than "
            f"{max_snap_m} m from any street",
        )
    persons = np.round(bocc[inb]).astype(np.int64)
    node_ids = np.asarray(net.node_id)[nidx]

    dest_nodes = dest_cap = None
    ap_ids: list = []
    if assembly_points is not None:
        ax, ay, acap, ap_ids = _points(assembly_points, "assembly_points", assembly_capacity_column)
        closed_ap = set(closed_assembly_points)
        unknown = closed_ap - set(ap_ids)
        if unknown:
            raise EvacuationInputError(
                "closed_assembly_points", f"unknown id(s): {sorted(unknown, key=str)[:5]}"
            )
        open_ = np.array([i not in closed_ap for i in ap_ids], bool)
        if not open_.any():
            raise NoSafeDestinationError("assembly_points", "every assembly point is closed")
        ad, ai = tree.query(np.column_stack([ax[open_], ay[open_]]))
        if np.any(ad > max_snap_m):
            raise EvacuationInputError(
                "assembly_points", f"farther than {max_snap_m} m from a street"
            )
        dest_nodes = np.asarray(net.node_id)[ai]
        dest_cap = (
            np.full(ai.size, np.inf)
            if acap is None
            else np.nan_to_num(acap[open_], nan=np.inf, posinf=np.inf)
        )
        inside_ap = shapely.intersects_xy(hazard_polygon, ax[open_], ay[open_])
        if inside_ap.any():
            raise EvacuationInputError(
                "assembly_points", "an open assembly point lies inside the hazard area"
            )
    elif list(closed_assembly_points):
        raise EvacuationInputError("closed_assembly_points", "no assembly points given")

    plan = plan_evacuation(
        net,
        origin_nodes=node_ids,
        origin_persons=persons,
        hazard=hazard_polygon,
        margin_m=margin_m,
        destination_nodes=dest_nodes,
        destination_capacity_persons=dest_cap,
        closed_edges=closed_edges,
        time_step_s=time_step_s,
        exact=exact,
    )
    out = plan.to_dict()
    out["mode"] = mode
    out["crs"] = crs.to_string() if crs is not None else None
    out["buildings_evacuated"] = int(inb.sum())

    # geometries ---------------------------------------------------------------
    eid = np.asarray(
        net.edge_id if net.edge_id is not None else np.arange(np.asarray(net.edge_u).size)
    )
    order_e = np.argsort(eid, kind="stable")
    eid_sorted = eid[order_e]
    nid = np.asarray(net.node_id)
    order_n = np.argsort(nid, kind="stable")

    def edge_index(ids: list) -> np.ndarray:
        return order_e[np.searchsorted(eid_sorted, np.asarray(ids, dtype=eid.dtype))]

    def node_xy(ids: list) -> np.ndarray:
        return nodes_xy[order_n[np.searchsorted(nid[order_n], np.asarray(ids, dtype=nid.dtype))]]

    def line(edge_ids: list, rev: list, node_ids_: list) -> list:
        if geoms is None or not edge_ids:
            return node_xy(node_ids_).round(2).tolist()
        coords: list = []
        for k, r in zip(edge_index(edge_ids).tolist(), rev, strict=True):
            c = shapely.get_coordinates(geoms[k])
            if r:
                c = c[::-1]
            coords.extend(c[1:].tolist() if coords else c.tolist())
        return np.round(np.asarray(coords), 2).tolist()

    maxload = max(out["edge_loads"]["persons"] or [1])
    load_of = dict(zip(out["edge_loads"]["edge_ids"], out["edge_loads"]["persons"], strict=True))
    out["routes_geojson"] = {
        "type": "FeatureCollection",
        "features": [
            {
                "type": "Feature",
                "geometry": {
                    "type": "LineString",
                    "coordinates": line(r["edge_ids"], r["edge_reversed"], r["node_ids"]),
                },
                "properties": {
                    k: r[k]
                    for k in (
                        "origin_node",
                        "destination_node",
                        "persons",
                        "departure_first_s",
                        "departure_last_s",
                        "arrival_first_s",
                        "arrival_last_s",
                    )
                }
                | {
                    "max_load_ratio": round(
                        max([load_of.get(e, 0) for e in r["edge_ids"]] or [0]) / maxload, 4
                    )
                },
            }
            for r in out["routes"]
            if len(r["node_ids"]) > 1
        ],
    }

    def edge_feature(e: Any, props: dict) -> dict:
        k = int(edge_index([e])[0])
        if geoms is not None:
            c = np.round(shapely.get_coordinates(geoms[k]), 2).tolist()
        else:
            c = node_xy([np.asarray(net.edge_u)[k], np.asarray(net.edge_v)[k]]).round(2).tolist()
        return {
            "type": "Feature",
            "geometry": {"type": "LineString", "coordinates": c},
            "properties": props,
        }

    out["bottlenecks_geojson"] = {
        "type": "FeatureCollection",
        "features": [edge_feature(b["edge_id"], b) for b in out["bottlenecks"]],
    }
    el = out["edge_loads"]
    out["edge_loads_geojson"] = {
        "type": "FeatureCollection",
        "features": [
            edge_feature(e, {"edge_id": e, "persons": p, "load_ratio": lr})
            for e, p, lr in zip(el["edge_ids"], el["persons"], el["load_ratio"], strict=True)
        ],
    }
    return out
