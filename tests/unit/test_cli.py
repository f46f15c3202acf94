"""`agora` command line: parsing, and the refusals that happen before anything starts.

What the commands do end to end (serve, users create, db upgrade) is in tests/e2e.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from agora import cli
from agora.runtime.process import ProcessApp
from tests.support.settings import make_settings


@pytest.fixture(autouse=True)
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """Own data dir and no AGORA_* from the machine; the root logger put back afterwards
    (the commands configure logging for the whole process)."""
    for name in list(os.environ):
        if name.startswith("AGORA_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AGORA_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("AGORA_LOG_LEVEL", "WARNING")

    def never_serve(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("these tests must be refused before a server starts")

    monkeypatch.setattr(cli.uvicorn, "run", never_serve)
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_serve_parses_service_host_port_and_workers() -> None:
    args = cli.parser().parse_args(["serve", "auth", "--port", "1", "--host", "0.0.0.0"])
    assert (args.command, args.service, args.port, args.host, args.workers) == (
        "serve", "auth", 1, "0.0.0.0", 1,
    )  # fmt: skip
    assert args.func is cli.cmd_serve


def test_serve_defaults_to_every_service_and_the_settings() -> None:
    args = cli.parser().parse_args(["serve"])
    assert (args.service, args.port, args.host) == (None, None, None)


def test_users_create_and_db_upgrade_parse() -> None:
    args = cli.parser().parse_args(
        ["users", "create", "--login", "ann", "--email", "a@example.com", "--name", "Ann Lee"]
    )
    assert (args.login, args.email, args.name) == ("ann", "a@example.com", "Ann Lee")
    assert args.func is cli.cmd_users_create
    assert cli.parser().parse_args(["db", "upgrade"]).func is cli.cmd_db_upgrade


@pytest.mark.parametrize(
    ("argv", "complaint"),
    [
        ([], "the following arguments are required: COMMAND"),
        (["launch"], "invalid choice: 'launch'"),
        (["serve", "--port", "eighty"], "invalid int value: 'eighty'"),
        (["users"], "the following arguments are required: COMMAND"),
        (["users", "create", "--login", "ann"], "--email, --name"),
        (["db"], "the following arguments are required: COMMAND"),
        (["serve", "nosuch"], "invalid choice: 'nosuch' (choose from 'all', 'auth'"),
        (["serve", "--workers", "0"], "must be 1 or more, not 0"),
    ],
)
def test_bad_command_lines_exit_2_with_a_usage_message(
    argv: list[str], complaint: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(argv)
    assert exited.value.code == 2
    assert complaint in capsys.readouterr().err


def test_several_workers_on_the_embedded_backends_are_refused(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each worker would have its own in-memory cache: a revocation in one would not
    reach the others."""
    with pytest.raises(SystemExit) as exited:
        cli.main(["serve", "--workers", "2"])
    assert exited.value.code == 2
    assert "--workers > 1 needs AGORA_REDIS_URL" in capsys.readouterr().err
    started: list[int] = []
    monkeypatch.setattr(cli.uvicorn, "run", lambda *a, **kw: started.append(kw["workers"]))
    monkeypatch.setenv("AGORA_REDIS_URL", "redis://127.0.0.1:6379/0")
    cli.main(["serve", "auth", "--workers", "2"])
    assert started == [2]


def test_workers_get_time_to_start_on_a_loaded_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    """uvicorn kills a worker that misses its health ping (5 s by default): on a loaded
    machine a worker still importing missed it and was replaced forever."""
    options: list[dict[str, object]] = []
    monkeypatch.setattr(cli.uvicorn, "run", lambda *a, **kw: options.append(kw))
    monkeypatch.setenv("AGORA_REDIS_URL", "redis://127.0.0.1:6379/0")
    cli.main(["serve", "auth", "--workers", "2"])
    assert options[0]["timeout_worker_healthcheck"] == cli.WORKER_HEALTHCHECK_TIMEOUT >= 30


@pytest.mark.parametrize("port", ["0", "70000"])
def test_port_out_of_range_is_refused_not_ignored(
    port: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["serve", "--port", port])
    assert exited.value.code == 2
    assert capsys.readouterr().err.startswith(f"agora: AGORA_PORT='{port}': should be")


def test_prod_with_a_short_secret_is_refused(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AGORA_ENV", "prod")
    monkeypatch.setenv("AGORA_JWT_SECRET", "short")
    for argv in (["serve"], ["db", "upgrade"]):
        with pytest.raises(SystemExit) as exited:
            cli.main(argv)
        assert exited.value.code == 2
        assert "AGORA_JWT_SECRET must be at least 32 bytes" in capsys.readouterr().err


def test_build_app_knows_each_service(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    auth = cli.build_app("auth", settings)
    assert isinstance(auth, ProcessApp) and [app.context.name for app in auth.apps] == ["auth"]
    assert isinstance(cli.build_app("all", settings), ProcessApp)


def test_worker_factory_builds_the_service_named_by_the_parent(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(cli.SERVICE_ENV, "auth")
    app = cli.app_factory()
    assert isinstance(app, ProcessApp) and [each.context.name for each in app.apps] == ["auth"]


def test_worker_factory_refuses_a_bad_setting_in_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """uvicorn's worker processes read the settings again: the same line, not a traceback."""
    monkeypatch.setenv("AGORA_LOG_LEVEL", "verbose")
    with pytest.raises(SystemExit) as exited:
        cli.app_factory()
    assert exited.value.code == 2
    assert capsys.readouterr().err == (
        "agora: AGORA_LOG_LEVEL='verbose': should be one of DEBUG, INFO, WARNING, ERROR, "
        "CRITICAL (example: AGORA_LOG_LEVEL=INFO)\n"
    )


def every_parser(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                yield from every_parser(child)


def test_every_command_and_option_has_help() -> None:
    parsers = list(every_parser(cli.parser()))
    # agora, serve, check, cluster, users (create), db (upgrade), keys (rotate, show)
    assert len(parsers) == 11
    for parser in parsers:
        assert parser.description, parser.prog
        for action in parser._actions:
            assert action.help, f"{parser.prog} {action.dest}"


def test_users_create_reports_each_bad_field(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    with pytest.raises(SystemExit) as exited:
        cli.main(["users", "create", "--login", "a b", "--email", "nope", "--name", "N"])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    for field in ("login:", "email:", "password:"):
        assert field in err, err


def test_users_create_reads_the_password_from_stdin(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """On a fresh data dir too: the embedded database is migrated first, as serve does."""
    monkeypatch.setenv("AGORA_ARGON2_TIME_COST", "1")
    monkeypatch.setenv("AGORA_ARGON2_MEMORY_COST", "64")
    monkeypatch.setenv("AGORA_ARGON2_PARALLELISM", "1")
    monkeypatch.setattr("sys.stdin", io.StringIO("a password with spaces \n"))
    cli.main(["users", "create", "--login", "Ann", "--email", "ann@example.com", "--name", "Ann"])
    out = capsys.readouterr().out
    assert '"login": "Ann"' in out and "password" not in out
    assert (tmp_path / "agora.db").exists()


def test_keys_show_never_creates_or_rotates_a_key(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AGORA_JWT_ALGORITHM", "ES256")
    cli.main(["keys", "rotate"])
    rotated = json.loads(capsys.readouterr().out)["kid"]
    monkeypatch.setenv("AGORA_JWT_ALGORITHM", "EdDSA")  # another configured algorithm
    cli.main(["keys", "show"])
    shown = json.loads(capsys.readouterr().out)
    assert [key["kid"] for key in shown["keys"]] == [rotated]
    assert {p.name for p in (tmp_path / "keys").iterdir()} == {f"{rotated}.pem", "keyset.json"}
