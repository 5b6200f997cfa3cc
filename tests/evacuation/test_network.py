"""Network evacuation kernel and service (fast tier)."""

from __future__ import annotations

import dataclasses
import json

import geopandas as gpd
import numpy as np
import pytest
import shapely

from citytwin.evacuation.network import (
    EmptyAreaError,
    EvacuationInputError,
    NoSafeDestinationError,
    StreetNetwork,
    drive_capacity_p_per_s,
    evacuate,
    plan_evacuation,
    walk_capacity_p_per_s,
)


def net_from(nodes: dict[int, tuple[float, float]], edges: list[tuple], speed: float = 1.0):
    """edges: (u, v, capacity_p_per_s[, length_m]); length defaults to the straight distance."""
    ids = np.array(sorted(nodes))
    x = np.array([nodes[i][0] for i in ids], float)
    y = np.array([nodes[i][1] for i in ids], float)
    u = np.array([e[0] for e in edges])
    v = np.array([e[1] for e in edges])
    cap = np.array([e[2] for e in edges], float)
    length = np.array(
        [e[3] if len(e) > 3 else np.hypot(*np.subtract(nodes[e[0]], nodes[e[1]])) for e in edges]
    )
    return StreetNetwork(
        node_id=ids,
        x_m=x,
        y_m=y,
        edge_u=u,
        edge_v=v,
        length_m=length,
        capacity_p_per_s=cap,
        speed_m_per_s=np.full(len(edges), speed),
    )


def grid(nx: int, ny: int, spacing: float, *, seed: int, cap_choices=(0.75, 1.5)):
    rng = np.random.default_rng(seed)
    ii, jj = np.meshgrid(np.arange(nx), np.arange(ny), indexing="ij")
    idx = ii * ny + jj
    u = np.concatenate([idx[:-1, :].ravel(), idx[:, :-1].ravel()])
    v = np.concatenate([idx[1:, :].ravel(), idx[:, 1:].ravel()])
    return StreetNetwork(
        node_id=np.arange(nx * ny),
        x_m=ii.ravel() * spacing,
        y_m=jj.ravel() * spacing,
        edge_u=u,
        edge_v=v,
        length_m=np.full(u.size, spacing),
        capacity_p_per_s=rng.choice(cap_choices, u.size),
        speed_m_per_s=np.full(u.size, 10.0),
    )


# ------------------------------------------------------------------ hand-checkable cases


def test_single_path_clearance_is_travel_time_plus_persons_over_capacity():
    net = net_from({0: (0, 0), 1: (100, 0), 2: (250, 0)}, [(0, 1, 2.0), (1, 2, 2.0)])
    plan = plan_evacuation(
        net,
        origin_nodes=[0],
        origin_persons=[100],
        destination_nodes=[2],
        time_step_s=1,
        exact=True,
    )
    assert plan.clearance_100_s == pytest.approx(250 + 100 / 2.0)
    assert plan.clearance_90_s <= plan.clearance_100_s
    assert plan.exact_optimum["clearance_100_s"] == plan.clearance_100_s
    (route,) = plan.routes
    assert route["node_ids"] == [0, 1, 2] and route["edge_ids"] == [0, 1]
    assert route["persons"] == 100 and route["departure_first_s"] == 0.0
    assert plan.bottlenecks[0]["edge_id"] == 0  # the first edge holds the queue
    assert plan.bottlenecks[0]["peak_queue_persons"] >= 90


def test_fractional_capacity_is_kept_over_time():
    net = net_from({0: (0, 0), 1: (100, 0)}, [(0, 1, 0.75)])
    plan = plan_evacuation(
        net, origin_nodes=[0], origin_persons=[75], destination_nodes=[1], time_step_s=1
    )
    assert plan.clearance_100_s == pytest.approx(100 + 75 / 0.75, abs=1)


TWO_ROUTES = (
    {0: (0, 0), 1: (100, 0), 2: (200, 0), 3: (0, 100), 4: (100, 100), 5: (200, 100)},
    # short route 0-1-2 (200 m), long route 0-3-4-5-2 (400 m), 1 p/s everywhere
    [(0, 1, 1.0), (1, 2, 1.0), (0, 3, 1.0), (3, 4, 1.0), (4, 5, 1.0), (5, 2, 1.0)],
)


def test_capacity_aware_beats_shortest_path_on_two_routes():
    net = net_from(*TWO_ROUTES)
    plan = plan_evacuation(
        net,
        origin_nodes=[0],
        origin_persons=[300],
        destination_nodes=[2],
        time_step_s=1,
        exact=True,
    )
    sp = plan.shortest_path
    assert sp["clearance_100_s"] == pytest.approx(200 + 300)  # all on the short route
    # optimum: (T - 200) + (T - 400) = 300 persons at 1 p/s per route -> T = 450 s
    assert plan.clearance_100_s == pytest.approx(450, rel=0.02)
    assert sp["saving_100_s"] >= 40
    assert {tuple(r["node_ids"]) for r in plan.routes} == {(0, 1, 2), (0, 3, 4, 5, 2)}
    assert plan.clearance_100_s <= 1.2 * plan.exact_optimum["clearance_100_s"]


def test_closed_edge_forces_the_other_route():
    net = net_from(*TWO_ROUTES)
    plan = plan_evacuation(
        net,
        origin_nodes=[0],
        origin_persons=[50],
        destination_nodes=[2],
        closed_edges=[1],
        time_step_s=1,
    )
    assert [r["node_ids"] for r in plan.routes] == [[0, 3, 4, 5, 2]]
    assert plan.clearance_100_s == pytest.approx(400 + 50)


def test_closed_node_and_unknown_ids():
    net = net_from(*TWO_ROUTES)
    plan = plan_evacuation(
        net,
        origin_nodes=[0],
        origin_persons=[10],
        destination_nodes=[2],
        closed_nodes=[4],
        time_step_s=1,
    )
    assert [r["node_ids"] for r in plan.routes] == [[0, 1, 2]]
    with pytest.raises(EvacuationInputError) as e:
        plan_evacuation(
            net, origin_nodes=[0], origin_persons=[10], destination_nodes=[2], closed_edges=[99]
        )
    assert e.value.field == "closed_edges"


def test_hazard_is_never_entered_from_outside():
    # U-shaped hazard; the straight way from the left arm to the east crosses the right arm
    net = grid(9, 5, 100.0, seed=1, cap_choices=(2.0,))
    hazard = shapely.Polygon(
        [
            (-50, -50),
            (850, -50),
            (850, 450),
            (650, 450),
            (650, 150),
            (150, 150),
            (150, 450),
            (-50, 450),
        ]
    )
    inside = shapely.intersects_xy(hazard, net.x_m, net.y_m)
    origin = 0 * 5 + 3  # x=0, y=300: in the left arm
    assert inside[origin]
    plan = plan_evacuation(
        net, origin_nodes=[origin], origin_persons=[40], hazard=hazard, margin_m=0.0, time_step_s=1
    )
    assert plan.persons_evacuated == 40
    for r in plan.routes:
        ins = inside[np.asarray(r["node_ids"])]
        assert not np.any(~ins[:-1] & ins[1:]), r["node_ids"]  # never outside -> inside
        assert not ins[-1]


def test_destination_reachable_only_through_the_area_is_refused():
    # 0 (inside) - 1 (outside) - 2 (inside) - 3 (outside, destination): 1 -> 2 re-enters
    net = net_from(
        {0: (0, 0), 1: (100, 0), 2: (200, 0), 3: (300, 0)}, [(0, 1, 1.0), (1, 2, 1.0), (2, 3, 1.0)]
    )
    hazard = shapely.box(-20, -20, 20, 20).union(shapely.box(180, -20, 220, 20))
    with pytest.raises(NoSafeDestinationError):
        plan_evacuation(
            net,
            origin_nodes=[0],
            origin_persons=[5],
            hazard=hazard,
            destination_nodes=[3],
            time_step_s=1,
        )
    ok = plan_evacuation(
        net,
        origin_nodes=[0],
        origin_persons=[5],
        hazard=hazard,
        destination_nodes=[1],
        time_step_s=1,
    )
    assert ok.persons_evacuated == 5


def test_margin_rule_destinations_outside_by_margin():
    net = grid(11, 11, 100.0, seed=2, cap_choices=(1.0,))
    hazard = shapely.Point(500, 500).buffer(210)
    inside = np.flatnonzero(shapely.intersects_xy(hazard, net.x_m, net.y_m))
    plan = plan_evacuation(
        net,
        origin_nodes=inside,
        origin_persons=np.full(inside.size, 20),
        hazard=hazard,
        margin_m=150.0,
        time_step_s=1,
    )
    assert plan.persons_evacuated == 20 * inside.size
    for r in plan.routes:
        d = r["destination_node"]
        assert shapely.distance(hazard, shapely.Point(net.x_m[d], net.y_m[d])) >= 150.0
    assert plan.clearance_90_s <= plan.clearance_100_s
    assert plan.shortest_path["clearance_100_s"] >= plan.clearance_100_s * 0.999


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_within_20_percent_of_exact_optimum_on_small_grids(seed):
    net = grid(12, 12, 100.0, seed=seed)
    rng = np.random.default_rng(seed)
    hazard = shapely.Point(550 + 50 * seed, 550).buffer(330)
    inside = np.flatnonzero(shapely.intersects_xy(hazard, net.x_m, net.y_m))
    persons = rng.integers(5, 60, inside.size)
    plan = plan_evacuation(
        net,
        origin_nodes=inside,
        origin_persons=persons,
        hazard=hazard,
        margin_m=50.0,
        time_step_s=2,
        exact=True,
    )
    opt = plan.exact_optimum["clearance_100_s"]
    assert opt <= plan.clearance_100_s <= 1.2 * opt
    assert plan.clearance_100_s <= plan.shortest_path["clearance_100_s"]
    assert plan.persons_evacuated == persons.sum()
    assert sum(r["persons"] for r in plan.routes) == persons.sum()
    assert sum(o["persons"] for o in plan.origins) == persons.sum()


def test_assembly_point_capacity_and_closing():
    net = net_from(*TWO_ROUTES)
    plan = plan_evacuation(
        net,
        origin_nodes=[0],
        origin_persons=[30],
        destination_nodes=[1, 4],
        destination_capacity_persons=[10, np.inf],
        time_step_s=1,
    )
    by = {}
    for r in plan.routes:
        by[r["destination_node"]] = by.get(r["destination_node"], 0) + r["persons"]
    assert by[1] == 10 and by[4] == 20
    full = plan_evacuation(
        net,
        origin_nodes=[0],
        origin_persons=[30],
        destination_nodes=[1],
        destination_capacity_persons=[10],
        time_step_s=1,
    )
    assert full.persons_evacuated == 10 and full.persons_stranded == 20


def test_capacity_helpers():
    assert float(walk_capacity_p_per_s(2.3)) == pytest.approx(2.6)
    assert float(walk_capacity_p_per_s(0.1)) == pytest.approx(1.3 * 0.6)
    assert float(drive_capacity_p_per_s(1)) == pytest.approx(0.75)


# ------------------------------------------------------------------ errors


def test_kernel_errors_name_the_field():
    net = net_from(*TWO_ROUTES)
    with pytest.raises(EmptyAreaError) as e:
        plan_evacuation(net, origin_nodes=[0], origin_persons=[0], destination_nodes=[2])
    assert e.value.field == "origin_persons" and isinstance(e.value, ValueError)
    with pytest.raises(EvacuationInputError) as e:
        plan_evacuation(net, origin_nodes=[77], origin_persons=[1], destination_nodes=[2])
    assert e.value.field == "origin_nodes"
    with pytest.raises(NoSafeDestinationError):
        plan_evacuation(
            net, origin_nodes=[0], origin_persons=[5], destination_nodes=[2], closed_edges=[1, 4]
        )
    with pytest.raises(EvacuationInputError) as e:
        plan_evacuation(net, origin_nodes=[0], origin_persons=[5])
    assert e.value.field == "destination_nodes"


# ------------------------------------------------------------------ service


def street_gdf(n: int = 8, spacing: float = 100.0) -> gpd.GeoDataFrame:
    lines, hw = [], []
    for i in range(n):
        for j in range(n):
            if i + 1 < n:
                lines.append(
                    shapely.LineString(
                        [(i * spacing, j * spacing), ((i + 1) * spacing, j * spacing)]
                    )
                )
                hw.append("residential")
            if j + 1 < n:
                lines.append(
                    shapely.LineString(
                        [(i * spacing, j * spacing), (i * spacing, (j + 1) * spacing)]
                    )
                )
                hw.append("footway" if i == 3 else "primary")
    return gpd.GeoDataFrame(
        {"highway": hw, "width": [None] * len(hw), "maxspeed": ["30"] * len(hw)},
        geometry=lines,
        crs="EPSG:3067",
        index=[f"e{k}" for k in range(len(lines))],
    )


def buildings_gdf() -> gpd.GeoDataFrame:
    pts = [(310, 330), (360, 380), (420, 300), (900, 900), (330, 420)]
    return gpd.GeoDataFrame(
        {"occupants": [120, 40, 60, 500, 0]},
        geometry=[shapely.Point(p).buffer(10) for p in pts],
        crs="EPSG:3067",
    )


@pytest.mark.parametrize("mode", ["walk", "drive"])
def test_evacuate_service_returns_geojson_ready_json(mode):
    hazard = shapely.Point(350, 350).buffer(160)
    out = evacuate(
        edges=street_gdf(),
        buildings=buildings_gdf(),
        hazard_polygon=hazard,
        mode=mode,
        margin_m=50.0,
        exact="auto",
    )
    json.dumps(out, allow_nan=False)
    assert out["persons_total"] == 220 and out["persons_evacuated"] == 220
    assert out["buildings_evacuated"] == 3 and out["crs"] == "EPSG:3067"
    feats = out["routes_geojson"]["features"]
    assert feats and all(f["geometry"]["type"] == "LineString" for f in feats)
    assert all(str(e).startswith("e") for r in out["routes"] for e in r["edge_ids"])
    assert out["clearance_90_s"] <= out["clearance_100_s"]
    assert out["exact_optimum"]["clearance_100_s"] <= out["clearance_100_s"]
    assert out["edge_loads_geojson"]["features"]
    if mode == "drive":  # footways are not drivable
        used = {e for r in out["routes"] for e in r["edge_ids"]}
        gdf = street_gdf()
        assert not (gdf.loc[sorted(used), "highway"] == "footway").any()


def test_evacuate_assembly_points_and_closing_one_is_one_call():
    hazard = shapely.Point(350, 350).buffer(160)
    aps = gpd.GeoDataFrame(
        {"capacity": [1000, 1000]},
        geometry=[shapely.Point(0, 0), shapely.Point(700, 700)],
        index=["north", "south"],
        crs="EPSG:3067",
    )
    a = evacuate(
        edges=street_gdf(),
        buildings=buildings_gdf(),
        hazard_polygon=hazard,
        mode="walk",
        assembly_points=aps,
    )
    dest_a = {r["destination_node"] for r in a["routes"]}
    b = evacuate(
        edges=street_gdf(),
        buildings=buildings_gdf(),
        hazard_polygon=hazard,
        mode="walk",
        assembly_points=aps,
        closed_assembly_points=["south"],
    )
    dest_b = {r["destination_node"] for r in b["routes"]}
    assert len(dest_b) == 1 and dest_b < dest_a | dest_b
    assert b["clearance_100_s"] >= a["clearance_100_s"]


def test_evacuate_errors():
    hazard = shapely.Point(350, 350).buffer(160)
    with pytest.raises(EvacuationInputError) as e:
        evacuate(edges=street_gdf(), buildings=buildings_gdf(), hazard_polygon=hazard, mode="fly")
    assert e.value.field == "mode"
    with pytest.raises(EmptyAreaError) as e:
        evacuate(
            edges=street_gdf(),
            buildings=buildings_gdf(),
            hazard_polygon=shapely.box(600, 0, 700, 100),
            mode="walk",
        )
    assert e.value.field == "hazard_polygon"
    with pytest.raises(NoSafeDestinationError):
        # the whole network is inside the area: no node is safe
        evacuate(
            edges=street_gdf(),
            buildings=buildings_gdf(),
            hazard_polygon=shapely.box(-100, -100, 1000, 1000),
            mode="walk",
        )


# ------------------------------------------------------------------ engine internals


def _random_degree_network(seed: int):
    """A random network whose hub nodes have up to 9 outgoing arcs (more than the sweep's 4
    slots per row) and node ids that do not follow the arc order."""
    rng = np.random.default_rng(seed)
    n = 40
    x = rng.uniform(0, 1000, n)
    y = rng.uniform(0, 1000, n)
    u, v = [], []
    for a in range(n):
        k = 9 if a % 7 == 0 else int(rng.integers(1, 4))
        for b in rng.choice(n, size=k, replace=False).tolist():
            if b != a:
                u.append(a)
                v.append(b)
    u, v = np.array(u), np.array(v)
    length = np.hypot(x[u] - x[v], y[u] - y[v]) + 20
    ids = rng.permutation(np.arange(1000, 1000 + n))
    return StreetNetwork(
        node_id=ids,
        x_m=x,
        y_m=y,
        edge_u=ids[u],
        edge_v=ids[v],
        length_m=length,
        capacity_p_per_s=rng.choice([0.5, 0.75, 1.5], u.size),
        speed_m_per_s=np.full(u.size, 8.0),
    ), ids


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_high_degree_nodes_and_relabelled_ids_stay_feasible_and_near_exact(seed):
    net, ids = _random_degree_network(seed)
    origins = ids[:12]
    persons = np.random.default_rng(seed).integers(5, 40, origins.size)
    plan = plan_evacuation(
        net,
        origin_nodes=origins,
        origin_persons=persons,
        destination_nodes=ids[-4:],
        time_step_s=2,
        exact=True,
    )
    if plan.persons_stranded:
        pytest.skip("random network leaves someone without a destination")
    opt = plan.exact_optimum["clearance_100_s"]
    assert opt <= plan.clearance_100_s <= 1.2 * opt
    assert all(b["peak_utilisation"] <= 1.0 + 1e-9 for b in plan.bottlenecks)
    got = {}
    for r in plan.routes:
        assert r["node_ids"][0] == r["origin_node"]
        assert r["node_ids"][-1] == r["destination_node"] in set(ids[-4:].tolist())
        got[r["origin_node"]] = got.get(r["origin_node"], 0) + r["persons"]
    assert got == {int(o): int(p) for o, p in zip(origins, persons, strict=True) if p}


def test_engine_residual_never_negative_on_high_degree_network():
    from citytwin.evacuation._flow import FlowProblem, ccrp, static_times_to_sink

    rng = np.random.default_rng(5)
    n = 30
    tail, head = [], []
    for a in range(n - 3):
        for b in rng.choice(n, size=6 if a % 5 == 0 else 2, replace=False).tolist():
            if b != a:
                tail.append(a)
                head.append(b)
    tail, head = np.array(tail), np.array(head)
    supply = np.zeros(n, np.int64)
    supply[:10] = rng.integers(10, 50, 10)
    sink_cap = np.full(n, -1, np.int64)
    sink_cap[n - 3 :] = [40, 1 << 40, 1 << 40]
    keep = sink_cap[tail] < 0  # sinks have no outgoing arcs
    p = FlowProblem(
        n=n,
        tail=tail[keep],
        head=head[keep],
        tau=rng.integers(1, 6, keep.sum()),
        rate=rng.choice([0.5, 1.0, 2.5], keep.sum()),
        supply=supply,
        sink_cap=sink_cap,
        hold_cap=np.full(n, -1, np.int64),
    )
    h, _ = static_times_to_sink(p)
    sol = ccrp(p, h)
    assert sol.residual.min() >= 0
    routed = sum(int(pc.persons.sum()) for pc in sol.pieces)
    assert routed + int(sol.stranded.sum()) == int(supply.sum())
    for pc in sol.pieces:  # every piece starts at its origin and follows connected arcs
        if pc.arcs.size:
            assert p.tail[pc.arcs[0]] == pc.origin
            assert np.all(p.head[pc.arcs[:-1]] == p.tail[pc.arcs[1:]])
            assert np.all(np.diff(pc.dep) >= p.tau[pc.arcs[:-1]])
    to_sink_40 = sum(
        int(pc.persons.sum()) for pc in sol.pieces if pc.arcs.size and p.head[pc.arcs[-1]] == n - 3
    )
    assert to_sink_40 <= 40


def test_plan_is_deterministic():
    net = grid(14, 14, 100.0, seed=3)
    hazard = shapely.Point(650, 650).buffer(420)
    inside = np.flatnonzero(shapely.intersects_xy(hazard, net.x_m, net.y_m))
    persons = np.random.default_rng(3).integers(5, 80, inside.size)

    def run() -> dict:
        d = plan_evacuation(
            net, origin_nodes=inside, origin_persons=persons, hazard=hazard, time_step_s=2
        ).to_dict()
        d.pop("stats")
        return d

    assert run() == run()


def test_unlimited_assembly_capacity_as_infinity():
    """An assembly point with capacity ``inf`` (unlimited) is accepted like one without one."""
    hazard = shapely.Point(350, 350).buffer(160)
    geometry = [shapely.Point(0, 0), shapely.Point(700, 700)]
    unlimited = gpd.GeoDataFrame(
        {"capacity": [np.inf, np.inf]}, geometry=geometry, index=["n", "s"], crs="EPSG:3067"
    )
    plain = gpd.GeoDataFrame(
        {"capacity": [np.nan, np.nan]}, geometry=geometry, index=["n", "s"], crs="EPSG:3067"
    )
    a = evacuate(
        edges=street_gdf(),
        buildings=buildings_gdf(),
        hazard_polygon=hazard,
        mode="walk",
        assembly_points=unlimited,
    )
    b = evacuate(
        edges=street_gdf(),
        buildings=buildings_gdf(),
        hazard_polygon=hazard,
        mode="walk",
        assembly_points=plain,
    )
    assert a["persons_evacuated"] == 220
    assert a["clearance_100_s"] == b["clearance_100_s"]


# ------------------------------------------------------------------ engine internals


def test_cap_profile_matches_the_floor_formula():
    from citytwin.evacuation._flow import cap_profile

    rate = np.r_[np.random.default_rng(0).uniform(0.01, 40.0, 300), 0.75, 1 / 3, 2 / 3, 2.2]
    for t0, t1 in [(0, 500), (500, 1300)]:
        t = np.arange(t0, t1 + 1, dtype=np.float64)
        ref = np.diff(np.floor(rate[:, None] * t[None, :] + 1e-9), axis=1).astype(np.int32)
        assert np.array_equal(cap_profile(rate, t0, t1), ref)


@pytest.mark.parametrize("dtype", [np.int16, np.int32])
def test_earliest_arrival_repair_equals_a_fresh_sweep(dtype):
    """Filling random slots and a sink, then repairing the EA table incrementally, gives the
    same table as sweeping it again from scratch."""
    from citytwin.evacuation._flow import _ea_sweep_jit, _ea_update_jit

    rng = np.random.default_rng(11)
    n, H = 40, 60
    tail = np.repeat(np.arange(n - 4), 3)
    head = rng.integers(0, n, tail.size)
    keep = tail != head
    tail, head = tail[keep].astype(np.int64), head[keep].astype(np.int64)
    m = tail.size
    tau = rng.integers(1, 4, m).astype(np.int64)
    maxtau = int(tau.max())
    adj_off = np.r_[0, np.cumsum(np.bincount(tail, minlength=n))].astype(np.int64)
    in_arc = np.argsort(head, kind="stable").astype(np.int64)
    in_off = np.r_[0, np.cumsum(np.bincount(head, minlength=n))].astype(np.int64)
    is_sink = np.zeros(n, bool)
    is_sink[n - 4 :] = True
    sink_left = np.where(is_sink, 100, -1).astype(np.int64)
    big = int(np.iinfo(dtype).max)
    free = rng.random((H, m)) < 0.7
    steps = np.arange(H + 1, dtype=dtype)

    def tables(free: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        nf = np.empty((H + 1, m), dtype)  # next free step: a union-find without compression
        nf[H] = H
        for t in range(H - 1, -1, -1):
            nf[t] = np.where(free[t], steps[t], nf[t + 1])
        ea = np.full((H + 1 + maxtau) * n, big, dtype)
        _ea_sweep_jit(ea, n, H, nf.reshape(-1), adj_off, head, tau, is_sink, sink_left)
        return nf, ea

    nf, ea = tables(free)
    fill = np.argwhere(free)[rng.choice(int(free.sum()), 300, replace=False)]
    free2 = free.copy()
    free2[fill[:, 0], fill[:, 1]] = False
    nf2, _ = tables(free2)
    sink_left[n - 1] = 0  # a sink fills up too
    keys = np.r_[fill[:, 0] * n + tail[fill[:, 1]], np.arange(H) * n + n - 1].astype(np.int64)
    queued = np.zeros(H * n, np.uint8)
    changed = _ea_update_jit(
        ea, n, H, nf2.reshape(-1), adj_off, head, tau, tail, in_off, in_arc, is_sink,
        sink_left, keys, keys.size, queued,
    )  # fmt: skip
    _, fresh = tables(free2)
    assert changed > 0
    assert np.array_equal(ea, fresh)
    assert not queued.any()


def test_large_horizon_uses_wide_tables_with_the_same_plan():
    """Beyond 32,767 steps the tables switch from 16- to 32-bit steps; the plan is the same."""
    from citytwin.evacuation._flow import FlowProblem, ccrp, static_times_to_sink

    n = 6
    tail = np.array([0, 0, 1, 2, 3, 4])
    head = np.array([1, 2, 3, 4, 5, 5])
    p = FlowProblem(
        n=n,
        tail=tail,
        head=head,
        tau=np.array([1, 2, 1, 1, 3, 1]),
        rate=np.array([0.5, 1.0, 0.75, 1.5, 1.0, 1.0]),
        supply=np.array([60, 0, 0, 0, 0, 0]),
        sink_cap=np.array([-1, -1, -1, -1, -1, 1 << 40]),
        hold_cap=np.full(n, -1, np.int64),
    )
    h, _ = static_times_to_sink(p)
    a = ccrp(p, h)
    b = ccrp(p, h, horizon=40_000)
    assert b.horizon == 40_000 and a.horizon < 1000
    assert np.array_equal(a.arrivals, b.arrivals[: a.arrivals.size])
    assert b.arrivals[a.arrivals.size :].sum() == 0
    assert np.array_equal(a.peak_queue, b.peak_queue)
    assert [pc.arcs.tolist() for pc in a.pieces] == [pc.arcs.tolist() for pc in b.pieces]


def test_short_horizon_grows_to_the_same_plan():
    from citytwin.evacuation._flow import FlowProblem, ccrp, static_times_to_sink

    n = 5
    p = FlowProblem(
        n=n,
        tail=np.array([0, 0, 1, 2, 3]),
        head=np.array([1, 2, 3, 3, 4]),
        tau=np.array([2, 3, 1, 2, 1]),
        rate=np.array([0.5, 1.0, 1.0, 0.75, 1.25]),
        supply=np.array([80, 0, 0, 0, 0]),
        sink_cap=np.array([-1, -1, -1, -1, 1 << 40]),
        hold_cap=np.full(n, -1, np.int64),
    )
    h, _ = static_times_to_sink(p)
    a = ccrp(p, h)
    b = ccrp(p, h, horizon=4)  # far too short: the tables are doubled until everyone fits
    assert b.horizon > 4 and b.residual.min() >= 0
    assert int(b.arrivals.sum()) == 80 and int(b.stranded.sum()) == 0
    last = lambda r: int(np.flatnonzero(r.arrivals)[-1])  # noqa: E731
    assert last(a) == last(b)


def test_node_capacity_limits_waiting_and_everyone_still_leaves():
    """Node capacities take the reservation path with waiting limits; the plan stays feasible
    and near the exact optimum of the same (node-limited) problem."""
    net = grid(8, 8, 100.0, seed=4)
    net = dataclasses.replace(net, node_capacity_persons=np.full(net.node_id.size, 3.0))
    hazard = shapely.Point(350, 350).buffer(220)
    inside = np.flatnonzero(shapely.intersects_xy(hazard, net.x_m, net.y_m))
    persons = np.random.default_rng(4).integers(20, 60, inside.size)
    plan = plan_evacuation(
        net, origin_nodes=inside, origin_persons=persons, hazard=hazard, time_step_s=2, exact=True
    )
    opt = plan.exact_optimum["clearance_100_s"]
    assert plan.persons_evacuated == persons.sum()
    assert opt <= plan.clearance_100_s <= 1.2 * opt
