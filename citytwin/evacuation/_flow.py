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

_INF = np.iinfo(np.int64).max // 4
#: Refresh the earliest-arrival table once the searches since the last sweep took this many
#: times as long as the sweep would (a stale table is still a valid heuristic, only a looser
#: one; measured: staleness adds little to a search here, sweeps are the larger cost).
REFRESH_RATIO = 2.0
#: After a search has found its first path it looks for more paths within the batch window
#: for at most this share of the pops the first path took (in saturated networks the window
#: holds many near-equal states; measured on 100k nodes by car: 0.5 cuts the run time by a
#: fifth with the same clearance).
BATCH_EXTRA_POPS = 0.5
_ZERO1 = np.zeros(1, np.int64)


def cap_profile(rate: np.ndarray, t0: int, t1: int) -> np.ndarray:
    """Integer capacities of steps ``t0 .. t1-1`` (rows: arcs) with mean ``rate`` per step."""
    t = np.arange(t0, t1 + 1, dtype=np.float64)
    c = np.floor(np.asarray(rate, np.float64)[:, None] * t[None, :] + 1e-9)
    return np.diff(c, axis=1).astype(np.int32)


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
      ``t``) computed by one vectorised backward sweep over the time-expanded network and
      refreshed now and then; a stale table is still a consistent lower bound, and a fresh one
      leads the search straight along the optimal path;
    * one search returns up to ``max_paths`` paths to distinct sinks that arrive within the
      slack window, and each path is reserved at shifts ``s = 0, 1, ...`` of its departure
      times while the arrival stays within ``ceil(slack * arrival)`` steps of the earliest
      one, as much as the residual capacity allows: a whole group per search.
    """
    # relabel the nodes so that those with outgoing arcs come first: the sweep then writes
    # its per-node minima into a contiguous slice of each row
    deg = np.bincount(p.tail, minlength=p.n) if p.m else np.zeros(p.n, np.int64)
    old_of_new = np.argsort(deg == 0, kind="stable")
    new_of_old = np.empty(p.n, np.int64)
    new_of_old[old_of_new] = np.arange(p.n)
    q = FlowProblem(
        n=p.n,
        tail=new_of_old[p.tail],
        head=new_of_old[p.head],
        tau=p.tau,
        rate=p.rate,
        supply=p.supply[old_of_new],
        sink_cap=p.sink_cap[old_of_new],
        hold_cap=p.hold_cap[old_of_new],
    )
    r = _ccrp(q, np.asarray(h)[old_of_new], slack=slack, max_paths=max_paths, horizon=horizon)
    for pc in r.pieces:
        pc.origin = int(old_of_new[pc.origin])
    r.stranded = r.stranded[new_of_old]
    return r


def _ccrp(
    p: FlowProblem,
    h: np.ndarray,
    *,
    slack: float,
    max_paths: int,
    horizon: int | None,
) -> CcrpResult:
    """:func:`ccrp` on nodes numbered so that every node with an outgoing arc precedes
    those without (``0 .. nu-1``)."""
    n, m = p.n, p.m
    supply = p.supply.astype(np.int64).copy()
    sink_left = p.sink_cap.astype(np.int64).copy()
    is_sink = sink_left >= 0
    hold_lim = (p.hold_cap >= 0) & (supply == 0) & ~is_sink
    hold_any = bool(hold_lim.any())
    BIG = 1 << 30

    origins = np.flatnonzero(supply > 0)
    reach = origins[np.isfinite(h[origins])]
    total_cap_in = max(1e-9, float(p.rate[is_sink[p.head]].sum()))
    if horizon is None:
        hmax = int(h[reach].max()) if reach.size else 1
        horizon = int(hmax * 1.3 + 1.5 * supply[reach].sum() / total_cap_in + 16)
    H = int(min(max(int(horizon), 4), 1 << 22))
    H_MAX = 1 << 22

    res = cap_profile(p.rate, 0, H)
    hold = None
    if hold_any:
        hold = np.repeat(np.maximum(p.hold_cap, 0).astype(np.int32)[:, None], H, axis=1)

    # arcs sorted by tail for the backward sweep
    by_tail = np.argsort(p.tail, kind="stable")
    st_tail = p.tail[by_tail]
    st_head = p.head[by_tail]
    st_tau = p.tau[by_tail]

    def next_free_table() -> np.ndarray:
        """nf[a, t] == t if arc a has capacity left in step t, else a later step (H: none)."""
        steps = np.arange(H + 1, dtype=np.int32)
        nf = np.empty((m, H + 1), np.int32)
        nf[:, :H] = np.where(res > 0, steps[None, :H], steps[None, 1:])
        nf[:, H] = H
        return nf

    # The earliest-arrival table EA[t, v] is computed by a backward sweep over the
    # time-expanded network, in blocks of B = min(tau) steps (a block's rows depend only on
    # later rows, except for waiting, which is a running minimum). Layout for speed: the
    # arcs of each tail node sit in D = 4 "columns" of a padded (D, R) slot array (row = tail
    # node, nodes with more than D arcs get extra rows), so the per-node minimum is D - 1
    # element-wise minima of contiguous slices; a flat gather index ``tau * n + head`` (plus
    # ``t * n``) into EA, padded with BIG rows beyond the horizon; and a time-major table
    # ``blk`` (0, or BIG where the slot is full or empty) kept up to date by the
    # reservations. Rows after the latest step reserved since the previous sweep cannot have
    # changed, so a refresh sweeps only rows ``t_dirty .. 0`` (a sink filling up: all rows).
    D = 4
    nu = int(np.count_nonzero(np.bincount(p.tail, minlength=n))) if m else 0
    if m:
        first = np.r_[0, np.cumsum(np.bincount(st_tail, minlength=n))][st_tail]
        rank = np.arange(m) - first
        kk, cc = rank // D, rank % D
        ex = kk > 0
        ex_key = st_tail[ex] * (m + 1) + kk[ex]
        ex_u, ex_inv = np.unique(ex_key, return_inverse=True)
        ovf_tail = (ex_u // (m + 1)).astype(np.int64)
        R = nu + ex_u.size
        row_of = st_tail.astype(np.int64).copy()
        row_of[ex] = nu + ex_inv.reshape(-1)
        slot_bt = cc * R + row_of  # slot of the arcs in tail order
    else:
        ovf_tail = np.zeros(0, np.int64)
        R = 0
        slot_bt = np.zeros(0, np.int64)
    slot = np.empty(m, np.int64)
    slot[by_tail] = slot_bt
    slot_l = slot.tolist()
    empty_slot = np.ones(D * R, bool)
    empty_slot[slot_bt] = False
    gidx = np.zeros(D * R, np.int64)
    gidx[slot_bt] = st_tau * n + st_head
    maxtau = int(p.tau.max()) if m else 1
    B = max(1, min(int(p.tau.min()) if m else 1, 8))
    gidx_b = gidx[None, :] + (np.arange(B, dtype=np.int64) * n)[:, None]

    def blocked_table() -> np.ndarray:
        b = np.zeros((H + 1, D * R), np.int32)
        b[:, empty_slot] = BIG
        if m:
            b[:H, slot] = np.where(res <= 0, BIG, 0).T
        return b

    def ea_sweep(ea: np.ndarray | None, t_hi: int) -> np.ndarray:
        """Recompute rows ``t_hi .. 0`` of EA in place (a new table if ``ea`` is None)."""
        if ea is None:
            ea = np.full((H + 1 + maxtau, n), BIG, np.int32)
            t_hi = H - 1
        t = min(int(t_hi), H - 1)
        snk = np.flatnonzero(is_sink & (sink_left != 0))
        eaf = ea.reshape(-1)
        while t >= 0:
            t_lo = max(0, t - B + 1)
            k = t - t_lo + 1
            blockv = ea[t_lo : t + 1]
            if m:
                cand = eaf.take(gidx_b[:k] + t_lo * n)
                np.maximum(cand, blk[t_lo : t + 1], out=cand)
                mins = cand[:, 0:R]
                for c in range(1, D):
                    np.minimum(mins, cand[:, c * R : (c + 1) * R], out=mins)
                blockv[:, :nu] = mins[:, :nu]
                blockv[:, nu:] = BIG
                if ovf_tail.size:
                    for i in range(k):
                        np.minimum.at(blockv[i], ovf_tail, mins[i, nu:])
            else:
                blockv[:] = BIG
            blockv[:, snk] = np.arange(t_lo, t + 1, dtype=np.int32)[:, None]
            np.minimum(blockv[k - 1], ea[t + 1], out=blockv[k - 1])
            for i in range(k - 2, -1, -1):
                np.minimum(blockv[i], blockv[i + 1], out=blockv[i])
            t = t_lo - 1
        return ea

    nf = next_free_table()
    nfmv = memoryview(nf.reshape(-1))
    blk = blocked_table()
    ea = ea_sweep(None, H - 1)
    # cost of sweeping one row in "pops" of a search (a pop with its relaxations ~2 us; a
    # row ~(20 + 0.005 * (slots + nodes)) / B us, measured), to balance the refreshes
    # against the searches deterministically
    row_cost = (10 + 0.0025 * (D * R + n)) / B
    eamv = memoryview(ea.reshape(-1))
    pops_since = 0
    t_dirty = -1
    dirty_all = False
    refreshes = 1

    adj: list[list[tuple[int, int, int]]] = [[] for _ in range(n)]
    for a, (u, v, t) in enumerate(
        zip(p.tail.tolist(), p.head.tolist(), p.tau.tolist(), strict=True)
    ):
        adj[u].append((a, v, t))
    is_sink_l = is_sink.tolist()
    hold_lim_l = hold_lim.tolist()

    pieces: list[Piece] = []
    q_arcs: list[np.ndarray] = []
    q_start: list[np.ndarray] = []
    q_end: list[np.ndarray] = []
    q_amt: list[np.ndarray] = []
    searches = 0

    def grow() -> None:
        nonlocal res, hold, nf, nfmv, ea, eamv, H, blk, t_dirty, dirty_all
        newH = H * 2
        res = np.concatenate([res, cap_profile(p.rate, H, newH)], axis=1)
        if hold is not None:
            h2 = np.repeat(np.maximum(p.hold_cap, 0).astype(np.int32)[:, None], newH, axis=1)
            h2[:, :H] = hold
            hold = h2
        H = newH
        nf = next_free_table()
        nfmv = memoryview(nf.reshape(-1))
        blk = blocked_table()
        ea = ea_sweep(None, H - 1)
        eamv = memoryview(ea.reshape(-1))
        t_dirty, dirty_all = -1, False

    def window(a: int) -> int:
        return max(1, int(np.ceil(slack * (a + 1))))

    def search(o: int):
        """Earliest-arrival paths from o (departing from step 0) to sinks with capacity left.

        Returns ``(A, paths, pops)``: the earliest arrival step (None if no sink can be
        reached within the horizon) and up to ``max_paths`` paths ``(arrival, arcs,
        departures)`` to distinct sinks arriving by ``A + window(A)``.
        """
        g = {o: 0}
        pred: dict[int, tuple[int, int, int]] = {}
        f0 = eamv[o]
        if f0 >= BIG:
            return None, None, 1
        heap = [(f0, 0, o)]
        found: list[tuple[int, list[int], list[int]]] = []
        stop = BIG
        pop_limit = 1 << 62
        H1 = H + 1
        pops = 0
        while heap:
            f, ng, u = heapq.heappop(heap)
            if f > stop:
                break
            if -ng != g[u]:  # a stale entry; labels are final once popped (FIFO, consistent
                continue  # heuristic: EA only grows as capacity is reserved)
            pops += 1
            if pops > pop_limit:
                break
            a0 = -ng
            if is_sink_l[u]:
                if sink_left[u] != 0:
                    arcs, deps = [], []
                    v = u
                    while v != o:
                        pu, arc, d = pred[v]
                        arcs.append(arc)
                        deps.append(d)
                        v = pu
                    arcs.reverse()
                    deps.reverse()
                    if not found:
                        stop = a0 + window(a0)
                        pop_limit = int(pops * (1 + BATCH_EXTRA_POPS)) + 1
                    found.append((a0, arcs, deps))
                    if len(found) >= max_paths:
                        break
                continue
            for arc, v, t in adj[u]:
                b = arc * H1
                d = a0
                r = nfmv[b + d]
                if r != d:  # arc full at a0: find the next free step, compressing the path
                    path = []
                    while r != d:
                        path.append(d)
                        d = r
                        r = nfmv[b + d]
                    for q in path:
                        nfmv[b + q] = d
                at = d + t
                if at >= H:
                    continue
                fv = eamv[at * n + v]
                if fv >= BIG:
                    continue
                if d > a0 and hold_any and hold_lim_l[u]:
                    if hold[u, a0:d].min() <= 0:  # nowhere to wait
                        continue
                if at < g.get(v, _INF):
                    g[v] = at
                    pred[v] = (u, arc, d)
                    heapq.heappush(heap, (fv, -at, v))
        if found:
            return found[0][0], found, pops
        return None, None, pops

    def reserve(o: int, A: int, arcs_l: list[int], deps_l: list[int], W: int) -> int:
        arcs = np.asarray(arcs_l, dtype=np.int64)
        dep = np.asarray(deps_l, dtype=np.int64)
        if arcs.size == 0:  # origin is a sink
            took = int(supply[o]) if sink_left[o] < 0 else min(int(supply[o]), int(sink_left[o]))
            pieces.append(Piece(o, arcs, dep, -1, np.zeros(1, np.int64), np.array([took])))
            if sink_left[o] >= 0:
                sink_left[o] -= took
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
        if full.any():
            fa = np.broadcast_to(arcs[:, None], ta.shape)[full]
            nf[fa, ta[full]] = ta[full] + 1
            blk[ta[full], slot[fa]] = BIG
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
        pieces.append(Piece(o, arcs, dep, A, su, tk))
        took = int(tk.sum())
        if sink_left[last] >= 0:
            sink_left[last] -= took
        return took

    tau_l = p.tau.tolist()
    head_l = p.head.tolist()
    qa_l: list[int] = []
    qs_l: list[int] = []
    qe_l: list[int] = []
    qm_l: list[int] = []

    def find(a: int, t: int) -> int:
        """First step >= t with free capacity on arc a (H: none), compressing the path."""
        b = a * (H + 1)
        r = nfmv[b + t]
        if r == t:
            return t
        path = []
        while r != t:
            path.append(t)
            t = r
            r = nfmv[b + t]
        for q in path:
            nfmv[b + q] = t
        return t

    def follow(o: int, arcs_l: list[int], end: int) -> int:
        """Send persons of o along a fixed path in successive groups, each departing as early as
        the residual capacity allows (waiting where needed), while they arrive by ``end``."""
        resmv = memoryview(res.reshape(-1))
        H1 = H + 1
        last = head_l[arcs_l[-1]]
        took = 0
        t_start = 0
        while True:
            left = int(supply[o]) - took
            if sink_left[last] >= 0:
                left = min(left, int(sink_left[last]) - took)
            if left <= 0:
                break
            t = t_start
            deps = []
            amt = left
            for a in arcs_l:
                d = find(a, t)
                if d >= H:
                    break
                deps.append(d)
                r = resmv[a * H + d]
                if r < amt:
                    amt = r
                t = d + tau_l[a]
                if t > end:
                    break
            if len(deps) < len(arcs_l) or t > end or t >= H:
                break
            prev = 0
            for a, d in zip(arcs_l, deps, strict=True):
                i = a * H + d
                resmv[i] -= amt
                if resmv[i] == 0:
                    nfmv[a * H1 + d] = d + 1
                    blk[d, slot_l[a]] = BIG
                if d > prev or prev == 0:
                    qa_l.append(a)
                    qs_l.append(prev)
                    qe_l.append(d)
                    qm_l.append(amt)
                prev = d + tau_l[a]
            pieces.append(
                Piece(
                    o,
                    np.asarray(arcs_l, np.int64),
                    np.asarray(deps, np.int64),
                    t,
                    _ZERO1,
                    np.array([amt], np.int64),
                )
            )
            took += amt
            t_start = deps[0]
        if sink_left[last] >= 0:
            sink_left[last] -= took
        return took

    def can_still_reach(o: int) -> bool:
        """Is a sink with capacity left reachable from o in the static network?"""
        snk = np.flatnonzero(is_sink & (sink_left != 0))
        if snk.size == 0:
            return False
        g = csr_matrix((np.ones(m), (p.head, p.tail)), shape=(n, n))
        d = dijkstra(g, directed=True, indices=snk, min_only=True, unweighted=True)
        return bool(np.isfinite(d[o]))

    heap = [(float(ea[0, o]), int(o)) for o in reach.tolist()]
    heapq.heapify(heap)
    while heap:
        if dirty_all or (t_dirty >= 0 and pops_since > REFRESH_RATIO * row_cost * (t_dirty + 1)):
            rows = H if dirty_all else t_dirty + 1
            ea = ea_sweep(ea, rows - 1)
            refreshes += 1
            pops_since = 0
            t_dirty, dirty_all = -1, False
            if heap:
                keys, os_ = zip(*heap, strict=True)
                ka = np.maximum(np.asarray(keys), ea[0, np.asarray(os_)])
                heap = list(zip(ka.tolist(), os_, strict=True))
                heapq.heapify(heap)
        key, o = heapq.heappop(heap)
        A, paths, pops = search(o)
        pops_since += pops
        searches += 1
        while A is None and H < H_MAX and can_still_reach(o):
            grow()
            refreshes += 1
            A, paths, pops = search(o)
            searches += 1
        if A is None:  # no sink with capacity left is reachable
            continue
        nxt = heap[0][0] if heap else float("inf")
        if A > nxt + max(1.0, slack * (A + 1)) and A > key:
            heapq.heappush(heap, (float(A), o))
            continue
        end = A + window(A)
        t_dirty = max(t_dirty, end)
        for Ap, arcs_l, deps_l in paths:
            if supply[o] <= 0:
                break
            if hold_any or not arcs_l:
                supply[o] -= reserve(o, Ap, arcs_l, deps_l, max(1, end - Ap))
            else:
                supply[o] -= follow(o, arcs_l, end)
            last = head_l[arcs_l[-1]] if arcs_l else o
            if sink_left[last] == 0:
                dirty_all = True
        if supply[o] > 0:
            heapq.heappush(heap, (float(A), o))

    # arrivals per step
    arrivals = np.zeros(H + 1, np.int64)
    for pc in pieces:
        np.add.at(arrivals, pc.arrive + pc.shifts + 1, pc.persons)  # +1: index -1 -> 0
    peak_queue = np.zeros(m, np.int64)
    if qa_l:
        q_arcs.append(np.asarray(qa_l, np.int64))
        q_start.append(np.asarray(qs_l, np.int64))
        q_end.append(np.asarray(qe_l, np.int64))
        q_amt.append(np.asarray(qm_l, np.int64))
    if q_arcs:
        qa = np.concatenate(q_arcs)
        ua, qi = np.unique(qa, return_inverse=True)
        diff = np.zeros((ua.size, H + 2), np.int64)
        amt = np.concatenate(q_amt)
        np.add.at(diff, (qi, np.concatenate(q_start)), amt)
        np.add.at(diff, (qi, np.concatenate(q_end)), -amt)
        peak_queue[ua] = np.cumsum(diff, axis=1).max(axis=1)
    return CcrpResult(
        pieces=pieces,
        residual=res,
        peak_queue=peak_queue,
        arrivals=arrivals,
        horizon=H,
        searches=searches,
        stranded=supply,
        stats={"refreshes": refreshes},
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
