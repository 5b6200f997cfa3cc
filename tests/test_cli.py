"""The command line: every command has --help; bad input exits non-zero naming the problem."""

import pytest
import sqlalchemy as sa
from typer.main import get_command
from typer.testing import CliRunner

from citytwin.cli import app

runner = CliRunner()


def _commands(group, prefix=()):
    for name, cmd in group.commands.items():
        path = (*prefix, name)
        yield path
        if hasattr(cmd, "commands"):
            yield from _commands(cmd, path)


def test_every_command_has_help():
    root = get_command(app)
    paths = list(_commands(root))
    assert ("import",) in paths and ("user", "add") in paths and ("serve",) in paths
    for path in paths:
        r = runner.invoke(app, [*path, "--help"])
        assert r.exit_code == 0, (path, r.output)
        assert "Usage" in r.output


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("CITYTWIN_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("CITYTWIN_DATABASE_URL", raising=False)
    monkeypatch.setenv("CITYTWIN_SECRET_KEY", "cli-test-secret-" + "q" * 32)
    return tmp_path


def test_user_add_reads_password_from_stdin(env):
    r = runner.invoke(app, ["user", "add", "olga", "--role", "operator"], input="olga-password-1234\n")
    assert r.exit_code == 0, r.output
    from citytwin import security
    from citytwin.store import make_engine

    engine = make_engine(f"sqlite:///{env / 'citytwin.sqlite'}")
    with engine.connect() as conn:
        assert security.authenticate(conn, name="olga", password="olga-password-1234")["role"] == "operator"
        h = conn.execute(sa.text("SELECT password_hash FROM users")).scalar()
    assert "olga-password-1234" not in h


def test_unknown_role_is_refused(env):
    r = runner.invoke(app, ["user", "add", "x1", "--role", "superuser"], input="long-enough-password\n")
    assert r.exit_code == 2
    assert "unknown role" in r.output and "viewer" in r.output


def test_example_secret_is_refused(env, monkeypatch):
    monkeypatch.setenv("CITYTWIN_SECRET_KEY", "changeme")
    r = runner.invoke(app, ["user", "list"])
    assert r.exit_code == 2
    assert "example value" in r.output


def test_import_missing_and_empty_files(env):
    r = runner.invoke(app, ["import", "--osm", str(env / "nope.osm.pbf")])
    assert r.exit_code == 2 and "not found" in r.output
    empty = env / "empty.osm.pbf"
    empty.write_bytes(b"")
    r = runner.invoke(app, ["import", "--osm", str(empty)])
    assert r.exit_code == 2 and "empty" in r.output and "unchanged" in r.output


def test_import_bbox_json(env):
    r = runner.invoke(app, ["import", "--bbox", "24.940,60.165,24.950,60.172", "--name", "Kluuvi", "--json"])
    assert r.exit_code == 0, r.output
    line = [x for x in r.output.splitlines() if x.startswith("{")][-1]
    import json

    rep = json.loads(line)
    assert rep["name"] == "Kluuvi" and rep["buildings"] > 50


def test_demo_creates_admin_once_and_never_stores_password(env):
    r = runner.invoke(app, ["demo", "--no-serve"])
    assert r.exit_code == 0, r.output
    pw_line = [x for x in r.output.splitlines() if "password:" in x][0]
    password = pw_line.split("password:")[1].strip()
    assert len(password) >= 16
    for f in env.rglob("*"):
        if f.is_file():
            assert password.encode() not in f.read_bytes(), f"password found in clear in {f}"
    r2 = runner.invoke(app, ["demo", "--no-serve"])
    assert r2.exit_code == 0 and "password:" not in r2.output


def test_key_add_list_revoke(env):
    """`citytwin key add|list|revoke`: the token is printed once, stored hashed, and revocable."""
    import json

    from citytwin.sensors import keys
    from citytwin.sensors.service import StaRequest, StaService
    from citytwin.store import make_engine, migrate

    engine = make_engine(f"sqlite:///{env / 'citytwin.sqlite'}")
    migrate(engine)
    body = {"name": "camera", "description": "d", "Datastreams": [{
        "name": "count", "description": "d", "unitOfMeasurement": {"symbol": "{person}/h"},
        "observationType": "http://www.opengis.net/def/observationType/OGC-OM/2.0/OM_Measurement",
        "Sensor": {"name": "s", "description": "d", "encodingType": "text/html", "metadata": "m"},
        "ObservedProperty": {"name": "p", "definition": "d", "description": "d"}}]}
    assert StaService(engine).handle(StaRequest("POST", "Things", body=json.dumps(body).encode())).status == 201

    r = runner.invoke(app, ["key", "add", "camera-1", "--datastreams", "1"])
    assert r.exit_code == 0, r.output
    token = next(line for line in r.stdout.splitlines() if line.startswith("ctk_"))
    with engine.connect() as conn:
        assert keys.verify_key(conn, token)["datastreams"] == [1]
        stored = conn.execute(sa.text("SELECT secret_sha256 FROM sta_api_keys")).scalar()
    assert token not in stored and len(stored) == 64

    r = runner.invoke(app, ["key", "list"])
    assert r.exit_code == 0 and "camera-1" in r.output and token not in r.output

    assert runner.invoke(app, ["key", "add", "camera-2", "--datastreams", "99"]).exit_code == 2  # no such stream
    assert runner.invoke(app, ["key", "add", "camera-3", "--datastreams", "one"]).exit_code == 2

    r = runner.invoke(app, ["key", "revoke", "1"])
    assert r.exit_code == 0, r.output
    with engine.connect() as conn:
        assert keys.verify_key(conn, token) is None
    assert runner.invoke(app, ["key", "revoke", "1"]).exit_code != 0  # revoked already
