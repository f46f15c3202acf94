"""The token check in one process: CPU per request of bench.run's rows, no server.

    .venv/bin/python -m bench.auth_cpu [--requests 3000] [--repeats 7]

A complement to `bench.run` on a shared machine, as `bench.publications_cpu` is to the
publications bench: CPU time of this process barely moves when other work takes the
cores, so the ratio is steady where requests/s are not. Rows: `agora-unprotected` and
`agora-protected` (`bench.agora_app`, its ASGI app called directly, lifespan run) and
`flask-pyjwt` (`bench.flask_app:app`, its WSGI entry called directly), the same token in
`Authorization: Bearer`, every answer checked to be 200. They take turns, `--repeats`
times; the median µs per request of each and the ratios are printed and written to
bench/results/auth-cpu-*.json. What the servers add on both sides (uvicorn, gunicorn)
is left out, so `flask / agora-protected` here is above bench.run's requests/s ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import io
import os
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

from bench.harness import write_results

ISSUER, AUDIENCE = "agora-auth", "agora"
LIFESPANS: list[asyncio.Task[None]] = []  # held: the app's lifespan runs while measured


def environment(data_dir: str) -> str:
    """bench.run's server environment; returns the token every row sends."""
    secret = secrets.token_urlsafe(48)
    os.environ.update({"AGORA_ENV": "test", "AGORA_JWT_SECRET": secret,
                       "AGORA_DATA_DIR": data_dir, "AGORA_JWT_ISSUER": ISSUER,
                       "AGORA_JWT_AUDIENCE": AUDIENCE, "AGORA_LOG_LEVEL": "WARNING"})  # fmt: skip
    from agora.db.migrate import upgrade
    from agora.security.tokens import TokenService

    upgrade(f"sqlite+aiosqlite:///{Path(data_dir) / 'agora.db'}")
    return TokenService(secret, issuer=ISSUER, audience=AUDIENCE).issue_access("42", "bench").token


async def agora_callers(token: str) -> dict[str, Callable[[], Awaitable[None]]]:
    from bench import agora_app

    app = agora_app.create_app()
    started: asyncio.Queue[MutableMapping[str, Any]] = asyncio.Queue()
    inbox: asyncio.Queue[MutableMapping[str, Any]] = asyncio.Queue()
    await inbox.put({"type": "lifespan.startup"})
    scope: dict[str, Any] = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
    LIFESPANS.append(asyncio.create_task(app(scope, inbox.get, started.put)))
    if (await started.get())["type"] != "lifespan.startup.complete":
        raise SystemExit("the Agora app did not start")
    headers = [(b"host", b"bench"), (b"authorization", f"Bearer {token}".encode())]
    statuses: list[int] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: MutableMapping[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    def caller(path: str) -> Callable[[], Awaitable[None]]:
        async def one() -> None:
            scope = {
                "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
                "method": "GET", "scheme": "http", "path": path, "raw_path": path.encode(),
                "root_path": "", "query_string": b"", "headers": headers,
                "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8000), "state": {},
            }  # fmt: skip
            await app(scope, receive, send)
            if statuses.pop() != 200:
                raise SystemExit(f"agora did not answer 200 on {path}")

        return one

    return {
        "agora-unprotected": caller(agora_app.PUBLIC_PATH),
        "agora-protected": caller(agora_app.PROTECTED_PATH),
    }


def flask_caller(token: str) -> Callable[[], Awaitable[None]]:
    import bench.flask_app

    app = importlib.reload(bench.flask_app).app  # it reads the secret at import
    environ = {
        "REQUEST_METHOD": "GET", "PATH_INFO": bench.flask_app.PROTECTED_PATH,
        "QUERY_STRING": "", "SERVER_NAME": "bench", "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1", "wsgi.url_scheme": "http", "wsgi.input": io.BytesIO(),
        "wsgi.errors": sys.stderr, "wsgi.multithread": False, "wsgi.multiprocess": True,
        "wsgi.run_once": False, "REMOTE_ADDR": "127.0.0.1",
        "HTTP_AUTHORIZATION": f"Bearer {token}",
    }  # fmt: skip
    statuses: list[str] = []

    def start_response(status: str, headers: Any, exc_info: Any = None) -> None:
        statuses.append(status)

    async def one() -> None:  # a coroutine only to be timed like the others
        b"".join(app.wsgi_app(dict(environ), start_response))
        if not statuses.pop().startswith("200"):
            raise SystemExit("flask did not answer 200")

    return one


async def measure(args: argparse.Namespace, token: str) -> dict[str, list[float]]:
    rows = {**await agora_callers(token), "flask-pyjwt": flask_caller(token)}
    for one in rows.values():  # warm-up: caches, imports, the verified-token cache
        for _ in range(300):
            await one()
    out: dict[str, list[float]] = {name: [] for name in rows}
    for _ in range(args.repeats):
        for name, one in rows.items():
            began = time.process_time()
            for _ in range(args.requests):
                await one()
            out[name].append((time.process_time() - began) / args.requests * 1e6)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="agora-auth-cpu-") as data_dir:
        token = environment(data_dir)
        runs = asyncio.run(measure(args, token))
    medians = {name: round(statistics.median(values), 1) for name, values in runs.items()}
    ratios = {
        "flask-pyjwt / agora-protected (CPU)": round(
            medians["flask-pyjwt"] / medians["agora-protected"], 2
        ),
        "agora-unprotected / agora-protected (CPU)": round(
            medians["agora-unprotected"] / medians["agora-protected"], 2
        ),
    }
    for name, values in runs.items():
        print(f"{name:18} {medians[name]:8.1f} us/request  {[round(v, 1) for v in values]}")
    for name, value in ratios.items():
        print(f"{name:42} {value}x")
    path = write_results("auth-cpu", {
        "benchmark": "auth-cpu", "command": "python -m bench.auth_cpu " + " ".join(
            sys.argv[1:] if argv is None else argv), "settings": vars(args),
        "us_per_request": runs, "medians": medians, "ratios": ratios,
    })  # fmt: skip
    print(f"results: {path}")


if __name__ == "__main__":
    main()
