"""Mistakes an operator makes, told by the real `agora` command: a bad setting stops the
process with one line naming the variable (exit 2, no traceback, nothing written), a typo
in a name is warned about, a database behind the code's schema refuses to start."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from alembic.script import ScriptDirectory

import agora
from agora.db.migrate import alembic_config, upgrade
from tests.e2e.agora_command import Server, agora_env, register, run_agora
from tests.support.databases import empty_postgres_database
from tests.support.net import free_port

pytestmark = pytest.mark.e2e

STRONG_SECRET = "s" * 48
# (variable, value, other variables, what the line must say)
BAD_SETTINGS = [
    ("AGORA_DATABASE_URL", "notaurl", {}, "is not a database URL"),
    ("AGORA_DATABASE_URL", "postgresql://db/agora", {}, "postgresql+asyncpg"),
    ("AGORA_LOG_LEVEL", "verbose", {}, "'verbose': should be one of DEBUG, INFO,"),
    ("AGORA_TOKEN_TTL", "-5", {}, "greater than or equal to 60"),
    ("AGORA_PORT", "eighty", {}, "valid integer"),
    ("AGORA_PORT", "70000", {}, "less than or equal to 65535"),
    ("AGORA_JWT_SECRET", "too-short", {"AGORA_ENV": "prod", "AGORA_COOKIE_SECURE": "true"},
     "at least 32 bytes"),
    ("AGORA_COOKIE_SECURE", "maybe", {}, "valid boolean"),
    ("AGORA_ENV", "staging", {}, "'dev', 'test' or 'prod'"),
    ("AGORA_CORS_ORIGINS", "https://app.example.com/", {}, "no path"),
    ("AGORA_REDIS_URL", "http://127.0.0.1:6379", {}, "redis://"),
    ("AGORA_AMQP_URL", "127.0.0.1:5672", {}, "amqp://"),
    ("AGORA_NOTIFY_URL", "ftp://notify.example.com", {}, "http:// or https://"),
]  # fmt: skip


def assert_one_line_about(stderr: str, variable: str) -> str:
    assert "Traceback" not in stderr, stderr
    naming = [line for line in stderr.splitlines() if variable in line]
    assert len(naming) == 1, stderr
    return naming[0]


@pytest.mark.parametrize(("variable", "value", "others", "problem"), BAD_SETTINGS)
def test_a_bad_setting_stops_serve_with_one_line_naming_it(
    tmp_path: Path, variable: str, value: str, others: dict[str, str], problem: str
) -> None:
    data_dir = tmp_path / "data"  # not there yet: a refused start must not make it
    env = agora_env(data_dir, **others, **{variable: value})
    result = run_agora("serve", "--port", str(free_port()), env=env)
    assert result.returncode == 2, result.stderr
    line = assert_one_line_about(result.stderr, variable)
    assert problem in line and f"(example: {variable}=" in line, line
    assert "pydantic" not in result.stderr
    assert not data_dir.exists()


@pytest.mark.parametrize(
    "command",
    [
        ("db", "upgrade"),
        ("keys", "show"),
        ("keys", "rotate"),
        ("users", "create", "--login", "ann", "--email", "ann@example.com", "--name", "Ann"),
    ],
)
def test_every_command_refuses_a_bad_setting_the_same_way(
    tmp_path: Path, command: tuple[str, ...]
) -> None:
    data_dir = tmp_path / "data"
    env = agora_env(data_dir, AGORA_TOKEN_TTL="30")
    result = run_agora(*command, env=env, stdin="a long enough password\n")
    assert result.returncode == 2, result.stderr
    line = assert_one_line_about(result.stderr, "AGORA_TOKEN_TTL")
    assert line == (
        "agora: AGORA_TOKEN_TTL='30': should be greater than or equal to 60 "
        "(example: AGORA_TOKEN_TTL=3600)"
    )
    assert not data_dir.exists()


def test_a_secret_is_never_echoed(tmp_path: Path) -> None:
    env = agora_env(tmp_path, AGORA_ENV="prod", AGORA_JWT_SECRET=STRONG_SECRET,
                    AGORA_DATABASE_URL="mysql://agora:hunter2-password@db/agora")  # fmt: skip
    result = run_agora("db", "upgrade", env=env)
    assert result.returncode == 2
    assert "hunter2-password" not in result.stderr
    assert "AGORA_DATABASE_URL='mysql://agora:***@db/agora'" in result.stderr


def test_an_unknown_variable_is_warned_with_the_closest_name(tmp_path: Path) -> None:
    env = agora_env(tmp_path, AGORA_PROT="9000")
    result = run_agora("db", "upgrade", env=env)
    assert result.returncode == 0, result.stderr
    line = assert_one_line_about(result.stderr, "AGORA_PROT")
    assert "did you mean AGORA_PORT?" in line


def test_an_unknown_service_writes_nothing(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    result = run_agora("serve", "bogus", env=agora_env(data_dir))
    assert result.returncode == 2
    assert "invalid choice: 'bogus'" in result.stderr
    assert not data_dir.exists()


def test_version_and_help(tmp_path: Path) -> None:
    env = agora_env(tmp_path)
    version = run_agora("--version", env=env)
    assert version.returncode == 0 and version.stdout.strip() == f"agora {agora.__version__}"
    shown = run_agora("--help", env=env)
    assert shown.returncode == 0
    for command in ("serve", "db upgrade", "users create", "keys rotate", "keys show"):
        assert f"\n  {command} " in shown.stdout, shown.stdout
    serve = run_agora("serve", "--help", env=env).stdout
    for option in ("--host", "--port", "--workers", "--migrate", "SERVICE"):
        assert option in serve


def test_an_unreachable_database_is_one_line(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    url = f"postgresql+asyncpg://agora:secret-pw@127.0.0.1:{port}/agora"
    result = run_agora("db", "upgrade", env=agora_env(tmp_path, AGORA_DATABASE_URL=url))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr and "secret-pw" not in result.stderr
    line = (
        f"agora: cannot reach the database at 127.0.0.1:{port}/agora: "
        f"[Errno 111] Connect call failed ('127.0.0.1', {port})"
    )
    assert result.stderr.strip().splitlines() == [line]


def previous_revision() -> str:
    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    head = script.get_revision(script.get_current_head())
    assert head is not None and isinstance(head.down_revision, str)
    return head.down_revision


@pytest.mark.postgres
def test_a_database_behind_the_code_refuses_to_start_until_migrated(tmp_path: Path) -> None:
    with empty_postgres_database("behind") as url:
        env = agora_env(tmp_path, AGORA_DATABASE_URL=url)
        unmigrated = run_agora("serve", "--port", str(free_port()), env=env)
        assert unmigrated.returncode == 2, unmigrated.stderr
        line = assert_one_line_about(unmigrated.stderr, "agora db upgrade")
        assert "has no schema" in line and "agora serve --migrate" in line

        upgrade(url, previous_revision())  # an older Agora's schema
        older = run_agora("serve", "--port", str(free_port()), env=env)
        assert older.returncode == 2, older.stderr
        line = assert_one_line_about(older.stderr, "agora db upgrade")
        assert f"has {previous_revision()}" in line

        server = Server(tmp_path, env, args=("--migrate",)).start()
        try:
            with httpx.Client(base_url=server.base_url) as client:
                register(client)  # the schema is there: no 500
        finally:
            server.stop_cleanly()
        again = Server(tmp_path, env).start()  # migrated: starts without --migrate too
        again.stop_cleanly()
