"""Evacuation commands: ``citytwin evacuate`` (network) and ``citytwin pedsim run|validate|
compare`` (venues). A thin layer over :mod:`citytwin.evacuation.service`.

Errors name the field and exit with code 2; no output file is written then. With ``--json``
standard output holds only the JSON document; progress goes to standard error.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import typer

pedsim_app = typer.Typer(
    help="Pedestrian venue simulation with JuPedSim (scenario files: docs/pedsim.md).",
    no_args_is_help=True,
)


def _fail(message: str, code: int = 2) -> None:
    typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
    raise typer.Exit(code)


#: service field → command-line option
_OPTIONS = {
    "area": "--area",
    "mode": "--mode",
    "city": "--city",
    "margin_m": "--margin-m",
    "closed_edges": "--close-edge",
    "at": "--at",
    "local_tz": "--local-tz",
}


def _field_fail(field: str, message: str) -> None:
    opt = _OPTIONS.get(field)
    _fail(f"{field} ({opt}): {message}" if opt else f"{field}: {message}")


def _parse_at(at: str | None) -> datetime | None:
    if at is None:
        return None
    try:
        return datetime.fromisoformat(at)
    except ValueError:
        _field_fail("at", f"not an ISO 8601 time: {at!r} (e.g. 2024-06-21T14:00+03:00)")
        raise  # unreachable


def _write_json(path: Path, data: Any) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    tmp.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    tmp.replace(path)
    return str(path)


# --------------------------------------------------------------------------- network
def evacuate_command(
    area: Path = typer.Option(..., "--area", help="area to evacuate: GeoJSON Polygon, Feature "
                              "or FeatureCollection (WGS84)"),
    mode: str = typer.Option("walk", "--mode", help="walk | drive"),
    at: str | None = typer.Option(None, "--at", help="time, ISO 8601; 07–19 h local = day "
                                  "occupants, else night (default: now)"),
    local_tz: str | None = typer.Option(None, "--local-tz", help="IANA time zone for --at"),
    city: str | None = typer.Option(None, "--city", help="city name (default: the first)"),
    margin_m: float = typer.Option(100.0, "--margin-m", help="safe = this far outside, m"),
    close_edge: list[int] = typer.Option([], "--close-edge", help="street edge id to close "
                                         "(repeat); edge ids are in the bottleneck list"),
    as_json: bool = typer.Option(False, "--json", help="print the result as JSON"),
    geojson: Path | None = typer.Option(None, "--geojson", help="write routes, destinations "
                                        "and bottlenecks as one GeoJSON FeatureCollection"),
) -> None:
    """Evacuate the people in an area over the street network (capacity-aware routes)."""
    from citytwin.cli import _engine, _settings
    from citytwin.evacuation import service
    from citytwin.evacuation.network import EvacuationInputError

    try:
        doc = json.loads(area.read_text(encoding="utf-8"))
    except OSError as exc:
        _field_fail("area", f"cannot read {str(area)!r}: {exc}")
        return
    except json.JSONDecodeError as exc:
        _field_fail("area", f"{str(area)!r} is not valid JSON: {exc}")
        return
    when = _parse_at(at)
    engine = _engine(_settings())
    try:
        with engine.connect() as conn:
            out = service.evacuate_area(
                conn, area=doc, mode=mode, at=when, local_tz=local_tz, city=city,
                margin_m=margin_m, closed_edges=close_edge,
            )
    except EvacuationInputError as exc:
        d = service.error_detail(exc)
        _field_fail(d["field"], d["message"])
        return
    files = {}
    if geojson is not None:
        feats = []
        for kind, key in (("route", "routes_geojson"), ("destination", "destinations"),
                          ("bottleneck", "bottlenecks_geojson")):
            for f in out[key]["features"]:
                feats.append(f | {"properties": {"kind": kind, **f["properties"]}})
        try:
            files["geojson"] = _write_json(geojson, {"type": "FeatureCollection",
                                                     "features": feats})
        except OSError as exc:
            _fail(f"could not write {geojson}: {exc}", code=1)
    if as_json:
        slim = {k: v for k, v in out.items()
                if k not in ("edge_loads", "edge_loads_geojson", "routes")}
        print(json.dumps(slim | {"files": files}, ensure_ascii=False))
        return
    typer.echo(
        f"{out['persons_total']:,} persons in {out['buildings_evacuated']} buildings "
        f"({out['occupancy']['period']}), {mode}: 90 % out after "
        f"{_mmss(out['clearance_90_s'])}, everyone after {_mmss(out['clearance_100_s'])}"
    )
    sp = out.get("shortest_path") or {}
    if sp.get("clearance_100_s") is not None:
        typer.echo(f"  shortest paths only: {_mmss(sp['clearance_100_s'])} "
                   f"(capacity-aware saves {sp.get('saving_100_pct') or 0:g} %)")
    for b in out["bottlenecks"][:5]:
        typer.echo(f"  bottleneck edge {b['edge_id']}: queue {b['peak_queue_persons']} persons, "
                   f"{b['capacity_p_per_s']:g} p/s")
    for path in files.values():
        typer.echo(f"  geojson: {path}")


def _mmss(s: float | None) -> str:
    if s is None:
        return "—"
    return f"{int(s // 60)} min {int(s % 60):02d} s"


# --------------------------------------------------------------------------- venues
class _Bar:
    """A tqdm progress bar on standard error driven by ``progress(fraction, message)``."""

    def __init__(self, desc: str, enabled: bool = True) -> None:
        from tqdm import tqdm

        self._bar = tqdm(total=1000, desc=desc, unit="‰", disable=not enabled,
                         bar_format="{desc}: {percentage:3.0f}%|{bar}| {postfix}",
                         file=__import__("sys").stderr, leave=False)
        self._n = 0

    def __call__(self, fraction: float, message: str) -> None:
        n = int(round(min(max(fraction, 0.0), 1.0) * 1000))
        if n > self._n:
            self._bar.update(n - self._n)
            self._n = n
        self._bar.set_postfix_str(message[:60], refresh=False)

    def close(self) -> None:
        self._bar.close()


def _load(path: Path) -> Any:
    from citytwin.evacuation import pedsim, service

    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise pedsim.ScenarioError("file", f"cannot read {str(path)!r}: {exc}") from None
    except json.JSONDecodeError as exc:
        raise pedsim.ScenarioError("file", f"not valid JSON: {exc}") from None
    service.check_scenario_document(raw, allow_files=True)
    return pedsim.load_scenario(path)


def _seeds(n: int | None) -> list[int] | None:
    if n is None:
        return None
    if n < 1:
        _fail("seeds (--seeds): at least 1")
    return list(range(1, n + 1))


def _cli_summary(summary: dict) -> dict:
    keys = ("evacuation_time_s", "p95_evacuation_time_s", "min_evacuation_time_s",
            "max_evacuation_time_s", "all_complete", "persons", "runs", "seeds",
            "representative_seed", "imo_min_runs_met", "model", "scenario", "per_seed",
            "schema_version", "result_version")
    out = {k: summary[k] for k in keys if k in summary}
    out["exits"] = [{"name": e["name"], "persons": e["persons"],
                     "flow_p_per_s": e["flow_p_per_s"], "width_m": e.get("width_m"),
                     "closed": e.get("closed")} for e in summary["exits"]]
    out["bottlenecks"] = summary["bottlenecks"]
    return out


@pedsim_app.command("run")
def pedsim_run(
    scenario: Path = typer.Argument(..., help="scenario JSON file (docs/pedsim.md)"),
    seeds: int | None = typer.Option(None, "--seeds", help="run seeds 1..N (default: the "
                                     "scenario's simulation.seeds)"),
    processes: int = typer.Option(2, "--processes", help="worker processes"),
    as_json: bool = typer.Option(False, "--json", help="print the summary as JSON"),
    output: Path | None = typer.Option(None, "--output", help="also write the full result "
                                       "(N–t curve, maps, playback of the representative "
                                       "seed) as JSON"),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="progress bar on "
                                  "standard error"),
) -> None:
    """Simulate a venue evacuation on several seeds; report the mean and 95th percentile."""
    from citytwin.evacuation import pedsim, service

    if processes < 1:
        _fail("processes (--processes): at least 1")
    try:
        sc = _load(scenario)
    except pedsim.ScenarioError as exc:
        _fail(f"{exc.field}: {exc.message}")
        return
    bar = _Bar(sc.name, enabled=progress)
    try:
        res = service.run_venue(sc, seeds=_seeds(seeds), processes=processes, progress=bar,
                                playback=output is not None)
    except pedsim.ScenarioError as exc:
        _fail(f"{exc.field}: {exc.message}")
        return
    except pedsim.SimulationError as exc:
        _fail(f"simulation: {exc}", code=1)
        return
    finally:
        bar.close()
    summary = _cli_summary(res["summary"])
    if output is not None:
        try:
            summary["output"] = _write_json(output, res)
        except OSError as exc:
            _fail(f"could not write {output}: {exc}", code=1)
    if as_json:
        print(json.dumps(summary, ensure_ascii=False))
        return
    typer.echo(f"{sc.name}: {summary['persons']} persons, {summary['runs']} run(s): "
               f"mean {summary['evacuation_time_s']:.1f} s, "
               f"p95 {summary['p95_evacuation_time_s']:.1f} s")
    for e in summary["exits"]:
        typer.echo(f"  {e['name']:<24} {e['persons']:>7.1f} persons  {e['flow_p_per_s']:.2f} p/s")
    for b in summary["bottlenecks"]:
        typer.echo(f"  bottleneck at ({b['x_m']:.1f}, {b['y_m']:.1f}) m: peak "
                   f"{b['peak_density_p_per_m2']:.1f} p/m²")


@pedsim_app.command("validate")
def pedsim_validate(
    scenario: Path = typer.Argument(..., help="scenario JSON file"),
    as_json: bool = typer.Option(False, "--json", help="print the check as JSON"),
) -> None:
    """Check a scenario without running it (exits, obstacles, agents, reachability)."""
    from citytwin.evacuation import pedsim

    try:
        sc = _load(scenario)
    except pedsim.ScenarioError as exc:
        if as_json:
            print(json.dumps({"valid": False, "field": exc.field, "message": exc.message}))
        _fail(f"{exc.field}: {exc.message}")
        return
    info = {"valid": True, "name": sc.name, "agents": sc.agent_count,
            "exits": [e.name for e in sc.exits if not e.closed],
            "walkable_area_m2": round(sc.free_area.area, 1), "model": sc.model}
    if as_json:
        print(json.dumps(info, ensure_ascii=False))
    else:
        typer.echo(f"ok: {sc.name}: {sc.agent_count} agents, exits {', '.join(info['exits'])}, "
                   f"{info['walkable_area_m2']} m² free")


@pedsim_app.command("compare")
def pedsim_compare(
    scenario_a: Path = typer.Argument(..., help="variant A (scenario JSON)"),
    scenario_b: Path = typer.Argument(..., help="variant B (scenario JSON)"),
    seeds: int | None = typer.Option(None, "--seeds", help="run seeds 1..N on both"),
    processes: int = typer.Option(2, "--processes", help="worker processes"),
    as_json: bool = typer.Option(False, "--json", help="print the comparison as JSON"),
) -> None:
    """What-if: two variants on the same seeds and the differences (b − a)."""
    from citytwin.evacuation import pedsim, service

    try:
        a, b = _load(scenario_a), _load(scenario_b)
    except pedsim.ScenarioError as exc:
        _fail(f"{exc.field}: {exc.message}")
        return
    bar = _Bar("compare")
    try:
        res = service.compare_venues(a, b, seeds=_seeds(seeds), processes=processes,
                                     progress=bar)
    except pedsim.SimulationError as exc:
        _fail(f"simulation: {exc}", code=1)
        return
    finally:
        bar.close()
    if as_json:
        print(json.dumps(res, ensure_ascii=False))
        return
    d = res["delta"]
    pa, pb = res["a"]["p95_evacuation_time_s"], res["b"]["p95_evacuation_time_s"]
    typer.echo(f"p95: A {pa:.1f} s, B {pb:.1f} s: {d['p95_evacuation_time_s']:+.1f} s "
               f"({100 * d['p95_relative']:+.1f} %)")


def register(app: typer.Typer) -> None:
    """Add ``evacuate`` and the ``pedsim`` group to the citytwin command line."""
    app.command("evacuate")(evacuate_command)
    app.add_typer(pedsim_app, name="pedsim")
