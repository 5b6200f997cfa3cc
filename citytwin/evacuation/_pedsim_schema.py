"""Scenario parsing, geometry building and validation for the pedestrian simulation.

Private module: the public surface is :mod:`citytwin.evacuation.pedsim`. Everything here is
pure except :func:`_read_dxf_polygons`, which opens the DXF file named in a scenario. All
lengths are metres in a local projected frame, times seconds, densities persons/m².
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import shapely
from shapely.geometry import LineString, MultiPolygon, Point, Polygon, shape
from shapely.ops import unary_union

SCHEMA_VERSION = 1
"""Version of the scenario JSON format this module reads (``schema_version`` field)."""

MODELS = (
    "CollisionFreeSpeedModel",
    "CollisionFreeSpeedModelV2",
    "AnticipationVelocityModel",
    "SocialForceModel",
    "GeneralizedCentrifugalForceModel",
)
DEFAULT_MODEL = "CollisionFreeSpeedModel"
MAX_DENSITY_P_PER_M2 = 4.0
"""Largest initial density accepted in a spawn area (random placement jams near 4.3 /m²)."""
DOOR_SNAP_TOLERANCE_M = 0.5
"""A door's end points may lie at most this far from the walkable-area boundary."""

EXIT_CORRIDOR_LENGTH_M = 2.0
"""Default length of the door-wide corridor beyond each door line.

JuPedSim removes an agent when it enters the exit stage. With CFSM an agent's speed is set by
its headway to the agent ahead, so a stage right behind the door line removes the leader while
its follower is still in the doorway: the follower always sees free space and the door passes
far more people than measured (1 m door, stage 0.5 m beyond the line: 1.66 p/s vs IMO's 1.33).
Removing agents ~one free-walking headway beyond the door (2r + v0·T = 0.4 + 1.34·1 s ≈ 1.7 m)
keeps the people just through the door in the simulation; longer door-wide corridors turn into
a corridor bottleneck of their own (docs/pedsim.md, "Exit geometry")."""

CFSM_DEFAULTS: dict[str, dict[str, float]] = {
    "parameters": {"range_geometry_repulsion": 0.1, "range_neighbor_repulsion": 0.25},
    "agent_parameters": {},
}
"""citytwin's defaults for the CollisionFreeSpeedModel where they differ from JuPedSim's.

Both are about crowds clogging narrow doors (RiMEA 9: 1,000 agents, 1 m doors;
docs/pedsim.md, "Exit geometry and model defaults"). JuPedSim's wall repulsion range, 0.02 m,
lets agents hug walls and press into the frame of a 1 m door: the 4-exit run stalls with 211
of 1,000 inside; 0.1 m (a 10 cm keep-off distance) lets it complete. JuPedSim's neighbour
repulsion range, 0.1 m, still lets arches of agents lock in front of the door with 2 exits
(196 of 1,000 out); 0.25 m keeps them turning away from blocked neighbours and the crowd keeps
flowing. Door flow stays ~1.0 p/s through 1 m. The longer range can make two lone agents on
either side of a narrow opening hold each other off; the engine's standoff recovery resolves
that (``_pedsim_engine.STANDOFF_AFTER_S``). Scenario values override these."""

EXIT_STAGE_DEPTH_M = 0.5
"""Depth of the exit stage at the far end of the corridor (half the corridor if shorter)."""

SLIVER_AREA_M2 = 0.05
"""Parts of the walkable area smaller than this (after subtracting obstacles) are dropped."""


class ScenarioError(ValueError):
    """A scenario that cannot run, with the offending field and what to change.

    Parameters
    ----------
    field : str
        Dotted path of the field, e.g. ``"exits[1].door"`` or ``"agents[0].count"``.
    message : str
        What is wrong and what is accepted.
    """

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message

    def __reduce__(self):  # keep picklable across processes
        return (type(self), (self.field, self.message))


@dataclasses.dataclass(frozen=True)
class Exit:
    """One open or closed exit, after snapping its door onto the walkable-area boundary."""

    name: str
    door: LineString
    width_m: float
    closed: bool
    corridor: Polygon | None  # walkable corridor beyond the door (None when closed)
    stage: Polygon | None  # JuPedSim exit stage at the corridor's far end


@dataclasses.dataclass(frozen=True)
class AgentGroup:
    """One group of agents: where they start, how fast they walk, when they start."""

    name: str
    count: int
    spawn: Polygon | MultiPolygon | None  # placement area (clipped to the free area)
    positions: np.ndarray | None  # explicit start positions (n, 2) in m
    speed: dict[str, float]  # mean, sd, min, max in m/s
    premovement: dict[str, Any]  # distribution, parameters in s
    exits: tuple[str, ...] | None  # allowed exits (None: all open exits)
    radius_m: float


@dataclasses.dataclass(frozen=True)
class Scenario:
    """A validated scenario: the raw document plus the geometry JuPedSim runs on.

    Build with :func:`citytwin.evacuation.pedsim.load_scenario`; ``raw`` is the (JSON-like)
    document it came from, so a what-if is "copy ``raw``, change it, load again".
    """

    raw: dict[str, Any]
    name: str
    walkable_area: Polygon  # area given by the user, before obstacles
    obstacles: tuple[tuple[str, str, Polygon], ...]  # (name, kind, polygon)
    free_area: Polygon  # walkable area minus obstacles (inside the venue)
    geometry: Polygon  # free area plus the exit corridors: what JuPedSim gets
    exits: tuple[Exit, ...]
    groups: tuple[AgentGroup, ...]
    model: str
    model_parameters: dict[str, Any]
    agent_parameters: dict[str, Any]
    dt_s: float
    max_time_s: float
    seeds: tuple[int, ...]
    sample_interval_s: float
    stall_timeout_s: float
    grid_size_m: float
    bottleneck_density_p_per_m2: float
    bottleneck_min_duration_s: float

    @property
    def open_exits(self) -> tuple[Exit, ...]:
        return tuple(e for e in self.exits if not e.closed)

    @property
    def agent_count(self) -> int:
        return sum(g.count for g in self.groups)


# --------------------------------------------------------------------------- helpers


def _num(value: Any, field: str, *, lo: float | None = None, hi: float | None = None,
         lo_open: bool = False, unit: str = "") -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ScenarioError(field, f"expected a finite number{(' in ' + unit) if unit else ''},"
                                   f" got {value!r}")
    v = float(value)
    rng = f"{'(' if lo_open else '['}{lo if lo is not None else '-inf'}, " \
          f"{hi if hi is not None else 'inf'}]"
    if lo is not None and (v < lo or (lo_open and v <= lo)):
        raise ScenarioError(field, f"{v:g} {unit} is out of the accepted range {rng}".strip())
    if hi is not None and v > hi:
        raise ScenarioError(field, f"{v:g} {unit} is out of the accepted range {rng}".strip())
    return v


def _obj(doc: Any, field: str) -> Mapping[str, Any]:
    if not isinstance(doc, Mapping):
        raise ScenarioError(field, f"expected an object, got {type(doc).__name__}")
    return doc


def _geom(value: Any, field: str) -> shapely.Geometry:
    """A shapely geometry from a GeoJSON geometry (local metres) or a shapely object."""
    if isinstance(value, shapely.Geometry):
        g = value
    elif isinstance(value, Mapping) and value.get("type") == "Feature":
        return _geom(value.get("geometry"), field)
    elif isinstance(value, Mapping) and "type" in value:
        try:
            g = shape(value)
        except Exception as exc:  # shapely raises several types for malformed input
            raise ScenarioError(field, f"not a valid GeoJSON geometry: {exc}") from None
    elif isinstance(value, Sequence) and len(value) >= 3 and not isinstance(value, str):
        try:
            g = Polygon(value)
        except Exception as exc:
            raise ScenarioError(field, f"not a list of [x, y] vertices: {exc}") from None
    else:
        raise ScenarioError(field, "expected a GeoJSON geometry (local metres), a list of "
                                   "[x, y] vertices or a shapely geometry")
    if g.is_empty:
        raise ScenarioError(field, "geometry is empty")
    if not g.is_valid:
        raise ScenarioError(field, f"geometry is invalid: {shapely.is_valid_reason(g)}")
    return g


def _read_dxf_polygons(path: Path, layer: str | None, field: str
                       ) -> tuple[list[Polygon], list[LineString]]:
    """Closed polylines (as polygons) and open polylines/lines from one DXF layer."""
    import ezdxf  # local import: only DXF scenarios need it

    try:
        doc = ezdxf.readfile(str(path))
    except (OSError, ezdxf.DXFError) as exc:
        raise ScenarioError(field, f"cannot read DXF file {str(path)!r}: {exc}") from None
    polys: list[Polygon] = []
    lines: list[LineString] = []
    for e in doc.modelspace():
        if layer is not None and e.dxf.layer != layer:
            continue
        kind = e.dxftype()
        if kind == "LWPOLYLINE":
            pts = [(p[0], p[1]) for p in e.get_points("xy")]
            closed = bool(e.closed)
        elif kind == "POLYLINE":
            pts = [(v.dxf.location.x, v.dxf.location.y) for v in e.vertices]
            closed = bool(e.is_closed)
        elif kind == "LINE":
            pts = [(e.dxf.start.x, e.dxf.start.y), (e.dxf.end.x, e.dxf.end.y)]
            closed = False
        else:
            continue
        if closed and len(pts) >= 3:
            polys.append(shapely.make_valid(Polygon(pts)))
        elif len(pts) >= 2:
            lines.append(LineString(pts))
    return polys, lines


def _walkable_area(value: Any, base_dir: Path | None) -> Polygon:
    field = "walkable_area"
    if isinstance(value, Mapping) and "dxf" in value:
        path = Path(value["dxf"])
        if not path.is_absolute() and base_dir is not None:
            path = base_dir / path
        polys, _ = _read_dxf_polygons(path, value.get("layer"), field)
        if not polys:
            raise ScenarioError(field, f"no closed polylines in DXF layer {value.get('layer')!r}")
        polys.sort(key=lambda p: p.area, reverse=True)
        outer = polys[0]
        holes = [p for p in polys[1:] if outer.contains(p)]
        area = outer.difference(unary_union(holes)) if holes else outer
    else:
        area = _geom(value, field)
    if isinstance(area, MultiPolygon) and len(area.geoms) == 1:
        area = area.geoms[0]
    if not isinstance(area, Polygon):
        raise ScenarioError(field, f"must be one polygon (holes allowed), got {area.geom_type}; "
                                   "split venues are separate scenarios")
    if area.area < 1.0:
        raise ScenarioError(field, f"area {area.area:.2f} m² is too small (need ≥ 1 m²)")
    return area


def _obstacles(value: Any, base_dir: Path | None) -> list[tuple[str, str, Polygon]]:
    if value is None:
        return []
    if not isinstance(value, Sequence) or isinstance(value, str):
        raise ScenarioError("obstacles", "expected a list of obstacles")
    out: list[tuple[str, str, Polygon]] = []
    for i, ob in enumerate(value):
        f = f"obstacles[{i}]"
        ob = _obj(ob, f)
        name = str(ob.get("name", f"obstacle {i + 1}"))
        kind = str(ob.get("kind", "obstacle"))
        thick = _num(ob.get("thickness_m", 0.2), f + ".thickness_m", lo=0.01, hi=50, unit="m")
        if "dxf" in ob:
            path = Path(ob["dxf"])
            if not path.is_absolute() and base_dir is not None:
                path = base_dir / path
            polys, lines = _read_dxf_polygons(path, ob.get("layer"), f + ".dxf")
            geoms = polys + [ln.buffer(thick / 2, cap_style="flat") for ln in lines]
            if not geoms:
                raise ScenarioError(f + ".dxf", f"no entities in DXF layer {ob.get('layer')!r}")
            for j, g in enumerate(geoms):
                out.append((f"{name} {j + 1}", kind, g))
            continue
        if "geometry" not in ob:
            raise ScenarioError(f + ".geometry", "missing (GeoJSON Polygon or LineString)")
        g = _geom(ob["geometry"], f + ".geometry")
        if g.geom_type in ("LineString", "MultiLineString"):
            g = g.buffer(thick / 2, cap_style="flat", join_style="mitre")
        if g.geom_type not in ("Polygon", "MultiPolygon") or g.area <= 0:
            raise ScenarioError(f + ".geometry", f"expected a polygon or line, got {g.geom_type}")
        out.append((name, kind, g))
    return out


def _dist(value: Any, field: str, *, default: dict[str, Any]) -> dict[str, Any]:
    """A time distribution: constant, uniform or clipped normal (seconds)."""
    if value is None:
        return dict(default)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return {"distribution": "constant", "value": _num(value, field, lo=0, unit="s")}
    d = _obj(value, field)
    kind = d.get("distribution", "constant")
    if kind == "constant":
        return {"distribution": "constant",
                "value": _num(d.get("value", 0.0), field + ".value", lo=0, unit="s")}
    if kind == "uniform":
        lo = _num(d.get("min", 0.0), field + ".min", lo=0, unit="s")
        hi = _num(d.get("max"), field + ".max", lo=lo, unit="s")
        return {"distribution": "uniform", "min": lo, "max": hi}
    if kind == "normal":
        mean = _num(d.get("mean"), field + ".mean", lo=0, unit="s")
        sd = _num(d.get("sd", 0.0), field + ".sd", lo=0, unit="s")
        lo = _num(d.get("min", 0.0), field + ".min", lo=0, unit="s")
        hi = _num(d.get("max", mean + 3 * sd), field + ".max", lo=lo, unit="s")
        return {"distribution": "normal", "mean": mean, "sd": sd, "min": lo, "max": hi}
    raise ScenarioError(field + ".distribution",
                        f"unknown {kind!r}; accepted: constant, uniform, normal")


def _snap_point(p: Point, boundary: shapely.Geometry) -> Point:
    return boundary.interpolate(boundary.project(p))


def _build_exit(i: int, ex: Mapping[str, Any], area: Polygon, corridor_len: float) -> Exit:
    f = f"exits[{i}]"
    name = str(ex.get("name", f"exit {i + 1}"))
    door_v = ex.get("door")
    try:
        door = LineString(door_v)
        assert len(door.coords) == 2
    except Exception:
        raise ScenarioError(f + ".door", "expected a segment [[x1, y1], [x2, y2]] in metres "
                                         "lying on the walkable-area boundary") from None
    if "width_m" in ex:  # re-centre a door of the given width on the segment's midpoint
        w = _num(ex["width_m"], f + ".width_m", lo=0.0, lo_open=True, hi=100, unit="m")
        (x1, y1), (x2, y2) = door.coords
        ln = door.length
        if ln <= 0:
            raise ScenarioError(f + ".door", "segment has zero length")
        ux, uy = (x2 - x1) / ln, (y2 - y1) / ln
        mx, my = (x1 + x2) / 2, (y1 + y2) / 2
        door = LineString([(mx - ux * w / 2, my - uy * w / 2), (mx + ux * w / 2, my + uy * w / 2)])
    closed = bool(ex.get("closed", False))
    boundary = area.boundary
    ends = [Point(c) for c in door.coords]
    mid = door.interpolate(0.5, normalized=True)
    far = max(boundary.distance(p) for p in [*ends, mid])
    if far > DOOR_SNAP_TOLERANCE_M:
        where = "outside" if not area.buffer(1e-9).contains(mid) else "inside"
        raise ScenarioError(f + ".door", f"exit {name!r} lies {far:.2f} m {where} the "
                            f"walkable-area boundary; doors must be on the boundary "
                            f"(tolerance {DOOR_SNAP_TOLERANCE_M} m)")
    a, b = (_snap_point(p, boundary) for p in ends)
    door = LineString([a, b])
    width = door.length
    if width < 0.3:
        raise ScenarioError(f + ".door", f"exit {name!r} is {width:.2f} m wide after snapping "
                                         "onto the boundary; need ≥ 0.3 m (along one wall)")
    if door.difference(boundary.buffer(0.05)).length > 0.05 * width:
        raise ScenarioError(f + ".door", f"exit {name!r} does not follow one wall of the "
                                         "walkable area (doors cannot turn corners)")
    if closed:
        return Exit(name, door, width, True, None, None)
    ux, uy = (b.x - a.x) / width, (b.y - a.y) / width
    nx, ny = uy, -ux  # a unit normal; flip it to point out of the area
    mid = door.interpolate(0.5, normalized=True)
    probe = 0.05
    inside_plus = area.contains(Point(mid.x + nx * probe, mid.y + ny * probe))
    inside_minus = area.contains(Point(mid.x - nx * probe, mid.y - ny * probe))
    if inside_plus == inside_minus:
        raise ScenarioError(f + ".door", f"exit {name!r} does not separate the walkable area "
                                         "from the outside (walkable on both sides or neither)")
    if inside_plus:
        nx, ny = -nx, -ny

    def quad(d0: float, d1: float) -> Polygon:
        return Polygon([(a.x + nx * d0, a.y + ny * d0), (b.x + nx * d0, b.y + ny * d0),
                        (b.x + nx * d1, b.y + ny * d1), (a.x + nx * d1, a.y + ny * d1)])

    outside = quad(0.0, corridor_len)
    if outside.intersection(area).area > 0.01 * outside.area:
        raise ScenarioError(f + ".door", f"the {corridor_len:g} m beyond exit {name!r} are "
                                         "part of the walkable area; an exit must lead out")
    corridor = quad(-0.01, corridor_len)
    stage = quad(corridor_len - min(EXIT_STAGE_DEPTH_M, corridor_len / 2), corridor_len)
    return Exit(name, door, width, False, corridor, stage)


def _single_polygon(g: shapely.Geometry) -> tuple[Polygon | None, list[float]]:
    """The geometry as one polygon after dropping slivers, else (None, part areas)."""
    parts = [p for p in getattr(g, "geoms", [g]) if isinstance(p, Polygon)]
    big = [p for p in parts if p.area >= SLIVER_AREA_M2]
    if len(big) == 1:
        return big[0], [big[0].area]
    return None, sorted((p.area for p in big), reverse=True)


# --------------------------------------------------------------------------- parse + validate


def parse_scenario(source: Mapping[str, Any] | str | Path) -> Scenario:
    """Read and check a scenario document; raise :class:`ScenarioError` on the first problem.

    Placement feasibility (whether the agents fit with their spacing) is checked by the caller
    with a trial placement, see ``pedsim.validate_scenario``.
    """
    base_dir: Path | None = None
    if isinstance(source, str | Path):
        path = Path(source)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ScenarioError("file", f"cannot read scenario {str(path)!r}: {exc}") from None
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ScenarioError("file", f"not valid JSON: {exc}") from None
        base_dir = path.parent
    else:
        doc = source
    doc = dict(_obj(doc, "scenario"))
    if "base_dir" in doc and base_dir is None:
        base_dir = Path(doc["base_dir"])

    version = doc.get("schema_version")
    if version != SCHEMA_VERSION:
        raise ScenarioError("schema_version", f"got {version!r}; this citytwin reads "
                                              f"schema_version {SCHEMA_VERSION}")
    name = str(doc.get("name", "scenario"))

    sim = dict(_obj(doc.get("simulation", {}), "simulation"))
    dt = _num(sim.get("dt_s", 0.01), "simulation.dt_s", lo=0.001, hi=0.1, unit="s")
    max_t = _num(sim.get("max_time_s", 1800.0), "simulation.max_time_s", lo=1.0,
                 hi=86400.0, unit="s")
    seeds_v = sim.get("seeds", [1])
    if (not isinstance(seeds_v, Sequence) or isinstance(seeds_v, str) or not seeds_v
            or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0
                       for s in seeds_v)):
        raise ScenarioError("simulation.seeds", "expected a non-empty list of integers ≥ 0")
    if len(set(seeds_v)) != len(seeds_v):
        raise ScenarioError("simulation.seeds", "seeds must be distinct")
    sample = _num(sim.get("sample_interval_s", 0.5), "simulation.sample_interval_s",
                  lo=dt, hi=10.0, unit="s")
    stall = _num(sim.get("stall_timeout_s", 60.0), "simulation.stall_timeout_s", lo=1.0,
                 unit="s")
    corridor_len = _num(sim.get("exit_corridor_length_m", EXIT_CORRIDOR_LENGTH_M),
                        "simulation.exit_corridor_length_m", lo=0.4, hi=10.0, unit="m")

    ana = dict(_obj(doc.get("analysis", {}), "analysis"))
    grid = _num(ana.get("grid_size_m", 1.0), "analysis.grid_size_m", lo=0.25, hi=20, unit="m")
    b_dens = _num(ana.get("bottleneck_density_p_per_m2", 2.0),
                  "analysis.bottleneck_density_p_per_m2", lo=0.5, hi=10, unit="p/m²")
    b_dur = _num(ana.get("bottleneck_min_duration_s", 10.0),
                 "analysis.bottleneck_min_duration_s", lo=0.0, hi=86400, unit="s")

    model_v = doc.get("model", DEFAULT_MODEL)
    if isinstance(model_v, str):
        model_v = {"name": model_v}
    model_d = _obj(model_v, "model")
    model = model_d.get("name", DEFAULT_MODEL)
    if model not in MODELS:
        raise ScenarioError("model.name", f"unknown model {model!r}; accepted: "
                                          + ", ".join(MODELS))
    model_params = dict(_obj(model_d.get("parameters", {}), "model.parameters"))
    agent_params = dict(_obj(model_d.get("agent_parameters", {}), "model.agent_parameters"))
    _check_model_keys(model, model_params, agent_params)
    if model == "CollisionFreeSpeedModel":
        model_params = {**CFSM_DEFAULTS["parameters"], **model_params}
        agent_params = {**CFSM_DEFAULTS["agent_parameters"], **agent_params}
    elif model == "CollisionFreeSpeedModelV2":  # the same parameters are per agent in V2
        agent_params = {**CFSM_DEFAULTS["parameters"], **CFSM_DEFAULTS["agent_parameters"],
                        **agent_params}

    area = _walkable_area(doc.get("walkable_area"), base_dir)
    obstacles = _obstacles(doc.get("obstacles"), base_dir)
    ob_union = unary_union([g for _, _, g in obstacles]) if obstacles else Polygon()
    free_g = area.difference(ob_union) if obstacles else area
    free, parts = _single_polygon(free_g)
    if free is None:
        if not parts:
            raise ScenarioError("obstacles", "obstacles cover the whole walkable area")
        raise ScenarioError("obstacles", f"obstacles split the walkable area into {len(parts)} "
                            "separate parts (areas " + ", ".join(f"{a:.1f}" for a in parts)
                            + " m²); open a gap of at least 0.5 m or move the obstacle")

    exits_v = doc.get("exits")
    if not isinstance(exits_v, Sequence) or isinstance(exits_v, str) or not exits_v:
        raise ScenarioError("exits", "expected a non-empty list of exits")
    exits = [_build_exit(i, _obj(e, f"exits[{i}]"), area, corridor_len)
             for i, e in enumerate(exits_v)]
    names = [e.name for e in exits]
    if len(set(names)) != len(names):
        raise ScenarioError("exits", "exit names must be unique")
    open_exits = [e for e in exits if not e.closed]
    if not open_exits:
        raise ScenarioError("exits", "all exits are closed; at least one must be open")
    for i, e in enumerate(exits):
        if e.closed:
            continue
        blocked = e.door.intersection(ob_union.buffer(0.2)).length if obstacles else 0.0
        if e.width_m - blocked < 0.5:
            raise ScenarioError(f"exits[{i}].door", f"exit {e.name!r} is blocked by an obstacle"
                                f" ({e.width_m - blocked:.2f} m of {e.width_m:.2f} m free)")
    geometry, gparts = _single_polygon(unary_union([free] + [e.corridor for e in open_exits]))
    if geometry is None:
        raise ScenarioError("exits", "exit corridors overlap or do not join the walkable area "
                                     "(move doors apart or away from corners)")

    groups = _groups(doc.get("agents"), free, obstacles, open_exits, names)
    _check_reachable(geometry, groups, open_exits)

    return Scenario(
        raw=doc, name=name, walkable_area=area, obstacles=tuple(obstacles), free_area=free,
        geometry=geometry, exits=tuple(exits), groups=tuple(groups), model=model,
        model_parameters=model_params, agent_parameters=agent_params, dt_s=dt,
        max_time_s=max_t, seeds=tuple(int(s) for s in seeds_v), sample_interval_s=sample,
        stall_timeout_s=stall,
        grid_size_m=grid, bottleneck_density_p_per_m2=b_dens, bottleneck_min_duration_s=b_dur,
    )


_MODEL_KEYS: dict[str, tuple[set[str], set[str]]] = {
    "CollisionFreeSpeedModel": (
        {"strength_neighbor_repulsion", "range_neighbor_repulsion",
         "strength_geometry_repulsion", "range_geometry_repulsion"},
        {"time_gap", "radius"}),
    "CollisionFreeSpeedModelV2": (
        set(),
        {"time_gap", "radius", "strength_neighbor_repulsion", "range_neighbor_repulsion",
         "strength_geometry_repulsion", "range_geometry_repulsion"}),
    "AnticipationVelocityModel": (
        {"pushout_strength"},
        {"time_gap", "radius", "strength_neighbor_repulsion", "range_neighbor_repulsion",
         "wall_buffer_distance", "anticipation_time", "reaction_time"}),
    "SocialForceModel": (
        {"body_force", "friction"},
        {"mass", "reaction_time", "agent_scale", "obstacle_scale", "force_distance", "radius"}),
    "GeneralizedCentrifugalForceModel": (
        {"strength_neighbor_repulsion", "strength_geometry_repulsion",
         "max_neighbor_interaction_distance", "max_geometry_interaction_distance",
         "max_neighbor_interpolation_distance", "max_geometry_interpolation_distance",
         "max_neighbor_repulsion_force", "max_geometry_repulsion_force"},
        {"mass", "tau", "a_v", "a_min", "b_min", "b_max"}),
}


def _check_model_keys(model: str, params: Mapping[str, Any], agent: Mapping[str, Any]) -> None:
    allowed_m, allowed_a = _MODEL_KEYS[model]
    for key, value in params.items():
        if key not in allowed_m:
            raise ScenarioError(f"model.parameters.{key}", f"not a {model} parameter; accepted: "
                                + (", ".join(sorted(allowed_m)) or "none"))
        _num(value, f"model.parameters.{key}")
    for key, value in agent.items():
        if key not in allowed_a:
            raise ScenarioError(f"model.agent_parameters.{key}", f"not a {model} agent "
                                "parameter; accepted: " + ", ".join(sorted(allowed_a)))
        _num(value, f"model.agent_parameters.{key}", lo=0)


def _default_radius(model: str) -> float:
    return {"SocialForceModel": 0.3, "GeneralizedCentrifugalForceModel": 0.2}.get(model, 0.2)


def _groups(value: Any, free: Polygon, obstacles: list[tuple[str, str, Polygon]],
            open_exits: list[Exit], exit_names: list[str]) -> list[AgentGroup]:
    if not isinstance(value, Sequence) or isinstance(value, str) or not value:
        raise ScenarioError("agents", "expected a non-empty list of agent groups; "
                                      "nobody is inside the venue")
    groups: list[AgentGroup] = []
    open_names = {e.name for e in open_exits}
    for i, gv in enumerate(value):
        f = f"agents[{i}]"
        g = _obj(gv, f)
        name = str(g.get("name", f"group {i + 1}"))
        radius = _num(g.get("radius_m", 0.2), f + ".radius_m", lo=0.1, hi=0.5, unit="m")
        sp = _obj(g.get("speed_m_per_s", {}), f + ".speed_m_per_s")
        mean = _num(sp.get("mean", 1.34), f + ".speed_m_per_s.mean", lo=0.1, hi=5, unit="m/s")
        sd = _num(sp.get("sd", 0.0), f + ".speed_m_per_s.sd", lo=0, hi=2, unit="m/s")
        vmin = _num(sp.get("min", max(0.1, mean - 2 * sd)), f + ".speed_m_per_s.min",
                    lo=0.1, hi=mean, unit="m/s")
        vmax = _num(sp.get("max", mean + 2 * sd), f + ".speed_m_per_s.max", lo=mean, hi=5,
                    unit="m/s")
        speed = {"mean": mean, "sd": sd, "min": vmin, "max": vmax}
        pre = _dist(g.get("premovement_s"), f + ".premovement_s",
                    default={"distribution": "constant", "value": 0.0})
        ex = g.get("exits")
        allowed: tuple[str, ...] | None = None
        if ex is not None:
            if isinstance(ex, str):
                ex = [ex]
            for n in ex:
                if n not in exit_names:
                    raise ScenarioError(f + ".exits", f"unknown exit {n!r}; exits are "
                                        + ", ".join(exit_names))
            allowed = tuple(n for n in ex if n in open_names)
            if not allowed:
                raise ScenarioError(f + ".exits", f"all exits allowed for group {name!r} "
                                                  "are closed")
        positions = None
        spawn = None
        if "positions" in g:
            try:
                positions = np.asarray(g["positions"], dtype=float).reshape(-1, 2)
            except (TypeError, ValueError):
                raise ScenarioError(f + ".positions", "expected a list of [x, y] in metres"
                                    ) from None
            for k, (x, y) in enumerate(positions):
                p = Point(x, y)
                for ob_name, _, ob in obstacles:
                    if ob.buffer(radius).contains(p):
                        raise ScenarioError(f"{f}.positions[{k}]", f"agent at ({x:g}, {y:g}) "
                                            f"is placed in obstacle {ob_name!r}")
                if not free.contains(p):
                    raise ScenarioError(f"{f}.positions[{k}]", f"agent at ({x:g}, {y:g}) is "
                                        "outside the walkable area")
                if free.boundary.distance(p) < radius:
                    raise ScenarioError(f"{f}.positions[{k}]", f"agent at ({x:g}, {y:g}) is "
                                        f"closer than its radius {radius:g} m to a wall")
            if len(positions) > 1:
                d = np.linalg.norm(positions[:, None, :] - positions[None, :, :], axis=-1)
                np.fill_diagonal(d, np.inf)
                if d.min() < 2 * radius:
                    k = int(np.argmin(d.min(axis=1)))
                    raise ScenarioError(f"{f}.positions[{k}]", "agents overlap: centres closer "
                                        f"than {2 * radius:g} m (two radii)")
            count = len(positions)
        else:
            if "spawn" not in g:
                raise ScenarioError(f + ".spawn", "missing: give a spawn polygon (GeoJSON, "
                                                  "local metres) or explicit positions")
            sp_g = _geom(g["spawn"], f + ".spawn")
            if sp_g.geom_type not in ("Polygon", "MultiPolygon"):
                raise ScenarioError(f + ".spawn", f"expected a polygon, got {sp_g.geom_type}")
            for ob_name, _, ob in obstacles:
                overlap = sp_g.intersection(ob).area
                if overlap > 1e-6:
                    raise ScenarioError(f + ".spawn", f"spawn area of group {name!r} overlaps "
                                        f"obstacle {ob_name!r} by {overlap:.2f} m²; agents "
                                        "would be placed in an obstacle")
            outside = sp_g.difference(free).area
            if outside > 0.01 * sp_g.area:
                raise ScenarioError(f + ".spawn", f"{outside:.1f} m² of the spawn area of group"
                                    f" {name!r} lie outside the walkable area")
            spawn = sp_g.intersection(free)
            usable = spawn.area
            if "count" in g and "density_p_per_m2" in g:
                raise ScenarioError(f, "give either count or density_p_per_m2, not both")
            if "count" in g:
                c = g["count"]
                if isinstance(c, bool) or not isinstance(c, int) or c < 0:
                    raise ScenarioError(f + ".count", f"expected an integer ≥ 0, got {c!r}")
                count = c
            elif "density_p_per_m2" in g:
                dens = _num(g["density_p_per_m2"], f + ".density_p_per_m2", lo=0, unit="p/m²")
                count = int(round(dens * usable))
            else:
                raise ScenarioError(f + ".count", "missing: give count or density_p_per_m2")
            density = count / usable if usable > 0 else math.inf
            if count and density > MAX_DENSITY_P_PER_M2:
                raise ScenarioError(f + (".count" if "count" in g else ".density_p_per_m2"),
                                    f"{count} agents in {usable:.1f} m² is {density:.2f} p/m²; "
                                    f"at most {MAX_DENSITY_P_PER_M2:g} p/m² fit "
                                    f"(≤ {int(MAX_DENSITY_P_PER_M2 * usable)} agents here)")
        groups.append(AgentGroup(name, count, spawn, positions, speed, pre, allowed, radius))
    if sum(gr.count for gr in groups) == 0:
        raise ScenarioError("agents", "nobody is inside: all groups have zero agents")
    return groups


def _check_reachable(geometry: Polygon, groups: list[AgentGroup], open_exits: list[Exit]
                     ) -> None:
    """Every group must reach an allowed exit through gaps wider than an agent."""
    for i, gr in enumerate(groups):
        if gr.count == 0:
            continue
        eroded = geometry.buffer(-gr.radius_m * 0.999)
        parts = [p for p in getattr(eroded, "geoms", [eroded]) if not p.is_empty]
        allowed = [e for e in open_exits if gr.exits is None or e.name in gr.exits]
        starts = (gr.spawn if gr.spawn is not None
                  else shapely.MultiPoint([tuple(p) for p in gr.positions]))
        for part in parts:
            if not part.intersects(starts):
                continue
            if not any(part.intersects(e.stage) for e in allowed):
                raise ScenarioError(f"agents[{i}]", f"group {gr.name!r} cannot reach any "
                                    f"{'allowed ' if gr.exits else ''}exit: the walkable area "
                                    f"is cut by a gap narrower than {2 * gr.radius_m:g} m "
                                    "(agent diameter) or the door is too narrow")
