"""Pedestrian venue simulation: a thin, validated adapter over JuPedSim 1.4.

A scenario (JSON, documented in ``docs/pedsim.md``) describes a walkable area in local metres,
obstacles, exits (door segments on the boundary), agent groups and the JuPedSim model. This
module validates it before anything runs, runs one seed (:func:`run_scenario`) or many seeds in
separate processes (:func:`run_many`, reporting the 95th percentile as IMO MSC.1/Circ.1533
asks) and compares two variants (:func:`compare`). It knows no CLI or web framework.

Example
-------
>>> from citytwin.evacuation import pedsim
>>> sc = pedsim.load_scenario({
...     "schema_version": 1,
...     "walkable_area": [[0, 0], [10, 0], [10, 10], [0, 10]],
...     "exits": [{"name": "door", "door": [[10, 4], [10, 6]]}],
...     "agents": [{"count": 10, "spawn": [[1, 1], [5, 1], [5, 9], [1, 9]]}],
... })
>>> res = pedsim.run_scenario(sc, seed=1)
>>> res.exits[0]["persons"]
10
"""

from __future__ import annotations

import concurrent.futures as cf
import copy
import dataclasses
import multiprocessing as mp
import queue as queue_mod
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from shapely.geometry import Polygon
from shapely.ops import unary_union

from . import _pedsim_analysis as _an
from ._pedsim_engine import SimulationError, prepare_agents, simulate
from ._pedsim_schema import (
    MODELS,
    SCHEMA_VERSION,
    Scenario,
    ScenarioError,
    parse_scenario,
)

__all__ = [
    "MODELS",
    "RESULT_VERSION",
    "SCHEMA_VERSION",
    "RunResult",
    "Scenario",
    "ScenarioError",
    "SimulationError",
    "compare",
    "load_scenario",
    "run_many",
    "ManyResult",
    "run_scenario",
    "validate_scenario",
    "walkable_area_from_twin",
    "with_changes",
]

RESULT_VERSION = 1
"""Version of the result/summary dictionaries (``result_version`` field)."""

Progress = Callable[[float, str], None]
ScenarioLike = Scenario | Mapping[str, Any] | str | Path


# --------------------------------------------------------------------------- scenarios


def walkable_area_from_twin(area: Polygon, buildings: Iterable[Polygon]) -> Polygon:
    """A square's (or streets') polygon minus building footprints, all in local metres.

    Parameters
    ----------
    area : shapely.Polygon
        The open space in a projected, metric CRS (shift it to local coordinates first).
    buildings : iterable of shapely.Polygon
        Footprints to cut out; those not touching ``area`` are ignored.

    Returns
    -------
    shapely.Polygon
        The walkable area. A result split into parts raises :class:`ScenarioError`.
    """
    cut = area.difference(unary_union(list(buildings)))
    if cut.geom_type == "MultiPolygon":
        parts = sorted(cut.geoms, key=lambda p: p.area, reverse=True)
        if len(parts) > 1 and parts[1].area >= 0.05:
            raise ScenarioError("walkable_area", f"buildings split the area into {len(parts)} "
                                "parts; choose a connected area")
        cut = parts[0]
    return cut


def validate_scenario(source: ScenarioLike) -> Scenario:
    """Check a scenario and return it parsed; raise :class:`ScenarioError` naming the field.

    Checks, before anything runs: the schema version and value ranges; every exit lies on the
    walkable-area boundary (≤ 0.5 m) and leads out of it; obstacles do not split the walkable
    area and do not block a door; no agent starts in an obstacle or outside the area; at most
    4 persons/m² in a spawn area and a trial placement (first seed) with two radii spacing
    succeeds; every group can reach an exit through gaps wider than an agent; somebody is
    inside.
    """
    sc = source if isinstance(source, Scenario) else parse_scenario(source)
    prepare_agents(sc, sc.seeds[0])  # trial placement: raises ScenarioError if they do not fit
    return sc


def load_scenario(source: Mapping[str, Any] | str | Path) -> Scenario:
    """Read a scenario from a dict or a JSON file path and validate it (see
    :func:`validate_scenario`). Relative DXF paths are resolved against the file's folder."""
    return validate_scenario(source)


def _as_scenario(s: ScenarioLike) -> Scenario:
    return s if isinstance(s, Scenario) else load_scenario(s)


# --------------------------------------------------------------------------- results


@dataclasses.dataclass
class RunResult:
    """One seeded run. Times in s, lengths in m, densities in p/m², speeds in m/s.

    ``trajectories`` holds ``t`` (frames,), ``x`` and ``y`` (frames, agents) float32 with NaN
    when an agent is not (yet / any more) in the simulation, sampled every
    ``sample_interval_s``. Maps are 2-D arrays, row 0 at the north edge (see ``maps``'
    ``origin_xy_m`` and ``grid_size_m``).
    """

    scenario_name: str
    seed: int
    model: str
    evacuation_time_s: float
    complete: bool
    stalled: bool
    persons: int
    evacuated: int
    rerouted: int  # agents re-routed by the standoff recovery (docs/pedsim.md)
    exits: list[dict]
    nt_t_s: np.ndarray
    nt_persons: np.ndarray
    exit_time_s: np.ndarray
    trajectories: dict[str, np.ndarray] | None
    maps: dict[str, Any]
    bottlenecks: list[dict]
    wall_time_s: float
    simulation_wall_time_s: float
    steps: int
    parameters: dict[str, Any]

    def summary(self) -> dict[str, Any]:
        """Small JSON-ready summary of this run (no arrays)."""
        return {
            "result_version": RESULT_VERSION, "schema_version": SCHEMA_VERSION,
            "scenario": self.scenario_name, "model": self.model, "seed": self.seed,
            "evacuation_time_s": round(self.evacuation_time_s, 2), "complete": self.complete,
            "stalled": self.stalled,
            "persons": self.persons, "evacuated": self.evacuated, "rerouted": self.rerouted,
            "exits": self.exits,
            "bottlenecks": self.bottlenecks, "parameters": self.parameters,
            "wall_time_s": round(self.wall_time_s, 3),
        }

    def to_dict(self, *, trajectories: bool = True, maps: bool = True,
                decimals: int = 2) -> dict[str, Any]:
        """JSON-ready dict (lists, NaN as None) for the API, the dashboard or a file."""
        d = self.summary()
        d["nt"] = {"t_s": _jl(self.nt_t_s, decimals), "persons": self.nt_persons.tolist()}
        d["exit_time_s"] = _jl(self.exit_time_s, decimals)
        if maps:
            d["maps"] = {k: (_jl(v, decimals) if isinstance(v, np.ndarray) else v)
                         for k, v in self.maps.items() if k != "density_stack"}
        if trajectories and self.trajectories is not None:
            d["trajectories"] = {k: _jl(v, decimals) for k, v in self.trajectories.items()}
        return d


def _jl(a: np.ndarray, decimals: int) -> list:
    a = np.round(np.asarray(a, dtype=float), decimals)
    return np.where(np.isnan(a), None, a).tolist()


def run_scenario(scenario: ScenarioLike, *, seed: int, progress: Progress | None = None,
                 analysis: bool = True) -> RunResult:
    """Simulate one seed with JuPedSim and analyse it.

    Parameters
    ----------
    scenario : Scenario, dict or path
        Validated on the way in (:class:`ScenarioError` before anything runs).
    seed : int
        Seeds placement, speeds, pre-movement times and stochastic models; same seed, same run.
    progress : callable(fraction, message), optional
        Called with a fraction in [0, 1] while the simulation runs.
    analysis : bool
        Compute PedPy maps and bottlenecks (default). Without, ``maps`` is empty.

    Returns
    -------
    RunResult
    """
    t0 = time.perf_counter()
    sc = _as_scenario(scenario)
    if progress:
        progress(0.0, f"seed {seed}: placing {sc.agent_count} agents")
    raw = simulate(sc, seed=seed, progress=progress)
    done = ~np.isnan(raw.exit_time)
    complete = bool(done.all())
    evac = float(np.nanmax(raw.exit_time)) if complete else float(raw.end_time_s)
    nt_t, nt_n = _an.n_t_curve(raw, step_s=sc.sample_interval_s)
    maps: dict[str, Any] = {}
    bns: list[dict] = []
    if analysis:
        if progress:
            progress(0.99, f"seed {seed}: density, speed and RSET maps")
        maps = _an.grid_maps(sc, raw)
        bns = _an.bottlenecks(sc, maps)
        maps.pop("density_stack")
    if progress:
        progress(1.0, f"seed {seed}: done, evacuation {evac:.1f} s")
    return RunResult(
        scenario_name=sc.name, seed=seed, model=sc.model, evacuation_time_s=evac,
        complete=complete, stalled=raw.stalled, persons=len(raw.exit_time),
        evacuated=int(done.sum()), rerouted=int(np.count_nonzero(raw.rerouted)),
        exits=_an.exit_stats(sc, raw), nt_t_s=nt_t, nt_persons=nt_n,
        exit_time_s=raw.exit_time,
        trajectories={"t": raw.sample_times, "x": raw.x, "y": raw.y, "group": raw.group},
        maps=maps, bottlenecks=bns, wall_time_s=time.perf_counter() - t0,
        simulation_wall_time_s=raw.wall_time_s, steps=raw.steps,
        parameters={"dt_s": sc.dt_s, "max_time_s": sc.max_time_s,
                    "model_parameters": sc.model_parameters,
                    "agent_parameters": sc.agent_parameters,
                    "sample_interval_s": sc.sample_interval_s, "grid_size_m": sc.grid_size_m,
                    "bottleneck_density_p_per_m2": sc.bottleneck_density_p_per_m2,
                    "bottleneck_min_duration_s": sc.bottleneck_min_duration_s},
    )


# --------------------------------------------------------------------------- many seeds

_progress_queue: Any = None  # set in worker processes only (initializer), never in the parent


def _worker_init(q: Any) -> None:
    global _progress_queue
    _progress_queue = q


def _worker(sc: Scenario, seed: int, job: int, keep_trajectories: bool) -> RunResult:
    q = _progress_queue

    def report(frac: float, msg: str) -> None:
        if q is not None:
            q.put((job, frac, msg))

    res = run_scenario(sc, seed=seed, progress=report)
    if not keep_trajectories:
        res.trajectories = None
    return res


@dataclasses.dataclass
class ManyResult:
    """Runs of several seeds and their JSON-ready ``summary``."""

    summary: dict[str, Any]
    runs: list[RunResult]


def run_many(scenario: ScenarioLike, *, seeds: Sequence[int] | None = None, processes: int = 2,
             progress: Progress | None = None, keep_trajectories: bool = False) -> ManyResult:
    """Run several seeds, each in its own process (JuPedSim is single-threaded).

    Parameters
    ----------
    scenario : Scenario, dict or path
    seeds : sequence of int, optional
        Default: the scenario's ``simulation.seeds``. IMO asks for ≥ 50 runs per case.
    processes : int
        Worker processes (spawned); 1 runs in this process.
    progress : callable(fraction, message), optional
        Mean progress over all seeds.
    keep_trajectories : bool
        Keep playback trajectories of every run (memory heavy). By default they are dropped;
        re-run ``summary["representative_seed"]`` with :func:`run_scenario` for playback.

    Returns
    -------
    ManyResult
        ``summary`` has ``evacuation_time_s`` (mean), ``p95_evacuation_time_s``, ``exits``,
        ``bottlenecks`` (of the representative run, with ``seen_in_runs``), ``seeds``,
        ``model``, ``schema_version`` and ``result_version``.
    """
    sc = _as_scenario(scenario)
    seeds = list(sc.seeds if seeds is None else seeds)
    if not seeds or len(set(seeds)) != len(seeds):
        raise ScenarioError("seeds", "expected a non-empty list of distinct integers")
    runs = _run_jobs([(sc, s) for s in seeds], processes=processes, progress=progress,
                     keep_trajectories=keep_trajectories)
    return ManyResult(summary=_summarise(sc, runs), runs=runs)


def _run_jobs(jobs: list[tuple[Scenario, int]], *, processes: int, progress: Progress | None,
              keep_trajectories: bool) -> list[RunResult]:
    """Run (scenario, seed) jobs, in spawned worker processes when ``processes`` > 1."""
    fracs = [0.0] * len(jobs)

    def tell(k: int, frac: float, msg: str) -> None:
        fracs[k] = frac
        if progress:
            progress(sum(fracs) / len(jobs), msg)

    out: list[RunResult | None] = [None] * len(jobs)
    if processes <= 1 or len(jobs) == 1:
        for k, (sc, s) in enumerate(jobs):
            res = run_scenario(sc, seed=s, progress=lambda f, m, k=k: tell(k, f, m))
            if not keep_trajectories:
                res.trajectories = None
            out[k] = res
        return out  # type: ignore[return-value]
    ctx = mp.get_context("spawn")  # no fork: safe inside a threaded web server
    q = ctx.Queue()
    with cf.ProcessPoolExecutor(max_workers=min(processes, len(jobs)), mp_context=ctx,
                                initializer=_worker_init, initargs=(q,)) as pool:
        futs = {pool.submit(_worker, sc, s, k, keep_trajectories): k
                for k, (sc, s) in enumerate(jobs)}
        pending = set(futs)
        while pending:
            done, pending = cf.wait(pending, timeout=0.2)
            _drain(q, tell)
            for f in done:
                out[futs[f]] = f.result()
                tell(futs[f], 1.0, f"run {futs[f] + 1}/{len(jobs)} finished")
        _drain(q, lambda *a: None)
    return out  # type: ignore[return-value]


def _drain(q: Any, tell: Callable[[int, float, str], None]) -> None:
    while True:
        try:
            seed, frac, msg = q.get_nowait()
        except queue_mod.Empty:
            return
        tell(seed, frac, msg)


def _summarise(sc: Scenario, runs: list[RunResult]) -> dict[str, Any]:
    times = np.array([r.evacuation_time_s for r in runs])
    p95 = float(np.percentile(times, 95))
    rep = runs[int(np.argmin(np.abs(times - np.median(times))))]
    exits = []
    for j, e in enumerate(sc.exits):
        per = [r.exits[j] for r in runs]
        exits.append({
            "name": e.name, "width_m": round(e.width_m, 3), "closed": e.closed,
            "persons": round(float(np.mean([p["persons"] for p in per])), 1),
            "flow_p_per_s": round(float(np.mean([p["flow_p_per_s"] for p in per])), 3),
            "specific_flow_p_per_m_s": round(
                float(np.mean([p["specific_flow_p_per_m_s"] for p in per])), 3),
        })
    bns = []
    for b in rep.bottlenecks:
        seen = sum(any(np.hypot(o["x_m"] - b["x_m"], o["y_m"] - b["y_m"]) <= 2.0
                       for o in r.bottlenecks) for r in runs)
        bns.append({**b, "seen_in_runs": seen})
    return {
        "result_version": RESULT_VERSION, "schema_version": SCHEMA_VERSION,
        "scenario": sc.name, "model": sc.model, "seeds": [r.seed for r in runs],
        "runs": len(runs), "persons": rep.persons,
        "evacuation_time_s": round(float(times.mean()), 2),
        "p95_evacuation_time_s": round(p95, 2),
        "min_evacuation_time_s": round(float(times.min()), 2),
        "max_evacuation_time_s": round(float(times.max()), 2),
        "all_complete": all(r.complete for r in runs),
        "imo_min_runs_met": len(runs) >= 50,
        "per_seed": [{"seed": r.seed, "evacuation_time_s": round(r.evacuation_time_s, 2),
                      "complete": r.complete, "rerouted": r.rerouted} for r in runs],
        "representative_seed": rep.seed, "exits": exits, "bottlenecks": bns,
        "parameters": rep.parameters,
    }


def compare(scenario_a: ScenarioLike, scenario_b: ScenarioLike, *,
            seeds: Sequence[int] | None = None, processes: int = 2,
            progress: Progress | None = None) -> dict[str, Any]:
    """What-if: run two variants (e.g. an added exit, a moved fence) on the same seeds.

    Returns ``{"a": summary, "b": summary, "delta": {...}}`` where ``delta`` holds
    b − a for the mean and 95th-percentile evacuation times (s, and relative), and per exit
    name the change in persons.
    """
    sa, sb = _as_scenario(scenario_a), _as_scenario(scenario_b)
    seeds = list(sa.seeds if seeds is None else seeds)
    runs = _run_jobs([(sa, s) for s in seeds] + [(sb, s) for s in seeds],
                     processes=processes, progress=progress, keep_trajectories=False)
    ra = _summarise(sa, runs[: len(seeds)])
    rb = _summarise(sb, runs[len(seeds):])
    ea = {e["name"]: e for e in ra["exits"]}
    eb = {e["name"]: e for e in rb["exits"]}
    names = list(dict.fromkeys([*ea, *eb]))
    delta = {
        "evacuation_time_s": round(rb["evacuation_time_s"] - ra["evacuation_time_s"], 2),
        "p95_evacuation_time_s": round(rb["p95_evacuation_time_s"]
                                       - ra["p95_evacuation_time_s"], 2),
        "p95_relative": round(rb["p95_evacuation_time_s"] / ra["p95_evacuation_time_s"] - 1, 4),
        "exits": [{"name": n, "persons_a": ea.get(n, {}).get("persons", 0),
                   "persons_b": eb.get(n, {}).get("persons", 0)} for n in names],
        "bottlenecks_a": len(ra["bottlenecks"]), "bottlenecks_b": len(rb["bottlenecks"]),
    }
    return {"result_version": RESULT_VERSION, "seeds": seeds, "a": ra, "b": rb, "delta": delta}


def with_changes(scenario: ScenarioLike, changes: Mapping[str, Any]) -> dict[str, Any]:
    """A deep copy of a scenario document with top-level fields replaced (for what-ifs)."""
    raw = scenario.raw if isinstance(scenario, Scenario) else scenario
    if isinstance(raw, str | Path):
        import json

        path = Path(raw)
        raw = json.loads(path.read_text(encoding="utf-8"))
        raw.setdefault("base_dir", str(path.parent))  # keep relative DXF paths working
    doc = copy.deepcopy(dict(raw))
    doc.update(copy.deepcopy(dict(changes)))
    return doc
