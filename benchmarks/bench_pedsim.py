"""Adapter overhead: citytwin's JuPedSim adapter vs raw JuPedSim on the same scenario.

Scenario (issue 6): 1,000 agents in a 40 m × 40 m room, one 2 m door, the adapter's
CollisionFreeSpeedModel defaults (radius 0.2 m, time gap 1 s, wall repulsion range 0.1 m,
neighbour repulsion range 0.25 m),
desired speed 1.34 m/s, dt 0.01 s, the default 2 m door-wide exit corridor. Both sides use the
same start positions (the adapter's placement for the seed), model parameters and exit
corridor, so the simulated evacuation times match (the raw side stops when the last agent is
removed, 1.5 m beyond the door line; the adapter reports the last door-line crossing); the
wall-clock difference is the adapter's cost (validation, placement, exit choice, pre-movement
release, per-step door-line crossings, the standoff recovery's check once a simulated
second, 0.5 s trajectory sampling) and, reported separately,
the PedPy analysis. ``door_steady_flow`` counts door-line crossings between the 10th and the
90th percentile of exits (the steady phase), per metre of door width.

Run: ``.venv/bin/python benchmarks/bench_pedsim.py [--agents 1000] [--seed 1]``; prints JSON.
"""

from __future__ import annotations

import argparse
import json
import time

import jupedsim as jps
import numpy as np
import shapely

from citytwin.evacuation import pedsim
from citytwin.evacuation._pedsim_engine import prepare_agents


def scenario(agents: int, seed: int) -> dict:
    return {
        "schema_version": 1,
        "name": "bench 40x40 one 2 m door",
        "walkable_area": [[0, 0], [40, 0], [40, 40], [0, 40]],
        "exits": [{"name": "door", "door": [[40, 19], [40, 21]]}],
        "agents": [{"name": "all", "count": agents,
                    "spawn": [[0, 0], [40, 0], [40, 40], [0, 40]],
                    "speed_m_per_s": {"mean": 1.34, "sd": 0.0}}],
        "model": "CollisionFreeSpeedModel",
        "simulation": {"dt_s": 0.01, "max_time_s": 3600, "seeds": [seed]},
    }


def raw_jupedsim(sc: pedsim.Scenario, seed: int) -> dict:
    """The same simulation written directly against JuPedSim (the reference)."""
    positions = prepare_agents(sc, seed)[0]
    exit_ = sc.exits[0]
    t0 = time.perf_counter()
    sim = jps.Simulation(model=jps.CollisionFreeSpeedModel(**sc.model_parameters),
                         geometry=sc.geometry, dt=0.01)
    stage = sim.add_exit_stage(shapely.get_coordinates(exit_.stage.exterior)[:-1].tolist())
    journey = sim.add_journey(jps.JourneyDescription([stage]))
    for p in positions:
        sim.add_agent(jps.CollisionFreeSpeedModelAgentParameters(
            position=tuple(p), journey_id=journey, stage_id=stage, desired_speed=1.34,
            **sc.agent_parameters))
    while sim.agent_count() > 0 and sim.elapsed_time() < sc.max_time_s:
        sim.iterate()
    return {"wall_time_s": time.perf_counter() - t0, "evacuation_time_s": sim.elapsed_time(),
            "left_inside": sim.agent_count()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--agents", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    sc = pedsim.load_scenario(scenario(args.agents, args.seed))
    raw = raw_jupedsim(sc, args.seed)
    t0 = time.perf_counter()
    res = pedsim.run_scenario(sc, seed=args.seed)
    adapter_total = time.perf_counter() - t0
    sim_only = res.simulation_wall_time_s
    t = np.sort(res.exit_time_s[~np.isnan(res.exit_time_s)])
    a, b = int(0.1 * len(t)), int(0.9 * len(t)) - 1
    steady = (b - a) / (t[b] - t[a]) / sc.exits[0].width_m
    print(json.dumps({
        "agents": args.agents, "seed": args.seed,
        "raw_wall_time_s": round(raw["wall_time_s"], 2),
        "raw_evacuation_time_s": round(raw["evacuation_time_s"], 2),
        "raw_left_inside": raw["left_inside"],
        "adapter_complete": res.complete, "adapter_rerouted": res.rerouted,
        "adapter_simulation_wall_time_s": round(sim_only, 2),
        "adapter_total_wall_time_s": round(adapter_total, 2),
        "analysis_wall_time_s": round(adapter_total - sim_only, 2),
        "adapter_evacuation_time_s": round(res.evacuation_time_s, 2),
        "overhead_simulation_pct": round(100 * (sim_only / raw["wall_time_s"] - 1), 1),
        "overhead_total_pct": round(100 * (adapter_total / raw["wall_time_s"] - 1), 1),
        "door_specific_flow_p_per_m_s": res.exits[0]["specific_flow_p_per_m_s"],
        "door_steady_specific_flow_p_per_m_s": round(float(steady), 3),
        "goal_overhead_pct": 10,
    }, indent=2))


if __name__ == "__main__":
    main()
