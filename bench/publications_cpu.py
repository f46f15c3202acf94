"""`GET /api/publications`, in one process: CPU per request of Agora's app and of the
Flask baseline's, called directly (no server, no network), and an optional profile.

    .venv/bin/python -m bench.publications_cpu [--requests 3000] [--repeats 5] [--profile]

A complement to `bench.publications_bench` on a shared machine: CPU time of this
process (`time.process_time`) barely moves when other work takes the cores, so the
ratio is steady where requests/s are not. It leaves out what the servers add on both
sides (uvicorn's HTTP parsing and transport, gunicorn's) and the CPU of PostgreSQL and
redis-server, which `publications_bench` counts. Same fixture as `publications_bench`
(a throwaway database and Redis namespace, one connected user with 10 publications);
Agora is built as `agora serve publications` builds it (`runtime.registry.build_app`,
production defaults, logs at WARNING as the server bench runs it), the Flask app is
`bench/flask_publications_app.py` called through its WSGI entry. The two take turns,
`--repeats` times; the median µs per request of each and their ratio are printed.
`--profile` writes a cProfile of Agora's requests (`pstats`) and prints its top entries.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import importlib
import io
import os
import pstats
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from bench.charts import after_run
from bench.flask_publications_app import PATH
from bench.harness import machine, write_results
from bench.publications_bench import REDIS_URL, Fixture, server_env, throwaway_data


def agora_caller(fixture: Fixture) -> tuple[Any, Callable[[], Any]]:
    from agora.core.settings import load_settings
    from agora.runtime.registry import build_app

    app = build_app("publications", load_settings())
    header = [(b"host", b"bench"), (b"authorization", f"Bearer {fixture.token}".encode())]
    status: list[int] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            status.append(message["status"])

    async def one() -> None:
        scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
            "method": "GET", "scheme": "http", "path": PATH, "raw_path": PATH.encode(),
            "root_path": "", "query_string": b"", "headers": header,
            "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8000),
        }  # fmt: skip
        await app(scope, receive, send)
        if status.pop() != 200:
            raise SystemExit("agora did not answer 200")

    return app, one


def flask_caller(fixture: Fixture) -> Callable[[], None]:
    # Both modules read their configuration at import, which came before the fixture.
    import bench.flask_app
    import bench.flask_publications_app

    importlib.reload(bench.flask_app)
    app = importlib.reload(bench.flask_publications_app).app

    environ = {
        "REQUEST_METHOD": "GET", "PATH_INFO": PATH, "QUERY_STRING": "", "SERVER_NAME": "bench",
        "SERVER_PORT": "8000", "SERVER_PROTOCOL": "HTTP/1.1", "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(), "wsgi.errors": sys.stderr, "wsgi.multithread": False,
        "wsgi.multiprocess": True, "wsgi.run_once": False, "REMOTE_ADDR": "127.0.0.1",
        "HTTP_AUTHORIZATION": f"Bearer {fixture.token}",
    }  # fmt: skip
    statuses: list[str] = []

    def start_response(status: str, headers: Any, exc_info: Any = None) -> None:
        statuses.append(status)

    def one() -> None:
        b"".join(app.wsgi_app(dict(environ), start_response))
        if not statuses.pop().startswith("200"):
            raise SystemExit("flask did not answer 200")

    return one


async def measure(fixture: Fixture, args: argparse.Namespace) -> dict[str, list[float]]:
    app, agora_one = agora_caller(fixture)
    flask_one = flask_caller(fixture)
    results: dict[str, list[float]] = {"agora": [], "flask": []}
    async with app.running():
        for _ in range(200):  # warm-up: caches, prepared statements, pools
            await agora_one()
            flask_one()
        for _ in range(args.repeats):
            started = time.process_time()
            for _ in range(args.requests):
                await agora_one()
            results["agora"].append((time.process_time() - started) / args.requests * 1e6)
            started = time.process_time()
            for _ in range(args.requests):
                flask_one()
            results["flask"].append((time.process_time() - started) / args.requests * 1e6)
        if args.profile:
            profiler = cProfile.Profile(time.process_time)  # CPU, not waiting
            profiler.enable()
            for _ in range(args.requests):
                await agora_one()
            profiler.disable()
            profiler.dump_stats(args.profile)
            out = io.StringIO()
            pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(45)
            print(out.getvalue())
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.publications_cpu")
    parser.add_argument("--requests", type=int, default=3000, help="requests per repeat")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--profile", metavar="FILE", help="cProfile of Agora into FILE")
    args = parser.parse_args(argv)
    with throwaway_data(10) as fixture:
        os.environ.update(server_env(fixture, None))
        os.environ["AGORA_REDIS_URL"] = REDIS_URL
        try:
            import uvloop

            runner: Any = uvloop.run
        except ImportError:
            runner = asyncio.run
        results = runner(measure(fixture, args))
    agora = statistics.median(results["agora"])
    flask = statistics.median(results["flask"])
    print(f"agora µs/request: {[round(x) for x in results['agora']]} median {agora:.0f}")
    print(f"flask µs/request: {[round(x) for x in results['flask']]} median {flask:.0f}")
    print(f"CPU per request agora / flask: {agora / flask:.2f}x (in process, no server)")
    out = write_results("publications-cpu", {
        "benchmark": "publications-cpu", "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "settings": vars(args), "machine": machine(),
        "rows": {name: {"us_per_request": round(statistics.median(runs), 1),
                        "repeats_us": [round(x, 1) for x in runs]}
                 for name, runs in results.items()},
        "ratios": {"agora / flask, CPU per request (in process)": agora / flask},
    })  # fmt: skip
    print(f"results: {out}")
    after_run(out)


if __name__ == "__main__":
    main()
