"""Model validation on Project Prairie Grass (1956) field data.

Reading is separated from scoring: :func:`parse_pgarcs` and :func:`parse_model_params`
parse text, :func:`score` compares arrays, :func:`evaluate` runs the model, and
:func:`validate_prairie_grass` is the thin file-reading edge used by the CLI.

Model set-up (textbook, the same for every run, nothing tuned per run): continuous ground
release (0.46 m) seen at 1.5 m; wind speed = the measured 2-m speed; Pasquill class from the
Monin–Obukhov length with Golder (1972) for z0 = 0.006 m (short prairie grass, Barad 1958);
Briggs rural σy, σz; ground reflection; mixing lid where the mixing height is known; modelled
arc maximum = plume centreline. Metrics after Chang & Hanna (2004), *Meteorol. Atmos. Phys.*
87:167–196: FAC2, FB = (Ō−P̄)/(½(Ō+P̄)), NMSE, MG = exp(⟨ln O⟩−⟨ln P⟩),
VG = exp(⟨(ln O − ln P)²⟩).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from citytwin.hazard.gaussian import GaussianPlume
from citytwin.hazard.stability import class_from_obukhov, class_from_sigma_theta

PRAIRIE_GRASS_Z0_M = 0.006


def _fields(line: str) -> list[str]:
    return [f.strip().strip("'") for f in line.replace(",", " ").split()]


def parse_pgarcs(text: str) -> list[dict[str, Any]]:
    """Parse PGARCS.txt text into one dict per run and arc.

    Each dict has ``run, arc, date, time, distance_m, q_g_s, release_height_m,
    receptor_height_m, azimuth_deg, concentration_mg_m3`` (arrays; -9 = missing kept).
    """
    lines = [ln for ln in text.splitlines() if ln.strip()]
    out: list[dict[str, Any]] = []
    i = 0
    while i < len(lines):
        h1 = _fields(lines[i])
        h2 = _fields(lines[i + 1])
        nrec = int(h2[0])
        rows = np.array([[float(v) for v in lines[i + 2 + j].split()[:4]] for j in range(nrec)])
        out.append(
            {
                "run": int(h1[0]),
                "arc": int(h1[1]),
                "date": h1[2],
                "time": h1[3],
                "distance_m": float(h1[4]),
                "q_g_s": float(h2[7]),
                "release_height_m": float(h2[8]),
                "receptor_height_m": float(h2[9]),
                "azimuth_deg": rows[:, 0],
                "concentration_mg_m3": rows[:, 3],
            }
        )
        i += 2 + nrec
    return out


def parse_model_params(text: str) -> dict[int, dict[str, float | None]]:
    """Parse modelParamList.txt text into ``{run: {...}}`` (mixing height None if -999)."""
    out: dict[int, dict[str, float | None]] = {}
    for ln in text.splitlines():
        f = ln.split()
        if len(f) < 10:
            continue
        zi = float(f[3])
        out[int(f[0])] = {
            "obukhov_length_m": float(f[1]),
            "u_star_m_s": float(f[2]),
            "mixing_height_m": None if zi <= 0 else zi,
            "wind_from_deg": float(f[4]),
            "sigma_theta_deg": float(f[8]),
            "wind_speed_m_s": float(f[9]),
        }
    return out


def observed_arc(arc: dict[str, Any]) -> tuple[float, float]:
    """Observed arc maximum (mg/m³) and crosswind integral (mg/m²) of one arc."""
    c = np.asarray(arc["concentration_mg_m3"], dtype=float)
    az = np.asarray(arc["azimuth_deg"], dtype=float)
    ok = c >= 0
    if ok.sum() < 2:
        return math.nan, math.nan
    c, az = c[ok], az[ok]
    th = np.unwrap(np.radians(az))
    order = np.argsort(th)
    th, c = th[order], c[order]
    cw = float(np.sum(0.5 * (c[1:] + c[:-1]) * np.diff(th)) * arc["distance_m"])
    return float(c.max()), cw


def score(observed: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    """Chang & Hanna (2004) performance measures of paired values (> 0 only).

    Examples
    --------
    >>> s = score(np.array([1.0, 2.0, 4.0]), np.array([1.0, 2.0, 4.0]))
    >>> s["fac2"], s["fb"], s["mg"], s["vg"]
    (1.0, 0.0, 1.0, 1.0)
    """
    o = np.asarray(observed, dtype=float)
    p = np.asarray(predicted, dtype=float)
    ok = np.isfinite(o) & np.isfinite(p) & (o > 0) & (p > 0)
    o, p = o[ok], p[ok]
    mo, mp = o.mean(), p.mean()
    ratio = p / o
    lo, lp = np.log(o), np.log(p)
    return {
        "n": int(o.size),
        "fac2": float(np.mean((ratio >= 0.5) & (ratio <= 2.0))),
        "fb": float((mo - mp) / (0.5 * (mo + mp))),
        "nmse": float(np.mean((o - p) ** 2) / (mo * mp)),
        "mg": float(np.exp(np.mean(lo) - np.mean(lp))),
        "vg": float(np.exp(np.mean((lo - lp) ** 2))),
    }


def evaluate(
    arcs: list[dict[str, Any]],
    params: dict[int, dict[str, float | None]],
    *,
    scheme: str = "briggs_rural",
    class_from: str = "obukhov",
    roughness_m: float = PRAIRIE_GRASS_Z0_M,
    use_mixing_height: bool = True,
) -> dict[str, Any]:
    """Run the model for every arc with meteorology and score arc maxima and CWIC.

    Returns
    -------
    dict
        ``{"runs": n, "arcs": n, "arcmax": {...}, "cwic": {...}, "config": {...},
        "pairs": [...]}``.
    """
    pairs = []
    for arc in arcs:
        met = params.get(arc["run"])
        if met is None:
            continue
        o_max, o_cw = observed_arc(arc)
        if not (o_max > 0):
            continue
        if class_from == "obukhov":
            cls = class_from_obukhov(
                obukhov_length_m=met["obukhov_length_m"], roughness_m=roughness_m
            )
        else:
            cls = class_from_sigma_theta(sigma_theta_deg=met["sigma_theta_deg"])
        plume = GaussianPlume(
            q_g_s=arc["q_g_s"],
            u_m_s=float(met["wind_speed_m_s"]),
            stability=cls,
            scheme=scheme,
            release_height_m=arc["release_height_m"],
            mixing_height_m=met["mixing_height_m"] if use_mixing_height else None,
        )
        x = np.array([arc["distance_m"]])
        c = float(plume.steady(x_m=x, y_m=0.0, z_m=arc["receptor_height_m"])[0]) * 1000.0
        sy, _ = plume.sigmas(x)
        cw = c * math.sqrt(2.0 * math.pi) * float(sy[0])
        pairs.append(
            {
                "run": arc["run"],
                "distance_m": arc["distance_m"],
                "class": cls,
                "obs_max_mg_m3": o_max,
                "mod_max_mg_m3": c,
                "obs_cwic_mg_m2": o_cw,
                "mod_cwic_mg_m2": cw,
            }
        )
    o = np.array([p["obs_max_mg_m3"] for p in pairs])
    m = np.array([p["mod_max_mg_m3"] for p in pairs])
    ocw = np.array([p["obs_cwic_mg_m2"] for p in pairs])
    mcw = np.array([p["mod_cwic_mg_m2"] for p in pairs])
    return {
        "runs": len({p["run"] for p in pairs}),
        "arcs": len(pairs),
        "arcmax": score(o, m),
        "cwic": score(ocw, mcw),
        "config": {
            "scheme": scheme,
            "class_from": class_from,
            "roughness_m": roughness_m,
            "use_mixing_height": use_mixing_height,
            "wind": "measured at 2 m",
            "source": "Prairie Grass (Barad 1958), ASTM D6589 layout",
        },
        "pairs": pairs,
    }


def validate_prairie_grass(
    directory: str | Path,
    *,
    scheme: str = "briggs_rural",
    class_from: str = "obukhov",
    include_pairs: bool = False,
) -> dict[str, Any]:
    """Score the plume model on Prairie Grass files in ``directory``.

    Reads ``PGARCS.txt`` and ``modelParamList.txt``.

    Returns
    -------
    dict
        ``{"runs": …, "arcs": …, "arcmax": {"fac2", "fb", "nmse", "mg", "vg", "n"},
        "cwic": {…}, "config": {…}}`` (plus ``"pairs"`` when ``include_pairs``).

    Raises
    ------
    FileNotFoundError
        When a file is missing.
    """
    d = Path(directory)
    arcs = parse_pgarcs((d / "PGARCS.txt").read_text(encoding="utf-8", errors="replace"))
    params = parse_model_params((d / "modelParamList.txt").read_text(encoding="utf-8"))
    res = evaluate(arcs, params, scheme=scheme, class_from=class_from)
    if not include_pairs:
        res.pop("pairs")
    return res
