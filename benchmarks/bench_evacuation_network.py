"""Benchmark of the network evacuation kernel on seeded synthetic grid networks.

Cases (issue 6 performance goals):

* 20,000 evacuees on a 2,500-node grid (< 10 s), walk and drive;
* 100,000 evacuees on a ~100,000-node grid (< 60 s), walk and drive;
* 20,000 evacuees to four capacity-limited assembly points on the 2,500-node grid.

For each case: kernel run time, clearance (90 %, 100 %), the shortest-path comparison and,
where computable (``--exact``; time-expanded network under ``--exact-max-arcs``), the exact
optimum by binary search with max flow. Prints JSON.

Run: ``.venv/bin/python benchmarks/bench_evacuation_network.py [--exact] [--cases a,b]``
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import shapely

from citytwin.evacuation.network import (
    StreetNetwork,
    drive_capacity_p_per_s,
    plan_evacuation,
    walk_capacity_p_per_s,
)


def grid_network(
    nx: int, ny: int, *, spacing_m: float, mode: str, seed: int, jitter_m: float = 8.0
) -> StreetNetwork:
    """A jittered ``nx`` x ``ny`` grid street network with random widths / lanes (seeded)."""
    rng = np.random.default_rng(seed)
    ii, jj = np.meshgrid(np.arange(nx), np.arange(ny), indexing="ij")
    x = ii.ravel() * spacing_m + rng.uniform(-jitter_m, jitter_m, ii.size)
    y = jj.ravel() * spacing_m + rng.uniform(-jitter_m, jitter_m, ii.size)
    idx = ii * ny + jj
    u = np.concatenate([idx[:-1, :].ravel(), idx[:, :-1].ravel()])
    v = np.concatenate([idx[1:, :].ravel(), idx[:, 1:].ravel()])
    length = np.hypot(x[u] - x[v], y[u] - y[v])
    if mode == "walk":
        width = rng.choice([1.5, 2.0, 3.0, 4.0], size=u.size, p=[0.3, 0.35, 0.25, 0.1])
        cap = walk_capacity_p_per_s(width)
        speed = np.full(u.size, 1.34)
    else:
        lanes = rng.choice([1, 2], size=u.size, p=[0.75, 0.25])
        cap = drive_capacity_p_per_s(lanes)
        speed = np.where(lanes == 2, 50, 30) / 3.6 * 0.8
    return StreetNetwork(
        node_id=np.arange(x.size),
        x_m=x,
        y_m=y,
        edge_u=u,
        edge_v=v,
        length_m=length,
        capacity_p_per_s=cap,
        speed_m_per_s=speed,
    )


def origins_in(
    net: StreetNetwork, hazard: shapely.Geometry, persons: int, *, seed: int, share: float = 0.6
) -> tuple[np.ndarray, np.ndarray]:
    """``persons`` spread over a random ``share`` of the nodes inside ``hazard`` (lognormal)."""
    rng = np.random.default_rng(seed + 1)
    inside = np.flatnonzero(shapely.intersects_xy(hazard, net.x_m, net.y_m))
    nodes = rng.choice(inside, size=max(1, int(share * inside.size)), replace=False)
    w = rng.lognormal(0.0, 1.0, nodes.size)
    counts = rng.multinomial(persons, w / w.sum())
    keep = counts > 0
    return net.node_id[nodes[keep]], counts[keep]


CASES = {
    "grid2500_walk": dict(nx=50, ny=50, spacing=100.0, mode="walk", r=1300.0, persons=20_000),
    "grid2500_drive": dict(nx=50, ny=50, spacing=100.0, mode="drive", r=1300.0, persons=20_000),
    "grid2500_assembly_walk": dict(
        nx=50, ny=50, spacing=100.0, mode="walk", r=1300.0, persons=20_000, assembly=True
    ),
    "grid100k_walk": dict(nx=317, ny=316, spacing=50.0, mode="walk", r=2500.0, persons=100_000),
    "grid100k_drive": dict(nx=317, ny=316, spacing=50.0, mode="drive", r=2500.0, persons=100_000),
}


def run_case(
    name: str, *, exact: bool, exact_max_arcs: int, seed: int = 42, dt: float | None = None
) -> dict:
    c = CASES[name]
    net = grid_network(c["nx"], c["ny"], spacing_m=c["spacing"], mode=c["mode"], seed=seed)
    cx = c["nx"] * c["spacing"] * 0.45
    cy = c["ny"] * c["spacing"] * 0.52
    hazard = shapely.Point(cx, cy).buffer(c["r"], quad_segs=32)
    on, op = origins_in(net, hazard, c["persons"], seed=seed)
    kw: dict = {}
    if c.get("assembly"):
        ext = [(c["nx"] - 1) * c["spacing"], (c["ny"] - 1) * c["spacing"]]
        pts = [(0.1, 0.1), (0.9, 0.15), (0.15, 0.9), (0.9, 0.9)]
        d = np.hypot(
            net.x_m[:, None] - np.array([p[0] * ext[0] for p in pts])[None, :],
            net.y_m[:, None] - np.array([p[1] * ext[1] for p in pts])[None, :],
        )
        kw["destination_nodes"] = net.node_id[d.argmin(axis=0)]
        kw["destination_capacity_persons"] = [8000, 6000, 6000, 8000]
    t0 = time.perf_counter()
    c0 = time.process_time()
    plan = plan_evacuation(
        net,
        origin_nodes=on,
        origin_persons=op,
        hazard=hazard,
        margin_m=100.0,
        exact="auto" if exact else False,
        exact_max_arcs=exact_max_arcs,
        time_step_s=dt,
        **kw,
    )
    wall = time.perf_counter() - t0
    cpu = time.process_time() - c0
    st = plan.stats
    return {
        "case": name,
        "mode": c["mode"],
        "nodes": st["nodes"],
        "edges": st["edges"],
        "persons": plan.persons_total,
        "origin_nodes": st["origin_nodes"],
        "relevant_nodes": st["relevant_nodes"],
        "time_step_s": plan.time_step_s,
        "kernel_s": round(st["runtime_total_s"], 2),
        "kernel_cpu_s": round(st["cpu_total_s"], 2),
        "kernel_prepare_s": st["runtime_prepare_s"],
        "kernel_ccrp_s": st["runtime_ccrp_s"],
        "searches": st["searches"],
        "search_pops": st["search_pops"],
        "requeued_without_search": st["requeued_without_search"],
        "ea_cells_updated": st["ea_cells_updated"],
        "wall_with_exact_s": round(wall, 2),
        "cpu_with_exact_s": round(cpu, 2),
        "clearance_90_s": plan.clearance_90_s,
        "clearance_100_s": plan.clearance_100_s,
        "persons_stranded": plan.persons_stranded,
        "shortest_path_90_s": plan.shortest_path["clearance_90_s"],
        "shortest_path_100_s": plan.shortest_path["clearance_100_s"],
        "saving_100_pct": plan.shortest_path["saving_100_pct"],
        "exact_optimum_100_s": (plan.exact_optimum or {}).get("clearance_100_s"),
        "gap_to_exact_pct": (plan.exact_optimum or {}).get("gap_pct"),
        "exact_runtime_s": (plan.exact_optimum or {}).get("runtime_s"),
        "exact_note": (plan.exact_optimum or {}).get("skipped"),
        "routes": len(plan.routes),
        "bottlenecks": len(plan.bottlenecks),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", default=",".join(CASES))
    ap.add_argument("--exact", action="store_true", help="also compute the exact optimum")
    ap.add_argument("--exact-max-arcs", type=int, default=40_000_000)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--dt", type=float, default=None, help="time step, s (default: automatic)")
    a = ap.parse_args()
    out = [
        run_case(n, exact=a.exact, exact_max_arcs=a.exact_max_arcs, seed=a.seed, dt=a.dt)
        for n in a.cases.split(",")
    ]
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
