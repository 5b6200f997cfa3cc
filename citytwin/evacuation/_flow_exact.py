"""Exact quickest evacuation by binary search on the horizon with max flow (private).

Same discrete model as :mod:`._flow`. For a horizon of ``T`` steps the time-expanded network
has one copy of every node per step ``0..T-1``, movement arcs ``(u, t) -> (v, t + tau)`` with
``cap`` persons, holdover arcs ``(v, t) -> (v, t + 1)`` (``hold_cap`` or unlimited), a source
feeding each origin at step 0 with its persons and every sink copy draining into a per-sink
collector limited by the sink's capacity. Everyone can be out by ``T * dt`` seconds iff the
maximum flow equals the number of persons. ``scipy.sparse.csgraph.maximum_flow`` (Dinic)
solves each horizon.
"""

from __future__ import annotations

import numpy as np
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import maximum_flow

from ._flow import FlowProblem

__all__ = ["ten_arcs", "feasible", "min_clearance_steps"]


def ten_arcs(p: FlowProblem, T: int) -> int:
    """Number of arcs of the time-expanded network for ``T`` steps (for size limits)."""
    move = np.maximum(T - p.tau, 0).sum()
    return int(move + p.n * T + p.n + T * int((p.sink_cap >= 0).sum()))


def feasible(p: FlowProblem, T: int) -> tuple[bool, int]:
    """Can all persons at origins reach sinks with arrival step <= T - 1? Returns (ok, flow)."""
    n = p.n
    total = int(p.supply.sum())
    big = np.int64(min(total + 1, np.iinfo(np.int32).max // 4))
    sinks = np.flatnonzero(p.sink_cap >= 0)
    S = n * T
    Z = S + 1
    col0 = Z + 1  # per-sink collectors
    rows, cols, caps = [], [], []
    # movement arcs
    lens = np.maximum(T - p.tau, 0)
    a = np.repeat(np.arange(p.m), lens)
    start = np.repeat(np.cumsum(lens) - lens, lens)
    t = np.arange(a.size) - start
    rows.append(t * n + p.tail[a])
    cols.append((t + p.tau[a]) * n + p.head[a])
    tt = t.astype(np.float64)
    r = p.rate[a]
    caps.append((np.floor(r * (tt + 1) + 1e-9) - np.floor(r * tt + 1e-9)).astype(np.int64))
    # holdover arcs (not at sinks)
    nonsink = np.flatnonzero(p.sink_cap < 0)
    hc = np.where(p.hold_cap[nonsink] >= 0, p.hold_cap[nonsink], big)
    hc = np.where(p.supply[nonsink] > 0, big, hc)
    tt = np.arange(T - 1)
    rows.append((tt[:, None] * n + nonsink[None, :]).ravel())
    cols.append(((tt[:, None] + 1) * n + nonsink[None, :]).ravel())
    caps.append(np.broadcast_to(hc[None, :], (T - 1, nonsink.size)).ravel())
    # source
    orig = np.flatnonzero(p.supply > 0)
    rows.append(np.full(orig.size, S))
    cols.append(orig)
    caps.append(p.supply[orig])
    # sinks: (s, t) -> collector_s -> Z
    tt = np.arange(T)
    rows.append((tt[:, None] * n + sinks[None, :]).ravel())
    cols.append(np.broadcast_to(col0 + np.arange(sinks.size)[None, :], (T, sinks.size)).ravel())
    caps.append(np.full(T * sinks.size, big))
    sc = np.where(p.sink_cap[sinks] > 0, np.minimum(p.sink_cap[sinks], big), big)
    sc = np.where(p.sink_cap[sinks] == 0, 0, sc)
    rows.append(col0 + np.arange(sinks.size))
    cols.append(np.full(sinks.size, Z))
    caps.append(sc)
    N = col0 + sinks.size
    r = np.concatenate(rows).astype(np.int32)
    c = np.concatenate(cols).astype(np.int32)
    k = np.concatenate(caps).astype(np.int64)
    keep = (r != c) & (k > 0)
    g = csr_matrix((k[keep], (r[keep], c[keep])), shape=(N, N))
    g.sum_duplicates()
    g.data = np.minimum(g.data, big).astype(np.int32)
    flow = int(maximum_flow(g, S, Z, method="dinic").flow_value)
    return flow >= total, flow


def min_clearance_steps(
    p: FlowProblem, lo: int, hi: int, *, max_arcs: int = 40_000_000
) -> int | None:
    """Smallest T in [lo, hi] (steps) with :func:`feasible`; None if too big or infeasible."""
    lo = max(int(lo), 1)
    hi = max(int(hi), lo)
    if ten_arcs(p, hi) > max_arcs:
        return None
    if not feasible(p, hi)[0]:
        return None
    # at most k persons reach the sinks per step, so a deficit of D persons at horizon T
    # means at least T + D / k steps are needed: a lower bound that cuts the search short
    k = max(1, int(np.ceil(p.rate[p.sink_cap[p.head] >= 0].sum())))
    total = int(p.supply.sum())
    while lo < hi:
        mid = (lo + hi) // 2
        ok, flow = feasible(p, mid)
        if ok:
            hi = mid
        else:
            lo = max(mid + 1, mid + -(-(total - flow) // k))
    return hi
