"""Hazard commands: ``citytwin plume`` (zones, affected buildings, reports) and
``citytwin validate plume`` (Prairie Grass scores). A thin layer over :mod:`citytwin.hazard`.

Errors name the field and exit with code 2; no report file is written then.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import typer

from citytwin.hazard.errors import HazardInputError


def _fail(message: str, code: int = 2) -> None:
    typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
    raise typer.Exit(code)


def _field_fail(exc: HazardInputError) -> None:
    names = {
        "source_lon": "--lon",
        "source_lat": "--lat",
        "source_lon/source_lat": "--lon/--lat",
        "wind_speed_m_s": "--wind-speed",
        "wind_from_deg": "--wind-from",
        "rate_g_s": "--rate-g-s",
        "duration_min": "--duration-min",
        "heat_mw": "--heat-mw",
        "substance": "--substance",
        "sigma_theta_deg": "--sigma-theta",
    }
    opt = names.get(exc.field)
    where = f"{exc.field} ({opt})" if opt else exc.field
    _fail(f"{where}: {exc.message}")


def _parse_at(at: str | None) -> datetime | None:
    if at is None:
        return None
    try:
        t = datetime.fromisoformat(at)
    except ValueError:
        raise HazardInputError("at", f"not an ISO 8601 time: {at!r}") from None
    return t


def _summary(
    result: Any, wind: dict[str, Any], city: dict[str, Any], files: dict[str, str]
) -> dict[str, Any]:
    recs = result.affected_records(limit=50)
    return {
        "city": city["name"],
        "incident": result.incident,
        "weather": result.weather,
        "wind": {k: v for k, v in wind.items() if k != "values"},
        "model": result.model,
        "levels": [{k: v for k, v in lv.items() if k != "species"} for lv in result.levels],
        "counts": result.counts,
        "affected_total": int(len(result.affected)),
        "affected_first": recs,
        "warnings": result.warnings,
        "limitations": result.limitations,
        "files": files,
    }


def plume(
    lat: float = typer.Option(..., "--lat", help="source latitude, WGS84 degrees"),
    lon: float = typer.Option(..., "--lon", help="source longitude, WGS84 degrees"),
    substance: str = typer.Option(
        ..., "--substance", help='substance name, alias or CAS number, or "fire"'
    ),
    rate_g_s: float | None = typer.Option(
        None, "--rate-g-s", help="release rate, g/s (fire: burning rate, optional)"
    ),
    duration_min: float | None = typer.Option(
        None, "--duration-min", help="release duration, min (≤ 60); default continuous"
    ),
    heat_mw: float | None = typer.Option(None, "--heat-mw", help="fire: heat release rate, MW"),
    wind_speed: float | None = typer.Option(
        None, "--wind-speed", help="wind speed at 10 m, m/s (default: live weather stream)"
    ),
    wind_from: float | None = typer.Option(
        None, "--wind-from", help="direction the wind comes from, degrees from north"
    ),
    sigma_theta: float | None = typer.Option(
        None, "--sigma-theta", help="σθ of the wind direction, degrees"
    ),
    cloud_cover: float | None = typer.Option(
        None, "--cloud-cover", help="cloud cover, octas (0–8)"
    ),
    at: str | None = typer.Option(None, "--at", help="incident time, ISO 8601 (default: now)"),
    city: str | None = typer.Option(
        None, "--city", help="city name (default: the first imported city)"
    ),
    local_tz: str | None = typer.Option(
        None, "--local-tz", help="IANA time zone for day/night occupancy"
    ),
    xlsx: Path | None = typer.Option(None, "--xlsx", help="write the Excel report here"),
    geojson: Path | None = typer.Option(
        None, "--geojson", help="write the zones (and affected buildings) as GeoJSON"
    ),
    kml: Path | None = typer.Option(None, "--kml", help="write the zones as KML"),
    as_json: bool = typer.Option(False, "--json", help="print a JSON summary to standard output"),
) -> None:
    """Threat zones and affected buildings of a toxic release or a fire, with the report."""
    from citytwin.city import service as city_service
    from citytwin.cli import _engine, _settings
    from citytwin.hazard import assess_incident, prepare_buildings, write_xlsx
    from citytwin.hazard.report import write_geojson, write_kml
    from citytwin.hazard.weather import wind_inputs

    if xlsx is None and geojson is None and kml is None and not as_json:
        _fail("give at least one output: --xlsx FILE, --geojson FILE, --kml FILE or --json")
    engine = _engine(_settings())
    try:
        with engine.connect() as conn:
            try:
                c = city_service.resolve_city(conn, city)
            except city_service.NotFound as exc:
                _fail(f"city (--city): {exc}")
                return
            gdf = city_service.buildings_frame(conn, city_id=c["id"])
            if len(gdf):
                name = gdf["name"].where(gdf["name"].notna() & (gdf["name"] != ""), gdf["address"])
                gdf = gdf.assign(name=name.fillna(""))
            wind_kw, wind = wind_inputs(
                conn,
                city_id=c["id"],
                wind_speed_m_s=wind_speed,
                wind_from_deg=wind_from,
                sigma_theta_deg=sigma_theta,
                cloud_cover_octas=cloud_cover,
            )
        result = assess_incident(
            buildings=prepare_buildings(gdf),
            source_lon=lon,
            source_lat=lat,
            substance=substance,
            rate_g_s=rate_g_s,
            duration_min=duration_min,
            heat_mw=heat_mw,
            at=_parse_at(at) or datetime.now(UTC),
            local_tz=local_tz,
            **wind_kw,
        )
    except HazardInputError as exc:
        _field_fail(exc)
        return
    result.weather["wind"] = {k: v for k, v in wind.items() if k != "values"}
    if wind.get("stale"):
        result.weather["stale"] = True
        result.warnings.insert(
            0, f"Live wind is stale: observed {(wind.get('age_s') or 0) / 60:.0f} min ago."
        )
    if wind.get("simulated"):
        result.warnings.append("The live wind comes from a SIMULATED weather stream.")
    files: dict[str, str] = {}
    try:
        if xlsx is not None:
            files["xlsx"] = str(write_xlsx(result, xlsx))
        if geojson is not None:
            files["geojson"] = str(write_geojson(result, geojson, include_buildings=True))
        if kml is not None:
            files["kml"] = str(write_kml(result, kml))
    except OSError as exc:
        _fail(f"could not write the report: {exc}", code=1)
    if as_json:
        print(json.dumps(_summary(result, wind, c, files), ensure_ascii=False, default=str))
        return
    n = len(result.affected)
    typer.echo(
        f"{result.incident['substance']} at ({lon:.5f}, {lat:.5f}) in {c['name']}: "
        f"wind {result.weather['wind_speed_m_s']:g} m/s from {result.weather['wind_from_deg']:g}° "
        f"({wind['source']}), class {result.weather['stability_class']}; {n} buildings affected"
    )
    for adv, blk in result.counts["advice"].items():
        typer.echo(
            f"  {adv:<20} {blk['total']['buildings']:>6} buildings, "
            f"≈{blk['total']['occupants']:,.0f} people "
            f"({blk['vulnerable']['buildings']} vulnerable)"
        )
    for w in result.warnings:
        typer.secho(f"  warning: {w}", fg=typer.colors.YELLOW, err=True)
    for kind, path in files.items():
        typer.echo(f"  {kind}: {path}")


validate_app = typer.Typer(help="Score the models against reference data.", no_args_is_help=True)


@validate_app.command("plume")
def validate_plume(
    prairie_grass: Path = typer.Option(
        ..., "--prairie-grass", help="directory with PGARCS.txt and modelParamList.txt"
    ),
    scheme: str = typer.Option(
        "briggs_rural", "--scheme", help="briggs_rural | briggs_urban | isc3 | tno"
    ),
    class_from: str = typer.Option("obukhov", "--class-from", help="obukhov | sigma_theta"),
    as_json: bool = typer.Option(False, "--json", help="print the scores as JSON"),
) -> None:
    """The plume model on Project Prairie Grass: FAC2, FB, NMSE, MG, VG of arc maxima and CWIC."""
    from citytwin.hazard import validate_prairie_grass

    if not prairie_grass.is_dir():
        _fail(f"prairie_grass (--prairie-grass): not a directory: {prairie_grass}")
    try:
        res = validate_prairie_grass(prairie_grass, scheme=scheme, class_from=class_from)
    except FileNotFoundError as exc:
        _fail(f"prairie_grass (--prairie-grass): {exc}")
        return
    except (ValueError, KeyError) as exc:
        _fail(f"prairie_grass (--prairie-grass): could not score: {exc}")
        return
    if as_json:
        print(json.dumps(res, default=str))
        return
    typer.echo(
        f"Prairie Grass: {res['runs']} runs, {res.get('arcs')} arcs "
        f"({scheme}, class from {class_from})"
    )
    for part in ("arcmax", "cwic"):
        m = res[part]
        typer.echo(
            f"  {part:<7} FAC2 {m['fac2']:.2f}  FB {m['fb']:+.3f}  NMSE {m['nmse']:.2f}  "
            f"MG {m['mg']:.2f}  VG {m['vg']:.2f}"
        )


def _validate_group(app: typer.Typer) -> typer.Typer:
    """The shared ``validate`` group (other domains may have created it already)."""
    for info in app.registered_groups:
        if info.name == "validate" and info.typer_instance is not None:
            return info.typer_instance
    app.add_typer(validate_app, name="validate")
    return validate_app


def register(app: typer.Typer) -> None:
    """Add ``plume`` and ``validate plume`` to the citytwin command line."""
    app.command("plume")(plume)
    group = _validate_group(app)
    if group is not validate_app:
        group.command("plume")(validate_plume)
