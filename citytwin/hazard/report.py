"""Reports of an :class:`~citytwin.hazard.service.IncidentResult`: Excel, GeoJSON, KML.

This is the only module of :mod:`citytwin.hazard` that writes files. Files are written to a
temporary file in the target directory and renamed into place, so a failure never leaves a
half-written report.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import numpy as np
from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.styles import Font, PatternFill
from openpyxl.utils import get_column_letter

from citytwin.hazard.service import ADVICE_TEXT, IncidentResult

_ADVICE_FILL = {
    "consider_evacuation": "FFC7CE",
    "shelter": "FFE699",
    "inform": "DDEBF7",
}


def _atomic_write(path: str | os.PathLike[str], write: Callable[[IO[bytes]], None]) -> Path:
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return target


def _cell(v: Any) -> Any:
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and not np.isfinite(v):
        return None
    if isinstance(v, list | dict | tuple):
        return json.dumps(v, ensure_ascii=False, default=str)
    return v


def build_workbook(result: IncidentResult) -> Workbook:
    """The report as a write-only openpyxl Workbook (sheets Summary, Affected buildings, Zones)."""
    wb = Workbook(write_only=True)
    ws = wb.create_sheet("Summary")
    ws.column_dimensions["A"].width = 34
    ws.column_dimensions["B"].width = 60
    inc, rel, w, m = result.incident, result.incident["release"], result.weather, result.model

    def styled(value: Any, font: Font) -> WriteOnlyCell:
        c = WriteOnlyCell(ws, value=value)
        c.font = font
        return c

    bold, h1, h2 = Font(bold=True), Font(bold=True, size=14), Font(bold=True, size=12)

    def section(title: str) -> None:
        ws.append([])
        ws.append([styled(title, h2)])

    ws.append([styled("citytwin incident report", h1)])
    ws.append(["schema version", result.schema_version])
    section("Incident")
    for k in ("substance", "at", "source_lon", "source_lat"):
        ws.append([k, _cell(inc[k])])
    section("Release")
    for k, v in rel.items():
        ws.append([k, _cell(v)])
    section("Levels of concern")
    ws.append([styled(h, bold) for h in ("level", "name", "mg/m3", "ppm", "source")])
    for lv in result.levels:
        srcs = "; ".join(s["source"] for s in lv["species"])
        ws.append([lv["level"], lv["name"], _cell(lv["mg_m3"]), _cell(lv["ppm"]), srcs])
    section("Weather")
    for k, v in w.items():
        ws.append([k, _cell(v)])
    section("Model")
    ws.append(["name", m["name"]])
    ws.append(["version", m["version"]])
    ws.append(["description", m["description"]])
    for k, v in m["parameters"].items():
        ws.append([k, _cell(v)])
    section("Counts (buildings / occupants)")
    ws.append([styled(h, bold) for h in ("group", "vulnerable", "hazardous", "ordinary", "total")])
    c = result.counts
    rows = [(f"zone {k}", v) for k, v in c["zones"].items()]
    rows += [(f"possibly affected {k}", v) for k, v in c["possibly_affected"].items()]
    rows += [(f"advice: {k}", v) for k, v in c["advice"].items()]
    rows += [("total", c["total"])]
    for name, blk in rows:
        ws.append(
            [name]
            + [
                f"{blk[x]['buildings']} / {blk[x]['occupants']:g}"
                for x in ("vulnerable", "hazardous", "ordinary", "total")
            ]
        )
    section("Warnings")
    for s in result.warnings or ["none"]:
        ws.append([s])
    section("Assumptions and limitations")
    for s in result.limitations:
        ws.append([s])

    # affected buildings: by advice, then vulnerability
    wa = wb.create_sheet("Affected buildings")
    df = result.affected
    if len(df):
        adv = df["advice"].map({"consider_evacuation": 0, "shelter": 1, "inform": 2})
        cls = df["safety_class"].map({"vulnerable": 0, "hazardous": 1}).fillna(2)
        df = (
            df.assign(_a=adv, _c=cls)
            .sort_values(
                ["_a", "_c", "zone_level", "distance_m"], ascending=[True, True, False, True]
            )
            .drop(columns=["_a", "_c"])
        )
    cols = list(df.columns) + ["advice_text"]
    for i, cname in enumerate(cols, start=1):
        wa.column_dimensions[get_column_letter(i)].width = max(10, min(40, len(cname) + 2))
    wa.freeze_panes = "A2"
    wa.append([styled(h, bold) for h in cols])
    adv_col = cols.index("advice")
    fills = {a: PatternFill("solid", start_color=c, end_color=c) for a, c in _ADVICE_FILL.items()}
    obj = df.astype(object).where(df.notna(), None) if len(df) else df
    for rec in obj.itertuples(index=False, name=None):
        row: list[Any] = [_cell(v) for v in rec]
        a = rec[adv_col]
        row.append(ADVICE_TEXT.get(a, ""))
        if a in fills:
            cell = WriteOnlyCell(wa, value=a)
            cell.fill = fills[a]
            row[adv_col] = cell
        wa.append(row)

    wz = wb.create_sheet("Zones")
    wz.append(
        [
            styled(h, bold)
            for h in (
                "kind",
                "level",
                "name",
                "threshold_mg_m3",
                "threshold_ppm",
                "downwind_extent_m",
                "area_km2",
                "geometry_geojson",
            )
        ]
    )
    for f in result.zones["features"]:
        p = f["properties"]
        gj = json.dumps(f["geometry"])
        if len(gj) >= 32000:  # Excel's cell limit is 32,767 characters
            gj = gj[: 32000 - 20] + " …(truncated)"
        if p.get("kind") == "source":
            wz.append(["source", None, p.get("substance"), None, None, None, None, gj])
            continue
        wz.append(
            [
                p["kind"],
                p["level"],
                p["name"],
                _cell(p["threshold_mg_m3"]),
                _cell(p["threshold_ppm"]),
                p["downwind_extent_m"],
                p["area_km2"],
                gj,
            ]
        )
    return wb


def write_xlsx(result: IncidentResult, path_or_buffer: str | os.PathLike[str] | IO[bytes]) -> Any:
    """Write the Excel report to a path (atomically) or a binary buffer.

    Parameters
    ----------
    result : IncidentResult
    path_or_buffer : path or binary file-like
        A path is written via a temporary file and renamed; a buffer is written directly
        (the workbook is fully built in memory first).

    Returns
    -------
    Path or the buffer
    """
    wb = build_workbook(result)
    if hasattr(path_or_buffer, "write"):
        bio = io.BytesIO()
        wb.save(bio)
        path_or_buffer.write(bio.getvalue())  # type: ignore[union-attr]
        return path_or_buffer
    return _atomic_write(path_or_buffer, lambda fh: wb.save(fh))


def to_geojson(result: IncidentResult, *, include_buildings: bool = False) -> dict[str, Any]:
    """Zones (and optionally affected buildings as points) as a GeoJSON FeatureCollection."""
    fc = {"type": "FeatureCollection", "features": list(result.zones["features"])}
    if include_buildings:
        for rec in result.affected_records():
            fc["features"].append(
                {
                    "type": "Feature",
                    "geometry": {"type": "Point", "coordinates": [rec["lon"], rec["lat"]]},
                    "properties": {k: v for k, v in rec.items() if k not in ("lon", "lat")}
                    | {"kind": "building"},
                }
            )
    return fc


def write_geojson(result: IncidentResult, path: str | os.PathLike[str], **kw: Any) -> Path:
    """Write :func:`to_geojson` to ``path`` atomically."""
    data = json.dumps(to_geojson(result, **kw), ensure_ascii=False).encode("utf-8")
    return _atomic_write(path, lambda fh: fh.write(data))


def _kml_colour(hex_rgb: str, alpha: int) -> str:
    r, g, b = hex_rgb[1:3], hex_rgb[3:5], hex_rgb[5:7]
    return f"{alpha:02x}{b}{g}{r}"


def to_kml(result: IncidentResult) -> str:
    """Zones as a KML document string (simplekml)."""
    import simplekml

    kml = simplekml.Kml(name=f"citytwin: {result.incident['substance']}")
    for f in result.zones["features"]:
        p, g = f["properties"], f["geometry"]
        if p.get("kind") == "source":
            pt = kml.newpoint(name="source", coords=[tuple(g["coordinates"])])
            pt.description = str(p.get("substance"))
            continue
        polys = [g["coordinates"]] if g["type"] == "Polygon" else g["coordinates"]
        folder = kml.newfolder(name=f"{p['kind']} level {p['level']}: {p['name']}")
        for rings in polys:
            poly = folder.newpolygon(name=p["name"])
            poly.outerboundaryis = [tuple(c) for c in rings[0]]
            if len(rings) > 1:
                poly.innerboundaryis = [[tuple(c) for c in r] for r in rings[1:]]
            alpha = 0x80 if p["kind"] == "zone" else 0x30
            poly.style.polystyle.color = _kml_colour(p["colour"], alpha)
            poly.style.linestyle.color = _kml_colour(p["colour"], 0xFF)
            poly.description = (
                f"{p['kind']} — threshold {p['threshold_mg_m3']:.4g} mg/m3; "
                f"downwind extent {p['downwind_extent_m']:.0f} m"
            )
    return kml.kml()


def write_kml(result: IncidentResult, path: str | os.PathLike[str]) -> Path:
    """Write :func:`to_kml` to ``path`` atomically."""
    data = to_kml(result).encode("utf-8")
    return _atomic_write(path, lambda fh: fh.write(data))
