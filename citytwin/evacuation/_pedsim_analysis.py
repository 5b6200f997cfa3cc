"""Results of one run: per-exit flows, the N–t curve, PedPy grid maps and bottlenecks.

Private module; pure: arrays in, arrays and dicts out. Grids follow PedPy's orientation:
row 0 is the northern edge (largest y), column 0 the western edge (smallest x).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from scipy import ndimage
from shapely.geometry import Point

from ._pedsim_engine import RawRun
from ._pedsim_schema import Scenario


def exit_stats(sc: Scenario, raw: RawRun) -> list[dict]:
    """Persons, flow (p/s) and specific flow (p/(m·s)) through each exit."""
    out = []
    for j, e in enumerate(sc.exits):
        t = np.sort(raw.exit_time[(raw.target_exit == j) & ~np.isnan(raw.exit_time)])
        n = len(t)
        flow = (n - 1) / (t[-1] - t[0]) if n >= 2 and t[-1] > t[0] else 0.0
        out.append({
            "name": e.name, "width_m": round(e.width_m, 3), "closed": e.closed, "persons": n,
            "flow_p_per_s": round(float(flow), 4),
            "specific_flow_p_per_m_s": round(float(flow / e.width_m), 4),
            "first_exit_s": round(float(t[0]), 2) if n else None,
            "last_exit_s": round(float(t[-1]), 2) if n else None,
        })
    return out


def n_t_curve(raw: RawRun, *, step_s: float) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative persons out (total) at times 0, step_s, ... up to the end of the run."""
    t = np.sort(raw.exit_time[~np.isnan(raw.exit_time)])
    grid = np.arange(0.0, raw.end_time_s + step_s, step_s)
    return grid, np.searchsorted(t, grid, side="right")


def trajectory_frame(raw: RawRun) -> pd.DataFrame:
    """Long table (id, frame, x, y) of the sampled positions, as PedPy expects."""
    f, n = raw.x.shape
    frame = np.repeat(np.arange(f), n)
    ids = np.tile(np.arange(n), f)
    x = raw.x.ravel().astype(float)
    y = raw.y.ravel().astype(float)
    ok = ~np.isnan(x)
    return pd.DataFrame({"id": ids[ok], "frame": frame[ok], "x": x[ok], "y": y[ok]})


def grid_maps(sc: Scenario, raw: RawRun) -> dict:
    """Density (mean and peak over time), mean speed and RSET maps on a square grid (PedPy)."""
    import pedpy

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PedPy emits pandas/shapely chatter on edge cases
        df = trajectory_frame(raw)
        fps = 1.0 / sc.sample_interval_s
        area = pedpy.WalkableArea(sc.geometry)
        traj = pedpy.TrajectoryData(data=df, frame_rate=fps)
        g = sc.grid_size_m
        dens = np.asarray(pedpy.compute_density_profile(
            data=df, walkable_area=area, grid_size=g, density_method=pedpy.DensityMethod.CLASSIC))
        speed_df = pedpy.compute_individual_speed(
            traj_data=traj, frame_step=1,
            speed_calculation=pedpy.SpeedCalculation.BORDER_SINGLE_SIDED)
        merged = df.merge(speed_df, on=["id", "frame"])
        speeds = np.asarray(pedpy.compute_speed_profile(
            data=merged, walkable_area=area, grid_size=g, speed_method=pedpy.SpeedMethod.MEAN))
        rset = pedpy.compute_rset_map(traj_data=traj, walkable_area=area, grid_size=g)
        speed_mean = np.nanmean(np.where(np.isfinite(speeds), speeds, np.nan), axis=0) \
            if len(speeds) else np.zeros_like(rset)
    occupied = dens.sum(axis=0) > 0
    minx, miny, maxx, maxy = sc.geometry.bounds
    rows, cols = dens.shape[1:] if dens.ndim == 3 else rset.shape
    return {
        "grid_size_m": g,
        "origin_xy_m": [minx, maxy],  # north-west corner of cell (0, 0)
        "shape": [int(rows), int(cols)],
        "density_stack": dens,  # (frames, rows, cols) p/m², kept for bottleneck detection
        "density_mean_p_per_m2": np.where(occupied, dens.mean(axis=0), 0.0),
        "density_max_p_per_m2": dens.max(axis=0) if len(dens) else np.zeros((rows, cols)),
        "speed_mean_m_per_s": speed_mean,
        "rset_s": rset,
    }


def _longest_run(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per cell of a (frames, ...) boolean stack: longest run length, its start, its end."""
    f = mask.shape[0]
    best = np.zeros(mask.shape[1:], dtype=int)
    best_end = np.zeros(mask.shape[1:], dtype=int)
    cur = np.zeros(mask.shape[1:], dtype=int)
    for k in range(f):
        cur = np.where(mask[k], cur + 1, 0)
        better = cur > best
        best = np.where(better, cur, best)
        best_end = np.where(better, k, best_end)
    return best, best_end - best + 1, best_end


def bottlenecks(sc: Scenario, maps: dict) -> list[dict]:
    """Connected grid cells whose density stays ≥ the threshold for a sustained time.

    The density stack is smoothed over a 2 s moving window first; a cell counts when its
    longest run above ``bottleneck_density_p_per_m2`` lasts ≥ ``bottleneck_min_duration_s``.
    """
    dens = maps["density_stack"]
    if dens.ndim != 3 or len(dens) == 0:
        return []
    dt = sc.sample_interval_s
    w = max(1, int(round(2.0 / dt)))
    c = np.cumsum(np.concatenate([np.zeros((1, *dens.shape[1:])), dens]), axis=0)
    smooth = (c[w:] - c[:-w]) / w if len(dens) >= w else dens
    mask = smooth >= sc.bottleneck_density_p_per_m2
    run, start, end = _longest_run(mask)
    min_frames = max(1, int(np.ceil(sc.bottleneck_min_duration_s / dt)))
    flagged = run >= min_frames
    labels, n = ndimage.label(flagged, structure=np.ones((3, 3)))
    g = maps["grid_size_m"]
    x0, y0 = maps["origin_xy_m"]
    out = []
    for lab in range(1, n + 1):
        cells = np.argwhere(labels == lab)
        r, cc = cells[:, 0], cells[:, 1]
        xs = x0 + (cc + 0.5) * g
        ys = y0 - (r + 0.5) * g
        weight = run[r, cc].astype(float)
        cx, cy = float(np.average(xs, weights=weight)), float(np.average(ys, weights=weight))
        near = None
        best = np.inf
        for e in sc.exits:
            d = e.door.distance(Point(cx, cy))
            if not e.closed and d < best:
                best, near = d, e.name
        out.append({
            "x_m": round(cx, 2), "y_m": round(cy, 2), "cells": int(len(cells)),
            "area_m2": round(float(len(cells) * g * g), 2),
            "peak_density_p_per_m2": round(float(smooth[:, r, cc].max()), 2),
            "duration_s": round(float(run[r, cc].max() * dt), 1),
            "start_s": round(float(start[r, cc].min() * dt), 1),
            "end_s": round(float((end[r, cc].max() + w) * dt), 1),
            "nearest_exit": near,
            "distance_to_exit_m": round(float(best), 2),
            "at_exit": bool(best <= 3.0),
        })
    out.sort(key=lambda b: b["duration_s"] * b["cells"], reverse=True)
    return out
