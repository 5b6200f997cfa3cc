"""Discrete-time evacuation flow engines (private).

The model shared by every engine here (and by :mod:`._flow_exact`):

* time runs in steps of ``dt`` seconds; a person who enters arc ``a`` during step ``k`` reaches
  its head during step ``k + tau[a]`` (``tau >= 1``) and may leave again in that same step;
* arc ``a`` admits ``rate[a]`` persons per step on average (a float > 0): in step ``t`` at
  most ``floor((t + 1) * rate) - floor(t * rate)`` persons (integers) may enter it, so
  fractional capacities such as 0.75 persons per step are kept exactly over time;
* people may wait at nodes; ``hold_cap[v] >= 0`` limits how many may wait at ``v`` at once
  (``-1``: no limit; people at their origin are never limited);
* sinks absorb everyone who arrives (``sink_cap[v]`` persons in total, ``-1`` = not a sink);
  they have no outgoing arcs;
* the clearance time of a plan is ``(last arrival step + 1) * dt``.

Nodes are local indices ``0..n-1``; arcs are local indices ``0..m-1``.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field

import numpy as np
from numba import njit
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import dijkstra

__all__ = [
    "FlowProblem",
    "Piece",
    "CcrpResult",
    "cap_profile",
    "ccrp",
    "static_times_to_sink",
    "queue_sim",
]

#: After a search has found its first path it looks for more paths within the batch window
#: for at most this share of the pops the first path took (in saturated networks the window
#: holds many near-equal states; measured on 100k nodes by car: 0.5 cuts the run time by a
#: fifth with the same clearance).
BATCH_EXTRA_POPS = 0.5
#: The earliest-arrival table is repaired after this many routed searches (in between it is
#: a stale, still consistent lower bound). Measured on 100k nodes by car: 1 is the fastest;
#: 8 repairs hardly fewer cells and costs the searches 2.7 times as many pops.
REPAIR_EVERY = 1
_ZERO1 = np.zeros(1, np.int64)


def cap_profile(rate: np.ndarray, t0: int, t1: int) -> np.ndarray:
    """Integer capacities of steps ``t0 .. t1-1`` (rows: arcs) with mean ``rate`` per step:
    ``floor((t + 1) * rate + 1e-9) - floor(t * rate + 1e-9)``.

    >>> cap_profile(np.array([0.75]), 0, 4).tolist()
    [[0, 1, 1, 1]]
    """
    return _cap_profile_jit(np.ascontiguousarray(rate, np.float64), int(t0), int(t1))


@dataclass
class FlowProblem:
    """A discrete-time evacuation problem on local indices (see module docstring)."""

    n: int
    tail: np.ndarray  # (m,) int64
    head: np.ndarray  # (m,) int64
    tau: np.ndarray  # (m,) int64 steps >= 1
    rate: np.ndarray  # (m,) float persons per step > 0
    supply: np.ndarray  # (n,) int64 persons
    sink_cap: np.ndarray  # (n,) int64, -1 = not a sink
    hold_cap: np.ndarray  # (n,) int64, -1 = unlimited

    @property
    def m(self) -> int:
        return int(self.tail.size)


@dataclass
class Piece:
    """Persons of one origin sent along one path, departing at ``dep + s`` for shifts ``s``."""

    origin: int
    arcs: np.ndarray  # (k,) arc indices along the path
    dep: np.ndarray  # (k,) departure step on each arc at shift 0
    arrive: int  # arrival step at the sink at shift 0
    shifts: np.ndarray  # (j,) shifts used
    persons: np.ndarray  # (j,) persons per shift


@dataclass
class CcrpResult:
    pieces: list[Piece]
    residual: np.ndarray  # (m, H) persons per step still free
    peak_queue: np.ndarray  # (m,) most persons waiting at once to enter each arc
    arrivals: np.ndarray  # (H,) persons arriving per step
    horizon: int
    searches: int
    stranded: np.ndarray  # (n,) persons left at origins (no sink capacity / unreachable)
    stats: dict = field(default_factory=dict)


def static_times_to_sink(p: FlowProblem) -> tuple[np.ndarray, np.ndarray]:
    """Free-flow steps from every node to its nearest sink (inf if none) and the next arc there.

    ``next_arc[v]`` is the first arc of a free-flow shortest path from ``v`` to a sink
    (``-1`` at sinks and where no sink is reachable); of parallel arcs the fastest, then
    widest, is taken.
    """
    sinks = np.flatnonzero(p.sink_cap >= 0)
    if sinks.size == 0 or p.m == 0:
        d = np.full(p.n, np.inf)
        d[sinks] = 0.0
        return d, np.full(p.n, -1, np.int64)
    # reversed graph; keep the best of parallel arcs (csr would sum duplicates)
    key = p.tail * p.n + p.head
    order = np.lexsort((-p.rate, p.tau, key))
    ks = key[order]
    first = np.ones(order.size, bool)
    first[1:] = ks[1:] != ks[:-1]
    sel = order[first]
    g = csr_matrix((p.tau[sel].astype(float), (p.head[sel], p.tail[sel])), shape=(p.n, p.n))
    d, pred = dijkstra(g, directed=True, indices=sinks, min_only=True, return_predecessors=True)[:2]
    nxt = np.full(p.n, -1, np.int64)
    ok = (pred >= 0) & np.isfinite(d)
    v = np.flatnonzero(ok)
    if v.size:
        skey = key[sel]  # sorted
        pos = np.searchsorted(skey, v * p.n + pred[v])
        nxt[v] = sel[pos]
    return d, nxt


def ccrp(
    p: FlowProblem,
    h: np.ndarray,
    *,
    slack: float = 0.03,
    max_paths: int = 8,
    horizon: int | None = None,
) -> CcrpResult:
    """Capacity Constrained Route Planner over a time-expanded reservation profile.

    CCRP routes, again and again, the group whose earliest arrival at a safe destination is
    smallest given the capacity already reserved. Here:

    * origins wait in a priority queue keyed by a lower bound of their earliest arrival;
      arrivals only grow as capacity is reserved, so keys stay valid (lazy re-evaluation);
    * the origin on top is searched by a time-dependent A*. Its heuristic is an
      earliest-arrival table ``EA[t, v]`` (earliest arrival at a sink when at ``v`` at step
      ``t``), computed once by a backward sweep over the time-expanded network and then kept
      exact by an incremental repair after each reservation, so the search goes straight
      along an optimal path; an origin whose ``EA[0, o]`` has moved past the next key is
      re-queued without a search;
    * one search returns up to ``max_paths`` paths to distinct sinks that arrive within the
      slack window, and each path carries successive groups, each departing as early as the
      residual capacity allows, while they arrive within ``ceil(slack * arrival)`` steps of
      the earliest arrival: a whole group per search.

    The search, the reservations and the repair are compiled with numba.
    """
    # arcs sorted by tail node: a node's arcs are neighbours in the time-major tables
    arc_ids = np.argsort(p.tail, kind="stable")  # caller's arc of each arc
    q = FlowProblem(
        n=p.n,
        tail=np.asarray(p.tail)[arc_ids],
        head=np.asarray(p.head)[arc_ids],
        tau=np.asarray(p.tau)[arc_ids],
        rate=np.asarray(p.rate)[arc_ids],
        supply=p.supply,
        sink_cap=p.sink_cap,
        hold_cap=p.hold_cap,
    )
    return _ccrp(
        q, np.asarray(h), slack=slack, max_paths=max_paths, horizon=horizon, arc_ids=arc_ids
    )


def _ccrp(
    p: FlowProblem,
    h: np.ndarray,
    *,
    slack: float,
    max_paths: int,
    horizon: int | None,
    arc_ids: np.ndarray,
) -> CcrpResult:
    """:func:`ccrp` on arcs sorted by tail node; ``arc_ids[a]`` is the caller's index of arc
    ``a`` (the result is in the caller's arc indices)."""
    n, m = p.n, p.m
    supply = p.supply.astype(np.int64).copy()
    sink_left = p.sink_cap.astype(np.int64).copy()
    is_sink = sink_left >= 0
    hold_lim = (p.hold_cap >= 0) & (supply == 0) & ~is_sink
    hold_any = bool(hold_lim.any())

    origins = np.flatnonzero(supply > 0)
    reach = origins[np.isfinite(h[origins])]
    total_cap_in = max(1e-9, float(p.rate[is_sink[p.head]].sum()))
    if horizon is None:
        hmax = int(h[reach].max()) if reach.size else 1
        horizon = int(hmax * 1.3 + 1.5 * supply[reach].sum() / total_cap_in + 16)
    H = int(min(max(int(horizon), 4), 1 << 22))
    H_MAX = 1 << 22

    # Time-major tables (row = step, column = arc; arcs are numbered by tail node, so the
    # arcs of one node at one step share a cache line): residual capacity ``res_t`` (``res``
    # is its (arc, step) view) and a union-find "next free step" table ``nf`` (nf[t, a] == t
    # where arc a has capacity left in step t, else a later step; H: none), in which a full
    # slot is skipped in amortised O(1).
    res_t = np.ascontiguousarray(cap_profile(p.rate, 0, H).T)
    res = res_t.T
    hold = None
    if hold_any:
        hold = np.repeat(np.maximum(p.hold_cap, 0).astype(np.int32)[:, None], H, axis=1)

    def step_dtype() -> type:
        """Steps in the tables: 16 bits while they fit (half the memory traffic), else 32."""
        return np.int16 if H + maxtau + 2 < np.iinfo(np.int16).max else np.int32

    def next_free_table() -> np.ndarray:
        steps = np.arange(H + 1, dtype=step_dtype())
        nf = np.empty((H + 1, m), step_dtype())
        nf[:H] = np.where(res_t > 0, steps[:H, None], steps[1:, None])
        nf[H] = H
        return nf

    tail64 = p.tail.astype(np.int64)
    head64 = p.head.astype(np.int64)
    tau64 = p.tau.astype(np.int64)
    maxtau = int(tau64.max()) if m else 1
    BIG = int(np.iinfo(step_dtype()).max)  # EA of cells that reach no sink in time
    adj_off = np.r_[0, np.cumsum(np.bincount(tail64, minlength=n))].astype(np.int64)
    in_arc = np.argsort(head64, kind="stable").astype(np.int64)
    in_off = np.r_[0, np.cumsum(np.bincount(head64, minlength=n))].astype(np.int64)

    def ea_table() -> np.ndarray:
        """Earliest arrival EA[t, v] at a sink with room, by a backward sweep (flat, rows
        beyond the horizon BIG)."""
        ea = np.full((H + 1 + maxtau) * n, BIG, step_dtype())
        _ea_sweep_jit(ea, n, H, nf.reshape(-1), adj_off, head64, tau64, is_sink, sink_left)
        return ea

    # the earliest-arrival table is kept exact: after each reservation the cells that may
    # have changed are recomputed, row by row in decreasing step order (_ea_update_jit)
    nf = next_free_table()
    ea = ea_table()
    queued = np.zeros(H * n, np.uint8)

    hold_arr = hold if hold is not None else np.zeros((1, 1), np.int32)
    # search workspace (a label is valid where stamp == the search's number)
    g_ws = np.zeros(n, np.int64)
    stamp = np.zeros(n, np.int64)
    pred_u = np.zeros(n, np.int64)
    pred_a = np.zeros(n, np.int64)
    pred_d = np.zeros(n, np.int64)
    out_a = np.zeros(max_paths, np.int64)
    out_len = np.zeros(max_paths, np.int64)
    out_arcs = np.zeros((max_paths, n + 1), np.int64)
    out_deps = np.zeros((max_paths, n + 1), np.int64)
    # groups routed by the compiled core: rows (origin, path offset, path length, departures
    # offset, arrival step, persons) over flat path and departure buffers, and the intervals
    # (arc, from, to, persons) in which they wait to enter an arc
    # counts: groups, departures, path arcs, queue intervals, EA cells changed, seeds
    cnt = np.zeros(6, np.int64)
    seeds = np.zeros(1 << 14, np.int64)  # EA cells to recompute (t * n + v)
    grp = np.zeros((1 << 12, 6), np.int64)
    deps_buf = np.zeros(1 << 16, np.int64)
    pbuf = np.zeros(1 << 16, np.int64)
    qbuf = np.zeros((1 << 14, 4), np.int64)

    py_pieces: list[tuple[int, Piece]] = []  # pieces reserved here: (groups before it, piece)
    q_arcs: list[np.ndarray] = []
    q_start: list[np.ndarray] = []
    q_end: list[np.ndarray] = []
    q_amt: list[np.ndarray] = []
    searches = 0
    routed = 0
    pops_total = 0
    skipped = 0
    rebuilds = 1

    def grow() -> None:
        nonlocal res, res_t, hold, hold_arr, nf, ea, H, queued, BIG
        newH = H * 2
        res_t = np.concatenate([res_t, cap_profile(p.rate, H, newH).T], axis=0)
        res = res_t.T
        if hold is not None:
            h2 = np.repeat(np.maximum(p.hold_cap, 0).astype(np.int32)[:, None], newH, axis=1)
            h2[:, :H] = hold
            hold = hold_arr = h2
        H = newH
        BIG = int(np.iinfo(step_dtype()).max)
        nf = next_free_table()
        ea = ea_table()
        queued = np.zeros(H * n, np.uint8)
        cnt[5] = 0  # the new table is exact

    def window(a: int) -> int:
        return max(1, int(np.ceil(slack * (a + 1))))

    def route(o: int, key: float, nxt: float) -> tuple[int, int, int, int]:
        """Search from o and, unless it must be re-queued, reserve the paths found (compiled)."""
        nonlocal grp, deps_buf, pbuf, qbuf, seeds
        st, A, pops, nfound, grp, deps_buf, pbuf, qbuf, seeds = _route_jit(
            o, key, nxt, not hold_any, n, H, BIG, slack, max_paths, BATCH_EXTRA_POPS,
            adj_off, head64, tau64, nf.reshape(-1), ea, is_sink, sink_left,
            hold_any, hold_lim, hold_arr, g_ws, stamp, searches + 1, pred_u, pred_a, pred_d,
            out_a, out_len, out_arcs, out_deps, supply, res_t.reshape(-1), tail64, in_off,
            in_arc, cnt, grp, deps_buf, pbuf, qbuf, seeds,
        )  # fmt: skip
        return int(st), int(A), int(pops), int(nfound)

    def update_ea(keys: np.ndarray) -> None:
        """Recompute the EA cells ``t * n + v`` in ``keys`` (and the pending seeds) and
        whatever depends on them."""
        nonlocal seeds
        k = int(cnt[5])
        seeds = _grow1(seeds, k + keys.size)
        seeds[k : k + keys.size] = keys
        cnt[4] += _ea_update_jit(
            ea, n, H, nf.reshape(-1), adj_off, head64, tau64, tail64, in_off, in_arc,
            is_sink, sink_left, seeds, k + keys.size, queued,
        )  # fmt: skip
        cnt[5] = 0

    def reserve(o: int, A: int, arcs_l: list[int], deps_l: list[int], W: int) -> int:
        """Reserve a path at shifts 0 .. W-1 of its departures (with node capacities)."""
        arcs = np.asarray(arcs_l, dtype=np.int64)
        dep = np.asarray(deps_l, dtype=np.int64)
        if arcs.size == 0:  # origin is a sink
            took = int(supply[o]) if sink_left[o] < 0 else min(int(supply[o]), int(sink_left[o]))
            py_pieces.append(
                (int(cnt[0]), Piece(o, arcs, dep, -1, np.zeros(1, np.int64), np.array([took])))
            )
            if sink_left[o] >= 0:
                sink_left[o] -= took
                if sink_left[o] == 0:
                    update_ea(np.arange(H, dtype=np.int64) * n + o)
            return took
        W = min(W, H - A)  # arrival of shift s is A + s < H
        s = np.arange(W)
        times = dep[:, None] + s[None, :]
        amt = res[arcs[:, None], times].min(axis=0).astype(np.int64)
        arr_prev = np.concatenate(([0], dep[:-1] + p.tau[arcs[:-1]]))
        waits = []
        if hold_any:  # waiting at hold-limited intermediate nodes
            for i in range(1, arcs.size):
                u = int(p.tail[arcs[i]])
                if hold_lim[u] and dep[i] > arr_prev[i]:
                    w = np.array([hold[u, arr_prev[i] + k : dep[i] + k].min() for k in range(W)])
                    amt = np.minimum(amt, w)
                    waits.append((u, i))
        amt = np.maximum(amt, 0)
        limit = int(supply[o])
        last = int(p.head[arcs[-1]])
        if sink_left[last] >= 0:
            limit = min(limit, int(sink_left[last]))
        c = np.cumsum(amt)
        take = np.where(c <= limit, amt, np.maximum(0, limit - (c - amt)))
        used = take > 0
        if not used.any():
            return 0
        su, tk = s[used], take[used]
        ta = dep[:, None] + su[None, :]
        res[arcs[:, None], ta] -= tk[None, :].astype(np.int32)
        full = res[arcs[:, None], ta] == 0
        keys = np.zeros(0, np.int64)
        if full.any():
            fa = np.broadcast_to(arcs[:, None], ta.shape)[full]
            nf[ta[full], fa] = ta[full] + 1
            keys = ta[full] * n + tail64[fa]
        for u, i in waits:
            for k, amount in zip(su.tolist(), tk.tolist(), strict=True):
                hold[u, arr_prev[i] + k : dep[i] + k] -= amount
        # queue bookkeeping: persons waiting to enter arc i during [arr_prev_i + s, dep_i + s)
        wmask = dep > arr_prev
        wmask[0] = True
        k = su.size
        wa = arcs[wmask]
        st = arr_prev[:, None] + su[None, :]
        st[0] = 0  # people wait at their origin from time 0
        q_arcs.append(np.repeat(wa, k))
        q_start.append(st[wmask].ravel())
        q_end.append((dep[wmask][:, None] + su[None, :]).ravel())
        q_amt.append(np.tile(tk, wa.size))
        py_pieces.append((int(cnt[0]), Piece(o, arcs, dep, A, su, tk)))
        took = int(tk.sum())
        if sink_left[last] >= 0:
            sink_left[last] -= took
            if sink_left[last] == 0:
                keys = np.concatenate([keys, np.arange(H, dtype=np.int64) * n + last])
        if keys.size:
            update_ea(keys)
        return took

    def can_still_reach(o: int) -> bool:
        """Is a sink with capacity left reachable from o in the static network?"""
        snk = np.flatnonzero(is_sink & (sink_left != 0))
        if snk.size == 0:
            return False
        g = csr_matrix((np.ones(m), (p.head, p.tail)), shape=(n, n))
        d = dijkstra(g, directed=True, indices=snk, min_only=True, unweighted=True)
        return bool(np.isfinite(d[o]))

    heap = [(float(ea[o]), int(o)) for o in reach.tolist()]
    heapq.heapify(heap)
    while heap:
        key, o = heapq.heappop(heap)
        nxt = heap[0][0] if heap else float("inf")
        # EA[0, o] is the earliest arrival of o (a lower bound with node capacities): an
        # origin that is no longer the earliest goes back without a search
        a = int(ea[o])
        if a < BIG and a > key and a > nxt + max(1.0, slack * (a + 1)):
            heapq.heappush(heap, (float(a), o))
            skipped += 1
            continue
        st, A, pops, nfound = route(o, key, nxt)
        pops_total += pops
        searches += 1
        while st == 0 and H < H_MAX and can_still_reach(o):
            grow()
            rebuilds += 1
            st, A, pops, nfound = route(o, key, nxt)
            searches += 1
        if st == 2:
            routed += 1
            if routed % REPAIR_EVERY == 0 and cnt[5]:
                update_ea(np.zeros(0, np.int64))
        if st == 0:  # no sink with capacity left is reachable
            continue
        if st == 1:  # no longer the earliest: back into the queue with its new arrival
            heapq.heappush(heap, (float(A), o))
            continue
        if st == 3:  # node capacities, or the origin is a sink: reserved here
            end = A + window(A)
            for i in range(nfound):
                if supply[o] <= 0:
                    break
                k = int(out_len[i])
                supply[o] -= reserve(
                    o,
                    int(out_a[i]),
                    out_arcs[i, :k].tolist(),
                    out_deps[i, :k].tolist(),
                    max(1, end - int(out_a[i])),
                )
        if supply[o] > 0:
            heapq.heappush(heap, (float(A), o))

    # pieces in the order they were reserved, on the caller's arc indices
    ng = int(cnt[0])
    gr = grp[:ng]
    pbuf = arc_ids[pbuf[: int(cnt[2])]]
    for _, pc in py_pieces:
        pc.arcs = arc_ids[pc.arcs]
    pieces: list[Piece] = []
    pi = 0
    for i, (o_, po, pl, do, arr, amt) in enumerate(gr.tolist()):
        while pi < len(py_pieces) and py_pieces[pi][0] <= i:
            pieces.append(py_pieces[pi][1])
            pi += 1
        pieces.append(
            Piece(o_, pbuf[po : po + pl], deps_buf[do : do + pl], arr, _ZERO1, np.array([amt]))
        )
    pieces.extend(pc for _, pc in py_pieces[pi:])
    # arrivals per step (+1: index -1 -> 0)
    arrivals = np.zeros(H + 1, np.int64)
    np.add.at(arrivals, gr[:, 4] + 1, gr[:, 5])
    for _, pc in py_pieces:
        np.add.at(arrivals, pc.arrive + pc.shifts + 1, pc.persons)
    peak_queue = np.zeros(m, np.int64)
    qb = qbuf[: int(cnt[3])]
    q_arcs.append(qb[:, 0])
    q_start.append(qb[:, 1])
    q_end.append(qb[:, 2])
    q_amt.append(qb[:, 3])
    qa = np.concatenate(q_arcs)
    if qa.size:
        ua, qi = np.unique(qa, return_inverse=True)
        diff = np.zeros((ua.size, H + 2), np.int64)
        amt = np.concatenate(q_amt)
        np.add.at(diff, (qi, np.concatenate(q_start)), amt)
        np.add.at(diff, (qi, np.concatenate(q_end)), -amt)
        peak_queue[ua] = np.cumsum(diff, axis=1).max(axis=1)
    residual = np.empty((m, H), np.int32)
    residual[arc_ids] = res
    peak_out = np.empty(m, np.int64)
    peak_out[arc_ids] = peak_queue
    return CcrpResult(
        pieces=pieces,
        residual=residual,
        peak_queue=peak_out,
        arrivals=arrivals,
        horizon=H,
        searches=searches,
        stranded=supply,
        stats={
            "pops": pops_total,
            "requeued_without_search": skipped,
            "ea_cells_updated": int(cnt[4]),
            "ea_rebuilds": rebuilds,
        },
    )


def queue_sim(
    p: FlowProblem, next_arc: np.ndarray, *, max_steps: int = 10_000_000
) -> tuple[np.ndarray, np.ndarray]:
    """Everyone follows a fixed next arc per node (a shortest-path in-tree); FIFO point queues.

    Returns ``(arrivals_per_step, peak_queue_per_node)`` where arrivals are indexed by arrival
    step + 1 (index 0: persons who start at a sink). Sink capacities are ignored (everyone
    goes to the nearest sink).
    """
    n = p.n
    q = p.supply.astype(np.int64).copy()
    is_sink = p.sink_cap >= 0
    has = next_arc >= 0
    nxt = np.where(has, p.head[np.maximum(next_arc, 0)], -1)
    raten = np.where(has, p.rate[np.maximum(next_arc, 0)], 0.0)
    taun = np.where(has, p.tau[np.maximum(next_arc, 0)], 1).astype(np.int64)
    R = int(taun.max()) + 1 if n else 1
    ring = np.zeros((R, n), np.int64)
    arrivals = [int(q[is_sink].sum())]
    q[is_sink] = 0
    remaining = int(q[has].sum())
    q[~has] = 0  # stranded persons are not simulated
    peak = q.copy()
    in_flight = 0
    t = 0
    while (remaining > 0 or in_flight > 0) and t < max_steps:
        slot = t % R
        inc = ring[slot]
        if in_flight:
            q += inc
            in_flight -= int(inc.sum())
            ring[slot] = 0
        arr = int(q[is_sink].sum())
        q[is_sink] = 0
        arrivals.append(arr)
        remaining -= arr
        np.maximum(peak, q, out=peak)
        capn = np.floor(raten * (t + 1) + 1e-9) - np.floor(raten * t + 1e-9)
        out = np.minimum(q, capn.astype(np.int64))
        idx = np.flatnonzero(out)
        if idx.size:
            q[idx] -= out[idx]
            np.add.at(ring, ((t + taun[idx]) % R, nxt[idx]), out[idx])
            in_flight += int(out[idx].sum())
        t += 1
    return np.asarray(arrivals, np.int64), peak


# ----------------------------------------------------------------------------- compiled core
# The per-search work (the time-dependent A*, the reservation of the paths it finds and the
# repair of the earliest-arrival table) is a few hundred operations on small integers,
# repeated tens of thousands of times: it is compiled with numba. The search keeps the order
# of a heapq of (f, -arrival, node) tuples.


@njit(cache=True)
def _cap_profile_jit(rate, t0, t1):
    out = np.empty((rate.size, t1 - t0), np.int32)
    for a in range(rate.size):
        r = rate[a]
        prev = np.floor(r * float(t0) + 1e-9)
        for t in range(t0 + 1, t1 + 1):
            c = np.floor(r * float(t) + 1e-9)
            out[a, t - 1 - t0] = int(c - prev)
            prev = c
    return out


@njit(cache=True)
def _heap_less(hf, hg, hv, i, j):
    if hf[i] != hf[j]:
        return hf[i] < hf[j]
    if hg[i] != hg[j]:
        return hg[i] < hg[j]
    return hv[i] < hv[j]


@njit(cache=True)
def _heap_push(hf, hg, hv, size, f, g, v):
    if size == hf.size:
        hf, hg, hv = _grow1(hf, size + 1), _grow1(hg, size + 1), _grow1(hv, size + 1)
    i = size
    hf[i], hg[i], hv[i] = f, g, v
    while i > 0:
        pa = (i - 1) >> 1
        if _heap_less(hf, hg, hv, i, pa):
            hf[i], hf[pa] = hf[pa], hf[i]
            hg[i], hg[pa] = hg[pa], hg[i]
            hv[i], hv[pa] = hv[pa], hv[i]
            i = pa
        else:
            break
    return hf, hg, hv, size + 1


@njit(cache=True)
def _heap_pop(hf, hg, hv, size):
    """Remove the top entry (read it at index 0 first); returns the new size."""
    size -= 1
    hf[0], hg[0], hv[0] = hf[size], hg[size], hv[size]
    i = 0
    while True:
        c = 2 * i + 1
        if c >= size:
            break
        if c + 1 < size and _heap_less(hf, hg, hv, c + 1, c):
            c += 1
        if _heap_less(hf, hg, hv, c, i):
            hf[i], hf[c] = hf[c], hf[i]
            hg[i], hg[c] = hg[c], hg[i]
            hv[i], hv[c] = hv[c], hv[i]
            i = c
        else:
            break
    return size


@njit(cache=True)
def _grow1(buf, need):
    if need <= buf.shape[0]:
        return buf
    nb = np.empty(max(need, 2 * buf.shape[0]), buf.dtype)
    nb[: buf.shape[0]] = buf
    return nb


@njit(cache=True)
def _grow2(buf, need):
    if need <= buf.shape[0]:
        return buf
    nb = np.empty((max(need, 2 * buf.shape[0]), buf.shape[1]), buf.dtype)
    nb[: buf.shape[0]] = buf
    return nb


@njit(cache=True)
def _find(nf, m, a, t):
    """First step >= t with free capacity on arc a (flat time-major next-free table of m
    arcs), compressing the path."""
    r = nf[t * m + a]
    if r == t:
        return t
    root = r
    while True:
        r2 = nf[root * m + a]
        if r2 == root:
            break
        root = r2
    while t != root:
        nxt = nf[t * m + a]
        nf[t * m + a] = root
        t = nxt
    return root


@njit(cache=True)
def _window(slack, a):
    w = int(np.ceil(slack * (a + 1)))
    return w if w > 1 else 1


@njit(cache=True)
def _ea_cell(ea, n, nf, adj_off, head, tau, is_sink, sink_left, t, u):
    """EA[t, u]: t at a sink with room, else the best of waiting and every arc free at t."""
    if is_sink[u] and sink_left[u] != 0:
        return t
    m = head.size
    best = ea[(t + 1) * n + u]
    for a in range(adj_off[u], adj_off[u + 1]):
        if nf[t * m + a] == t:
            c = ea[(t + tau[a]) * n + head[a]]
            if c < best:
                best = c
    return best


@njit(cache=True)
def _ea_sweep_jit(ea, n, H, nf, adj_off, head, tau, is_sink, sink_left):
    """Fill rows H-1 .. 0 of the flat earliest-arrival table (later rows: BIG)."""
    for t in range(H - 1, -1, -1):
        for u in range(n):
            ea[t * n + u] = _ea_cell(ea, n, nf, adj_off, head, tau, is_sink, sink_left, t, u)


@njit(cache=True)
def _ea_update_jit(
    ea, n, H, nf, adj_off, head, tau, tail, in_off, in_arc, is_sink, sink_left, keys, nkeys,
    queued,
):  # fmt: skip
    """Recompute the EA cells ``t * n + v`` in ``keys[:nkeys]`` (a slot filled, a sink full)
    and, where a cell grew, the cells that relied on its old value: waiting at v one step
    earlier, and arcs into v entered ``tau`` steps earlier. A cell depends only on later
    rows, so the cells are queued per row and the rows taken in decreasing order
    (``queued``: a zero flag per cell, left zero). Returns the number of cells changed."""
    m = head.size
    row_first = np.full(H, -1, np.int64)
    pool_key = np.empty(max(64, 2 * nkeys), np.int64)
    pool_next = np.empty(max(64, 2 * nkeys), np.int64)
    used = 0
    top = -1
    for i in range(nkeys):
        k = keys[i]
        if queued[k]:
            continue
        queued[k] = 1
        t = k // n
        pool_key[used] = k
        pool_next[used] = row_first[t]
        row_first[t] = used
        used += 1
        if t > top:
            top = t
    changed = 0
    for t in range(top, -1, -1):
        e = row_first[t]
        while e >= 0:
            key = pool_key[e]
            e = pool_next[e]
            queued[key] = 0
            u = key - t * n
            old = ea[key]
            new = _ea_cell(ea, n, nf, adj_off, head, tau, is_sink, sink_left, t, u)
            if new == old:
                continue
            ea[key] = new
            changed += 1
            if t == 0:
                continue
            if ea[key - n] == old and not queued[key - n]:
                queued[key - n] = 1
                pool_key = _grow1(pool_key, used + 1)
                pool_next = _grow1(pool_next, used + 1)
                pool_key[used] = key - n
                pool_next[used] = row_first[t - 1]
                row_first[t - 1] = used
                used += 1
            for j in range(in_off[u], in_off[u + 1]):
                a = in_arc[j]
                t2 = t - tau[a]
                if t2 >= 0 and nf[t2 * m + a] == t2:
                    k2 = t2 * n + tail[a]
                    if ea[k2] == old and not queued[k2]:
                        queued[k2] = 1
                        pool_key = _grow1(pool_key, used + 1)
                        pool_next = _grow1(pool_next, used + 1)
                        pool_key[used] = k2
                        pool_next[used] = row_first[t2]
                        row_first[t2] = used
                        used += 1
    return changed


@njit(cache=True)
def _search_jit(
    o, n, H, big, slack, max_paths, extra_pops, adj_off, head, tau, nf, ea, is_sink,
    sink_left, hold_any, hold_lim, hold, g, stamp, stamp_id, pred_u, pred_a, pred_d,
    out_a, out_len, out_arcs, out_deps,
):  # fmt: skip
    """Time-dependent A* from ``o`` departing at step 0 with EA as heuristic; fills
    ``out_*`` with up to ``max_paths`` paths to distinct sinks with room that arrive within
    the slack window of the earliest one. Returns ``(paths found, pops)``."""
    m = head.size
    f0 = ea[o]
    if f0 >= big:
        return 0, 1
    hf = np.empty(256, np.int64)
    hg = np.empty(256, np.int64)
    hv = np.empty(256, np.int64)
    size = 0
    stamp[o] = stamp_id
    g[o] = 0
    hf, hg, hv, size = _heap_push(hf, hg, hv, size, f0, 0, o)
    nfound = 0
    stop = big
    pop_limit = 1 << 62
    pops = 0
    while size > 0:
        f, ng, u = hf[0], hg[0], hv[0]
        size = _heap_pop(hf, hg, hv, size)
        if f > stop:
            break
        if -ng != g[u]:  # stale entry; labels are final once popped (consistent heuristic)
            continue
        pops += 1
        if pops > pop_limit:
            break
        a0 = -ng
        if is_sink[u]:
            if sink_left[u] != 0:
                k = 0
                v = u
                while v != o:
                    out_arcs[nfound, k] = pred_a[v]
                    out_deps[nfound, k] = pred_d[v]
                    k += 1
                    v = pred_u[v]
                out_arcs[nfound, :k] = out_arcs[nfound, :k][::-1].copy()
                out_deps[nfound, :k] = out_deps[nfound, :k][::-1].copy()
                if nfound == 0:
                    stop = a0 + _window(slack, a0)
                    pop_limit = int(pops * (1 + extra_pops)) + 1
                out_a[nfound] = a0
                out_len[nfound] = k
                nfound += 1
                if nfound >= max_paths:
                    break
            continue
        for arc in range(adj_off[u], adj_off[u + 1]):
            d = _find(nf, m, arc, a0)
            at = d + tau[arc]
            if at >= H:
                continue
            v = head[arc]
            fv = ea[at * n + v]
            if fv >= big:
                continue
            if d > a0 and hold_any and hold_lim[u]:
                if hold[u, a0:d].min() <= 0:  # nowhere to wait
                    continue
            if stamp[v] != stamp_id or at < g[v]:
                stamp[v] = stamp_id
                g[v] = at
                pred_u[v] = u
                pred_a[v] = arc
                pred_d[v] = d
                hf, hg, hv, size = _heap_push(hf, hg, hv, size, fv, -at, v)
    return nfound, pops


@njit(cache=True)
def _follow_jit(
    o, arcs, end, H, n, left_persons, sink_room, res, nf, tau, tail, head, ea,
    grp, grp_n, deps_buf, deps_n, path_off, qbuf, q_n, seeds, s_n,
):  # fmt: skip
    """Send persons of ``o`` along the fixed path ``arcs`` in successive groups, each departing
    as early as the residual capacity allows (waiting where needed), while they arrive by
    ``end``. Records groups ``(origin, path offset, path length, departures offset, arrival,
    persons)`` in ``grp``, queue intervals ``(arc, from, to, persons)`` in ``qbuf`` and the EA
    cells of slots it fills in ``seeds``."""
    m = tau.size
    k = arcs.size
    took = 0
    t_start = 0
    deps = np.empty(k, np.int64)
    while True:
        left = left_persons - took
        if sink_room >= 0 and sink_room - took < left:
            left = sink_room - took
        if left <= 0:
            break
        t = t_start
        amt = left
        ok = True
        for i in range(k):
            a = arcs[i]
            d = _find(nf, m, a, t)
            if d >= H:
                ok = False
                break
            deps[i] = d
            r = res[d * m + a]
            if r < amt:
                amt = r
            t = d + tau[a]
            if t > end:
                ok = False
                break
        if not ok or t >= H:
            break
        grp = _grow2(grp, grp_n + 1)
        deps_buf = _grow1(deps_buf, deps_n + k)
        qbuf = _grow2(qbuf, q_n + k)
        seeds = _grow1(seeds, s_n + k)
        prev = 0
        for i in range(k):
            a = arcs[i]
            d = deps[i]
            j = d * m + a
            res[j] -= amt
            if res[j] == 0:
                nf[j] = d + 1
                c = d * n + tail[a]
                if ea[c] == ea[(d + tau[a]) * n + head[a]]:  # the arc was a best move
                    seeds[s_n] = c
                    s_n += 1
            if d > prev or prev == 0:
                qbuf[q_n, 0] = a
                qbuf[q_n, 1] = prev
                qbuf[q_n, 2] = d
                qbuf[q_n, 3] = amt
                q_n += 1
            prev = d + tau[a]
            deps_buf[deps_n + i] = d
        grp[grp_n, 0] = o
        grp[grp_n, 1] = path_off
        grp[grp_n, 2] = k
        grp[grp_n, 3] = deps_n
        grp[grp_n, 4] = t
        grp[grp_n, 5] = amt
        grp_n += 1
        deps_n += k
        took += amt
        t_start = deps[0]
    return took, grp, grp_n, deps_buf, deps_n, qbuf, q_n, seeds, s_n


@njit(cache=True)
def _route_jit(
    o, key, nxt, do_follow, n, H, big, slack, max_paths, extra_pops, adj_off, head, tau,
    nf, ea, is_sink, sink_left, hold_any, hold_lim, hold, g, stamp, stamp_id, pred_u,
    pred_a, pred_d, out_a, out_len, out_arcs, out_deps, supply, res, tail, in_off, in_arc,
    cnt, grp, deps_buf, pbuf, qbuf, seeds,
):  # fmt: skip
    """One CCRP step for origin ``o`` popped with ``key`` (``nxt``: the next key): search and
    reserve the paths found; the EA cells that may have changed go to ``seeds``.

    Returns ``(status, A, pops, paths found, grp, deps_buf, pbuf, qbuf, seeds)``; status 0: no sink
    reachable within the horizon, 1: re-queue with key A, 2: routed here, 3: to be routed by
    the caller along the ``out_*`` paths (node capacities, or an origin that is a sink)."""
    nfound, pops = _search_jit(
        o, n, H, big, slack, max_paths, extra_pops, adj_off, head, tau, nf, ea, is_sink,
        sink_left, hold_any, hold_lim, hold, g, stamp, stamp_id, pred_u, pred_a, pred_d,
        out_a, out_len, out_arcs, out_deps,
    )  # fmt: skip
    if nfound == 0:
        return 0, -1, pops, 0, grp, deps_buf, pbuf, qbuf, seeds
    A = out_a[0]
    if A > nxt + max(1.0, slack * (A + 1)) and A > key:
        return 1, A, pops, nfound, grp, deps_buf, pbuf, qbuf, seeds
    if not do_follow or out_len[0] == 0:
        return 3, A, pops, nfound, grp, deps_buf, pbuf, qbuf, seeds
    end = A + _window(slack, A)
    s_n = cnt[5]
    for i in range(nfound):
        if supply[o] <= 0:
            break
        k = out_len[i]
        arcs = out_arcs[i, :k].copy()
        last = head[arcs[k - 1]]
        p_n = cnt[2]
        pbuf = _grow1(pbuf, p_n + k)
        pbuf[p_n : p_n + k] = arcs
        took, grp, cnt[0], deps_buf, cnt[1], qbuf, cnt[3], seeds, s_n = _follow_jit(
            o, arcs, end, H, n, supply[o], sink_left[last], res, nf, tau, tail, head, ea,
            grp, cnt[0], deps_buf, cnt[1], p_n, qbuf, cnt[3], seeds, s_n,
        )  # fmt: skip
        if took > 0:
            cnt[2] = p_n + k
        supply[o] -= took
        if sink_left[last] >= 0:
            sink_left[last] -= took
            if took > 0 and sink_left[last] == 0:  # a full sink: all its cells change
                seeds = _grow1(seeds, s_n + H)
                for t in range(H):
                    seeds[s_n] = t * n + last
                    s_n += 1
    cnt[5] = s_n
    return 2, A, pops, nfound, grp, deps_buf, pbuf, qbuf, seeds
