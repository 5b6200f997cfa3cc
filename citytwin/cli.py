"""The ``citytwin`` command line: a thin layer over the same services as the API."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer

from citytwin.settings import Settings, SettingsError, load_settings

app = typer.Typer(
    help="citytwin: a digital twin for the safety of cities.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
user_app = typer.Typer(help="Manage users and their roles.", no_args_is_help=True)
app.add_typer(user_app, name="user")


def _fail(message: str, code: int = 2) -> None:
    typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
    raise typer.Exit(code)


def _settings() -> Settings:
    try:
        return load_settings()
    except SettingsError as exc:
        _fail(str(exc))
        raise  # unreachable


def _engine(settings: Settings):
    from citytwin.store import make_engine, migrate

    engine = make_engine(settings.resolved_database_url())
    migrate(engine)
    return engine


def _step(msg: str) -> None:
    typer.secho(f"… {msg}", err=True, fg=typer.colors.CYAN)


@app.command("import")
def import_city(
    osm: Optional[Path] = typer.Option(None, "--osm", help="OpenStreetMap .osm.pbf extract"),
    geojson: Optional[Path] = typer.Option(None, "--geojson", help="buildings as a GeoJSON FeatureCollection (EPSG:4326)"),
    bbox: Optional[str] = typer.Option(None, "--bbox", help="clip to W,S,E,N in degrees"),
    name: Optional[str] = typer.Option(None, "--name", help="city name (default: the file name)"),
    as_json: bool = typer.Option(False, "--json", help="print the import report as JSON"),
) -> None:
    """Import a city (buildings, walk/drive networks, zones) in one transaction."""
    from citytwin.city import service
    from citytwin.city.osm import CityImportError, default_pbf, parse_bbox

    if osm is not None and geojson is not None:
        _fail("give either --osm or --geojson, not both")
    settings = _settings()
    engine = _engine(settings)
    try:
        if geojson is not None:
            report = service.import_buildings_geojson(engine, path=geojson, name=name or geojson.stem)
        else:
            path = osm or default_pbf()
            box = parse_bbox(bbox) if bbox else None
            report = service.import_osm(engine, path=path, name=name or path.name.split(".")[0], bbox=box, progress=_step)
    except (CityImportError, ValueError) as exc:
        _fail(f"{exc} (the database was left unchanged)")
        return
    if as_json:
        print(json.dumps({"city_id": report.city_id, "name": report.name, "seconds": round(report.seconds, 3), **report.stats}))
    else:
        typer.echo(f"imported {report.name!r} in {report.seconds:.1f} s: {report.stats}")


@user_app.command("add")
def user_add(
    name: str = typer.Argument(..., help="user name"),
    role: str = typer.Option("viewer", "--role", help="viewer | analyst | operator | admin"),
    password_stdin: bool = typer.Option(False, "--password-stdin", help="read the password from standard input"),
) -> None:
    """Add a user; the password is read from a prompt (or stdin), never from the command line."""
    from citytwin import security

    try:
        security.role_rank(role)
    except security.UserError as exc:
        _fail(str(exc))
    if password_stdin or not sys.stdin.isatty():
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = typer.prompt("password", hide_input=True, confirmation_prompt=True)
    engine = _engine(_settings())
    try:
        with engine.begin() as conn:
            uid = security.create_user(conn, name=name, password=password, role=role)
    except security.UserError as exc:
        _fail(str(exc))
        return
    typer.echo(f"user {name!r} created with role {role} (id {uid})")


@user_app.command("list")
def user_list() -> None:
    """List users and roles (never passwords)."""
    from citytwin import security

    engine = _engine(_settings())
    with engine.connect() as conn:
        for u in security.list_users(conn):
            typer.echo(f"{u['id']:>4}  {u['name']:<24} {u['role']}")


@app.command()
def serve(
    host: str = typer.Option("127.0.0.1", "--host", help="interface to listen on"),
    port: int = typer.Option(8000, "--port", help="TCP port"),
) -> None:
    """Start the HTTP API and dashboard."""
    import uvicorn

    from citytwin.api import create_app

    from citytwin.api.app import freeze_startup_heap

    settings = _settings()
    engine = _engine(settings)
    api = create_app(settings, engine=engine)
    freeze_startup_heap()
    uvicorn.run(api, host=host, port=port, log_level="info")


def ensure_demo(settings: Settings) -> dict:
    """Import the default city and create the demo admin if absent; returns what was done."""
    import sqlalchemy as sa

    from citytwin import security
    from citytwin.city import service
    from citytwin.city.osm import default_pbf
    from citytwin.store.schema import cities, users

    engine = _engine(settings)
    done: dict = {"engine": engine}
    with engine.connect() as conn:
        has_city = conn.execute(sa.select(cities.c.id).limit(1)).first() is not None
        has_admin = conn.execute(sa.select(users.c.id).where(users.c.role == "admin").limit(1)).first() is not None
    if not has_city:
        rep = service.import_osm(engine, path=default_pbf(), name="Helsinki", progress=_step)
        done["import"] = rep
    if not has_admin:
        password = security.generate_password()
        with engine.begin() as conn:
            security.create_user(conn, name="admin", password=password, role="admin")
        done["admin_password"] = password
    return done


@app.command()
def demo(
    host: str = typer.Option("127.0.0.1", "--host", help="interface to listen on"),
    port: int = typer.Option(8000, "--port", help="TCP port"),
    no_serve: bool = typer.Option(False, "--no-serve", help="prepare the demo and exit"),
    speed: float = typer.Option(60.0, "--speed", min=1.0, help="clock speed of the simulated feeds (60 = an hour a minute); replayed counts stay in real time"),
) -> None:
    """Prepare the demo twin (Helsinki centre, an admin user) and start it with its live feeds."""
    settings = _settings()
    done = ensure_demo(settings)
    if "import" in done:
        rep = done["import"]
        typer.echo(f"imported the Helsinki centre in {rep.seconds:.1f} s: {rep.stats}")
    if "admin_password" in done:
        bar = "=" * 72
        typer.secho(bar, fg=typer.colors.YELLOW)
        typer.secho("  Demo administrator created. This password is shown ONCE and stored", fg=typer.colors.YELLOW)
        typer.secho("  nowhere in clear; write it down now.", fg=typer.colors.YELLOW)
        typer.secho(f"    user: admin    password: {done['admin_password']}", bold=True)
        typer.secho(bar, fg=typer.colors.YELLOW)
    else:
        typer.echo("an administrator exists already; add users with `citytwin user add NAME --role ROLE`")
    if no_serve:
        return
    import uvicorn

    from citytwin.api import create_app
    from citytwin.sensors.demo import start_demo_feeds

    typer.echo(
        "starting the live feeds: real Auckland pedestrian counts REPLAYED onto the city's zones in "
        "real time on the city's clock (six weeks of history at once), and SIMULATED parking, "
        f"traffic, shared vehicles and weather at {speed:g}x"
    )
    feeds = start_demo_feeds(settings=settings, engine=done["engine"], speed=speed)
    typer.echo(f"serving the twin at http://{host}:{port}/ (API docs at /docs)")
    from citytwin.api.app import freeze_startup_heap

    api = create_app(settings, engine=done["engine"])
    freeze_startup_heap()
    try:
        uvicorn.run(api, host=host, port=port, log_level="info")
    finally:
        feeds.stop()


#: Domain command modules; each defines ``register(app: typer.Typer)``.
DOMAIN_CLIS = (
    "citytwin.crowd.cli",
    "citytwin.hazard.cli",
    "citytwin.evacuation.cli",
)


def _register_domains() -> None:
    import importlib

    for name in DOMAIN_CLIS:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name and name.startswith(exc.name):
                continue  # that domain is not installed in this build
            raise
        module.register(app)


def _register_sensors() -> None:
    try:
        from citytwin.sensors import cli as sensors_cli
    except ModuleNotFoundError as exc:
        if exc.name not in ("citytwin.sensors", "citytwin.sensors.cli"):
            raise
        return
    app.add_typer(sensors_cli.key_app, name="key", help="Manage machine API keys scoped to Datastreams.")
    app.command("replay")(sensors_cli.replay_command)
    if hasattr(sensors_cli, "demo_feeds_command"):
        app.command("demo-feeds")(sensors_cli.demo_feeds_command)


_register_sensors()
_register_domains()


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
