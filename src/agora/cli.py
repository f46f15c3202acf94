"""`agora serve | users | db`: the one entry point for people and scripts."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import os
import sys
from typing import TYPE_CHECKING

import uvicorn
from pydantic import ValidationError

from agora.core.errors import AgoraError
from agora.core.logs import configure_early_logging, configure_logging
from agora.core.metrics import prepare_multiprocess_dir
from agora.core.settings import Settings, load_settings
from agora.db.migrate import upgrade
from agora.grpc.server import REUSE_PORT_ENV as GRPC_REUSE_PORT_ENV
from agora.runtime import cluster

if TYPE_CHECKING:
    from agora.runtime.process import ProcessApp

SERVICE_ENV = "AGORA_SERVE_SERVICE"


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
    settings = load_settings()
    configure_logs(settings)
    return build_app(os.environ.get(SERVICE_ENV, "all"), settings)


def migrate_embedded(settings: Settings) -> None:
    """The embedded SQLite database is ours to migrate; PostgreSQL is the operator's."""
    if settings.resolved_database_url.startswith("sqlite"):
        upgrade(settings.resolved_database_url)


def cmd_serve(args: argparse.Namespace) -> None:
    overrides = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
    settings = load_settings(**overrides)
    configure_logs(settings)
    if args.workers > 1 and not settings.redis_url:
        # The embedded cache, bus and pub/sub live inside one process: with several
        # workers a logout revoked in one worker would still pass in another.
        raise SystemExit(
            "--workers > 1 needs AGORA_REDIS_URL: the embedded backends are one process's"
        )
    service = args.service or "all"
    build_app(service, settings)  # fail fast on a bad name, before migrating or forking
    migrate_embedded(settings)
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
        # uvicorn's loggers keep ours (agora.core.logs); agora.access replaces its access log.
        log_config=None,
        access_log=False,
        ws_max_size=settings.ws_max_message_bytes,
        ws_ping_interval=settings.ws_ping_interval,
        ws_ping_timeout=settings.ws_ping_timeout,
        # Frames are small JSON; permessage-deflate would keep a zlib context per
        # socket (about 35 KiB each, measured in bench.social_bench --deflate).
        ws_per_message_deflate=False,
    )


def cmd_check(_args: argparse.Namespace) -> None:
    from agora.runtime.check import check

    settings = load_settings()
    configure_logs(settings)
    raise SystemExit(check(settings))


def cmd_db_upgrade(_args: argparse.Namespace) -> None:
    settings = load_settings()
    configure_logs(settings)
    upgrade(settings.resolved_database_url)
    print("database is at the latest revision")


def cmd_keys_rotate(args: argparse.Namespace) -> None:
    from agora.security.keyring import rotate

    settings = load_settings()
    try:
        kid = rotate(settings, args.alg)
    except ValueError as exc:
        raise SystemExit(f"error: {exc}") from None
    print(json.dumps({"kid": kid, "alg": args.alg or settings.jwt_algorithm}))


def cmd_keys_show(_args: argparse.Namespace) -> None:
    from agora.security.keyring import key_directory

    # Read only: showing the keys must never create or rotate one.
    print(json.dumps(key_directory(load_settings()).load().jwks(), indent=2))


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

    settings = load_settings()
    configure_logs(settings)
    try:
        request = RegisterRequest(
            login=args.login, email=args.email, name=args.name, password=_read_password()
        )
    except ValidationError as exc:
        for error in exc.errors():
            print(f"{'.'.join(map(str, error['loc']))}: {error['msg']}", file=sys.stderr)
        raise SystemExit(2) from None

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


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="agora", description=__doc__)
    commands = root.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="serve one service, or all in one process")
    serve.add_argument("service", nargs="?", help="auth, ... (default: all services)")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--workers", type=int, default=1)
    serve.set_defaults(func=cmd_serve)

    commands.add_parser(
        "check", help="print what the settings would run, test each backend (exit 1 if one fails)"
    ).set_defaults(func=cmd_check)

    users = commands.add_parser("users", help="manage accounts").add_subparsers(
        dest="users_command", required=True
    )
    create = users.add_parser("create", help="create an account (password prompted or on stdin)")
    create.add_argument("--login", required=True)
    create.add_argument("--email", required=True)
    create.add_argument("--name", required=True)
    create.set_defaults(func=cmd_users_create)

    db = commands.add_parser("db", help="database schema").add_subparsers(
        dest="db_command", required=True
    )
    db.add_parser("upgrade", help="migrate to the latest revision").set_defaults(
        func=cmd_db_upgrade
    )
    keys = commands.add_parser("keys", help="token signing keys").add_subparsers(
        dest="keys_command", required=True
    )
    rotate = keys.add_parser("rotate", help="make a new signing key; older keys keep verifying")
    rotate.add_argument("--alg", choices=["RS256", "ES256", "EdDSA"])
    rotate.set_defaults(func=cmd_keys_rotate)
    keys.add_parser("show", help="print the public JWKS").set_defaults(func=cmd_keys_show)
    cluster.add_command(commands)
    return root


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    configure_early_logging(os.environ)
    try:
        args.func(args)
    except ValidationError as exc:  # settings refused at start
        raise SystemExit(f"invalid settings:\n{exc}") from None


if __name__ == "__main__":
    main()
