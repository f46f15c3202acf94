"""agora: run the Agora services, and manage their database, accounts and signing keys.

Settings come from AGORA_* environment variables (README, "Settings").
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, NoReturn

import uvicorn
from pydantic import ValidationError
from pydantic_settings import SettingsError

from agora import __version__
from agora.core.errors import AgoraError
from agora.core.logs import configure_early_logging, configure_logging
from agora.core.metrics import prepare_multiprocess_dir
from agora.core.settings import Settings, with_dev_secret
from agora.core.settings_errors import explain, unknown_variables
from agora.grpc.server import REUSE_PORT_ENV as GRPC_REUSE_PORT_ENV
from agora.runtime import cluster
from agora.runtime.data_dir import private_data_dir
from agora.runtime.database_gate import (
    UNREACHABLE,
    DatabaseRefused,
    migrate,
    require_current_schema,
    unreachable,
)
from agora.runtime.http_server import uvicorn_options
from agora.runtime.registry import NAMES as SERVICE_NAMES

if TYPE_CHECKING:
    from agora.runtime.process import ProcessApp

SERVICE_ENV = "AGORA_SERVE_SERVICE"
# Exit statuses: 2 for a mistake to fix before starting (arguments, settings, schema),
# as argparse does for a bad command line; 1 for a failure at run time.
MISTAKE = 2
WORKER_HEALTHCHECK_TIMEOUT = 60  # seconds; see cmd_serve


def refuse(lines: Sequence[str], code: int = MISTAKE) -> NoReturn:
    for line in lines:
        print(f"agora: {line}", file=sys.stderr)
    raise SystemExit(code)


def settings_from_environment(**overrides: object) -> Settings:
    """Validated settings, or the process stops with one line per refused value. Nothing
    is written yet (see `with_dev_secret`)."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as error:
        refuse(explain(error, Settings))
    except SettingsError as error:  # a value pydantic-settings could not even decode
        refuse([str(error)])


def build_app(service: str, settings: Settings) -> ProcessApp:
    from agora.runtime.registry import build_app as build_process_app

    try:
        return build_process_app(service, settings)
    except ValueError as error:
        raise SystemExit(str(error)) from None


def configure_logs(settings: Settings) -> None:
    configure_logging(settings.log_level, settings.log_format, dev=settings.env == "dev")


def app_factory() -> ProcessApp:
    """For uvicorn's worker processes, which import the app by name."""
    settings = with_dev_secret(settings_from_environment())
    configure_logs(settings)
    return build_app(os.environ.get(SERVICE_ENV, "all"), settings)


def migrate_embedded(settings: Settings) -> None:
    """The embedded SQLite database is ours to migrate; PostgreSQL is the operator's."""
    if settings.resolved_database_url.startswith("sqlite"):
        migrate(settings.resolved_database_url)


def cmd_serve(args: argparse.Namespace) -> None:
    overrides = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
    # The environment as it is first: the worker processes read it without the options,
    # and a bad AGORA_PORT is a mistake even when --port hides it here.
    settings_from_environment()
    checked = settings_from_environment(**overrides)
    if args.workers > 1 and not checked.redis_url:
        # The embedded cache, bus and pub/sub live inside one process: with several
        # workers a logout revoked in one worker would still pass in another.
        refuse(["--workers > 1 needs AGORA_REDIS_URL: the embedded backends are one process's"])
    private_data_dir(checked)  # before anything is written there (the dev secret, SQLite)
    settings = with_dev_secret(checked)
    configure_logs(settings)
    service = args.service or "all"
    build_app(service, settings)  # fail fast, before migrating or forking
    if args.migrate:
        migrate(settings.resolved_database_url)
    else:
        migrate_embedded(settings)
    require_current_schema(settings.resolved_database_url)
    os.environ[SERVICE_ENV] = service
    # Several workers serve one gRPC port together; one alone refuses a port in use.
    os.environ[GRPC_REUSE_PORT_ENV] = "1" if args.workers > 1 else "0"
    prepare_multiprocess_dir(args.workers)  # workers' metrics, summed by any one's /metrics
    uvicorn.run(
        "agora.cli:app_factory",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=args.workers,
        **uvicorn_options(settings),  # header caps (431), no `server:` header, sockets
        # uvicorn kills a worker that does not answer its health ping within this many
        # seconds (5 by default); a worker still importing on a loaded machine took
        # longer and was killed and restarted forever.
        timeout_worker_healthcheck=WORKER_HEALTHCHECK_TIMEOUT,
    )


def cmd_check(_args: argparse.Namespace) -> None:
    from agora.runtime.check import check

    settings = settings_from_environment()
    configure_logs(settings)
    raise SystemExit(check(settings))


def cmd_db_upgrade(_args: argparse.Namespace) -> None:
    settings = settings_from_environment()  # no token secret needed: none written
    configure_logs(settings)
    migrate(settings.resolved_database_url)
    print("database is at the latest revision")


def cmd_keys_rotate(args: argparse.Namespace) -> None:
    from agora.security.keyring import rotate

    settings = settings_from_environment()
    try:
        kid = rotate(settings, args.alg)
    except ValueError as exc:
        raise SystemExit(f"error: {exc}") from None
    print(json.dumps({"kid": kid, "alg": args.alg or settings.jwt_algorithm}))


def cmd_keys_show(_args: argparse.Namespace) -> None:
    from agora.security.keyring import key_directory

    # Read only: showing the keys must never create or rotate one.
    print(json.dumps(key_directory(settings_from_environment()).load().jwks(), indent=2))


def _read_password() -> str:
    if sys.stdin.isatty():
        first = getpass.getpass("Password: ")
        if first != getpass.getpass("Repeat password: "):
            raise SystemExit("passwords do not match")
        return first
    return sys.stdin.readline().rstrip("\n")


def cmd_users_create(args: argparse.Namespace) -> None:
    from agora.runtime.registry import build_app as build_process_app
    from agora.services.auth.schemas import RegisterRequest
    from agora.services.auth.service import AuthService

    checked = settings_from_environment()
    try:
        request = RegisterRequest(
            login=args.login, email=args.email, name=args.name, password=_read_password()
        )
    except ValidationError as exc:
        for error in exc.errors():
            print(f"{'.'.join(map(str, error['loc']))}: {error['msg']}", file=sys.stderr)
        raise SystemExit(MISTAKE) from None

    settings = with_dev_secret(checked)
    configure_logs(settings)
    migrate_embedded(settings)

    async def create() -> dict[str, str]:
        # A one-off command, beside a server that may hold the gRPC port: no gRPC here.
        process = build_process_app("auth", settings.model_copy(update={"grpc_port": 0}))
        async with process.running():
            user = await process.apps[0].provided(AuthService).register(request)
        return {"id": str(user.id), "login": user.login, "email": user.email, "name": user.name}

    try:
        print(json.dumps(asyncio.run(create())))
    except AgoraError as exc:
        raise SystemExit(f"error: {exc.message}") from None
    except UNREACHABLE as exc:
        refuse([str(unreachable(settings.resolved_database_url, exc))], 1)


COMMANDS = """commands:
  serve [SERVICE]   serve all services in one process, or one of them
  db upgrade        migrate the database to this version's schema
  users create      create an account
  keys rotate       make a new token signing key
  keys show         print the public signing keys (JWKS)

`agora COMMAND --help` tells more. Settings are AGORA_* environment variables."""


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(
        prog="agora",
        description=__doc__.splitlines()[0] if __doc__ else None,
        epilog=COMMANDS,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    root.add_argument("--version", action="version", version=f"agora {__version__}")
    commands = root.add_subparsers(
        dest="command", required=True, metavar="COMMAND", help="what to do"
    )

    serve = commands.add_parser(
        "serve",
        help="serve all services in one process, or one of them",
        description="Serve HTTP (and gRPC on AGORA_GRPC_PORT) until Ctrl-C. The embedded "
        "SQLite database is migrated on start; a PostgreSQL one must be at this "
        "version's schema (`agora db upgrade`, or --migrate).",
    )
    serve.add_argument(
        "service", nargs="?", choices=SERVICE_NAMES, metavar="SERVICE",
        help=f"one of {', '.join(SERVICE_NAMES)} (default: all, in one process)",
    )  # fmt: skip
    serve.add_argument("--host", help="address to listen on (default: AGORA_HOST, 127.0.0.1)")
    serve.add_argument(
        "--port", type=int, help="HTTP port to listen on (default: AGORA_PORT, 8080)"
    )
    serve.add_argument(
        "--workers", type=positive_int, default=1,
        help="worker processes sharing the port (default: 1; more need AGORA_REDIS_URL)",
    )  # fmt: skip
    serve.add_argument(
        "--migrate", action="store_true",
        help="migrate the database to this version's schema before serving",
    )  # fmt: skip
    serve.set_defaults(func=cmd_serve)

    commands.add_parser(
        "check",
        help="print what the settings would run, test each backend (exit 1 if one fails)",
        description="Print what the current settings would run (backends, ports, environment; "
        "passwords masked) and test each configured backend once.",
    ).set_defaults(func=cmd_check)

    users = commands.add_parser(
        "users", help="manage accounts", description="Manage accounts."
    ).add_subparsers(dest="users_command", required=True, metavar="COMMAND", help="what to do")
    create = users.add_parser(
        "create",
        help="create an account (password prompted, or read from stdin)",
        description="Create an account. The password is prompted twice on a terminal, "
        "else read from the first line of stdin.",
    )
    create.add_argument("--login", required=True, help="the login to sign in with")
    create.add_argument("--email", required=True, help="the account's email address")
    create.add_argument("--name", required=True, help="the name shown to other users")
    create.set_defaults(func=cmd_users_create)

    db = commands.add_parser(
        "db", help="database schema", description="Database schema."
    ).add_subparsers(dest="db_command", required=True, metavar="COMMAND", help="what to do")
    db.add_parser(
        "upgrade",
        help="migrate the database to this version's schema",
        description="Migrate the database (AGORA_DATABASE_URL, else the embedded SQLite "
        "one in AGORA_DATA_DIR) to this version's schema.",
    ).set_defaults(func=cmd_db_upgrade)

    keys = commands.add_parser(
        "keys", help="token signing keys", description="Token signing keys."
    ).add_subparsers(dest="keys_command", required=True, metavar="COMMAND", help="what to do")
    rotate = keys.add_parser(
        "rotate",
        help="make a new signing key; older keys keep verifying",
        description="Make a new signing key under AGORA_DATA_DIR/keys; tokens signed "
        "with older keys keep verifying.",
    )
    rotate.add_argument(
        "--alg", choices=["RS256", "ES256", "EdDSA"],
        help="the new key's algorithm (default: AGORA_JWT_ALGORITHM)",
    )  # fmt: skip
    rotate.set_defaults(func=cmd_keys_rotate)
    keys.add_parser(
        "show", help="print the public signing keys (JWKS)",
        description="Print the public signing keys as a JWKS; creates nothing.",
    ).set_defaults(func=cmd_keys_show)  # fmt: skip
    cluster.add_command(commands)
    return root


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, not {value}")
    return value


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    configure_early_logging(os.environ)
    # The variables of uvicorn's worker processes, set by `agora serve` itself.
    internal = (SERVICE_ENV, GRPC_REUSE_PORT_ENV)
    for warning in unknown_variables(os.environ, Settings, also_known=internal):
        print(f"agora: warning: {warning}", file=sys.stderr)
    try:
        args.func(args)
    except DatabaseRefused as refused:
        refuse([str(refused)], refused.exit_code)


if __name__ == "__main__":
    main()
