"""Auth benchmark: what a token check costs in Agora, and against the classic Flask guard.

    python -m bench.run            (or: make bench)

Rows, each measured with wrk against a server that runs alone on 127.0.0.1, two
worker processes each (the machine's two cores):

    agora-unprotected    bench.agora_app under uvicorn: unguarded route, small JSON
    agora-protected      same app and server: `CurrentUser` token check + the same JSON
    flask-pyjwt          Flask + gunicorn (sync workers): classic `@token_required`
                         doing a PyJWT decode per request, same checks, same JSON
    flask-agora-contrib  same Flask setup behind `agora.contrib.flask.token_required`

Each server is warmed up, then loaded for several rounds (rows of one server take
turns); the median requests/s is reported. Results also go to bench/results/*.json.
"""

from __future__ import annotations

import argparse
import json
import secrets
import signal
import statistics
import sys
import tempfile
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

from agora.db.migrate import upgrade
from agora.security.tokens import TokenService
from bench import agora_app, flask_app, targets
from bench.charts import after_run
from bench.harness import (
    OtherCpu,
    WrkResult,
    free_port,
    http_get,
    machine,
    require_wrk,
    run_wrk,
    wait_for_idle,
    write_results,
)
from bench.harness import serving as serving_process

ISSUER, AUDIENCE = "agora-auth", "agora"
IDLE_THRESHOLD = 0.2  # cores busy with other work before a round, above which we wait
TARGETS = {t.name: t.bound for t in targets.of("auth")}  # the table: bench/targets.py


@dataclass(frozen=True)
class Row:
    name: str
    server: str
    path: str
    protected: bool
    what: str


ROWS = [
    Row("agora-unprotected", "agora", agora_app.PUBLIC_PATH, False,
        "Agora (FastAPI, uvicorn): unguarded route, small JSON"),
    Row("agora-protected", "agora", agora_app.PROTECTED_PATH, True,
        "Agora: CurrentUser token check + small JSON"),
    Row("flask-pyjwt", "flask", flask_app.PROTECTED_PATH, True,
        "Flask + gunicorn sync: @token_required, PyJWT decode per request"),
    Row("flask-agora-contrib", "flask-contrib", flask_app.PROTECTED_PATH, True,
        "Flask + gunicorn sync: agora.contrib.flask.token_required"),
]  # fmt: skip


def server_command(server: str, port: int, workers: int) -> list[str]:
    bind = ["--host", "127.0.0.1", "--port", str(port)]
    if server == "agora":
        return [
            sys.executable,
            "-m",
            "uvicorn",
            "bench.agora_app:create_app",
            "--factory",
            *bind,
            "--workers",
            str(workers),
            "--no-access-log",
            "--log-level",
            "warning",
        ]
    app = {"flask": "bench.flask_app:app", "flask-contrib": "bench.flask_app:contrib_app"}[server]
    return [sys.executable, "-m", "gunicorn", app, "--bind", f"127.0.0.1:{port}",
            "--workers", str(workers), "--worker-class", "sync",
            "--log-level", "warning"]  # fmt: skip


def check_answers(base: str, rows: list[Row], token: str) -> None:
    """Refuse to measure a server that answers wrongly: a fast 401 is not a result."""
    for row in rows:
        status, body = http_get(base + row.path, {"Authorization": f"Bearer {token}"})
        if status != 200 or json.loads(body).get("login") not in ("bench", "anonymous"):
            raise SystemExit(f"{row.name}: expected 200 with the user, got {status} {body!r}")
        if row.protected:
            status, body = http_get(base + row.path)
            if status != 401 or json.loads(body) != {"error": "Token required"}:
                raise SystemExit(f"{row.name}: expected 401 without a token, got {status}")


def measure_server(
    server: str, rows: list[Row], args: argparse.Namespace, env: dict[str, str], token: str
) -> dict[str, list[WrkResult]]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    load = {"connections": args.connections, "threads": args.threads}
    headers = {"Authorization": f"Bearer {token}"}
    results: dict[str, list[WrkResult]] = {row.name: [] for row in rows}
    command = server_command(server, port, args.workers)
    with serving_process(command, base + rows[0].path, env) as group:
        other_cpu = OtherCpu(group)
        check_answers(base, rows, token)
        for row in rows:
            print(f"  {row.name}: warm-up {args.warmup} s", flush=True)
            run_wrk(base + row.path, seconds=args.warmup, headers=headers, **load)
        for round_no in range(1, args.rounds + 1):
            for row in rows:
                if args.idle_wait:
                    # The server idles between loads, so what is busy now is someone else.
                    busy = wait_for_idle(args.idle_wait, IDLE_THRESHOLD)
                    if busy is not None and busy > IDLE_THRESHOLD:
                        print(f"    note: machine still busy ({busy:.2f} cores) after waiting")
                with other_cpu.measuring() as other:
                    result = run_wrk(
                        base + row.path, seconds=args.duration, headers=headers, **load
                    )
                result.other_cpu_cores = other["cores"]
                if result.non_2xx or any(result.socket_errors.values()):
                    print(f"    note: {result.non_2xx} non-2xx, errors {result.socket_errors}")
                print(f"  {row.name}: round {round_no}: {result.requests_per_s:,.0f} req/s "
                      f"(other processes used {other['cores']} cores)", flush=True)  # fmt: skip
                results[row.name].append(result)
    return results


def versions() -> dict[str, str]:
    names = ("fastapi", "starlette", "uvicorn", "uvloop", "httptools", "flask", "gunicorn", "pyjwt")
    found = {}
    for name in names:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "absent"
    return found


def report(medians: dict[str, float], rows: list[Row]) -> dict[str, float]:
    ratios = {}
    if "agora-protected" in medians and "agora-unprotected" in medians:
        ratios["protected / unprotected"] = (
            medians["agora-protected"] / medians["agora-unprotected"]
        )
    if "agora-protected" in medians and "flask-pyjwt" in medians:
        ratios["agora-protected / flask-pyjwt"] = (
            medians["agora-protected"] / medians["flask-pyjwt"]
        )
    if "flask-agora-contrib" in medians and "flask-pyjwt" in medians:
        ratios["flask-agora-contrib / flask-pyjwt"] = (
            medians["flask-agora-contrib"] / medians["flask-pyjwt"]
        )
    print(f"\n{'row':<21} {'median req/s':>12}  what")
    for row in rows:
        print(f"{row.name:<21} {medians[row.name]:>12,.0f}  {row.what}")
    print()
    for name, value in ratios.items():
        verdict = f"({targets.target('auth', name).verdict(value)})" if name in TARGETS else ""
        print(f"{name:<36} {value:5.2f}x  {verdict}")
    return ratios


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=3, help="seconds of warm-up per row")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1, help="wrk threads")
    parser.add_argument("--workers", type=int, default=2, help="worker processes per server")
    parser.add_argument(
        "--idle-wait",
        type=float,
        default=60,
        help="before each round, wait up to this many seconds for other processes to go "
        "quiet (a shared machine); 0 to never wait",
    )
    parser.add_argument("--only", nargs="*", choices=[row.name for row in ROWS], help="rows to run")
    args = parser.parse_args(argv)
    # Stopped by a signal, still stop the servers: SystemExit runs their `finally`.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    require_wrk()
    rows = [row for row in ROWS if not args.only or row.name in args.only]

    secret = secrets.token_urlsafe(48)
    token = TokenService(secret, issuer=ISSUER, audience=AUDIENCE).issue_access("42", "bench")
    results: dict[str, list[WrkResult]] = {}
    with tempfile.TemporaryDirectory(prefix="agora-bench-") as data_dir:
        # Service apps read their database at start (revocations); migrate it once here
        # rather than in each worker, which would race on one SQLite file.
        upgrade(f"sqlite+aiosqlite:///{Path(data_dir) / 'agora.db'}")
        env = {"AGORA_ENV": "test", "AGORA_JWT_SECRET": secret, "AGORA_DATA_DIR": data_dir,
               "AGORA_JWT_ISSUER": ISSUER, "AGORA_JWT_AUDIENCE": AUDIENCE,
               "AGORA_LOG_LEVEL": "WARNING"}  # fmt: skip
        for server in dict.fromkeys(row.server for row in rows):
            server_rows = [row for row in rows if row.server == server]
            print(f"{server}: {args.workers} workers, wrk -t{args.threads} -c{args.connections}, "
                  f"{args.rounds} x {args.duration} s", flush=True)  # fmt: skip
            results.update(measure_server(server, server_rows, args, env, token.token))

    medians = {
        name: statistics.median(r.requests_per_s for r in runs) for name, runs in results.items()
    }
    ratios = report(medians, rows)
    stamp = datetime.now(UTC)
    out = write_results("auth", {
        "benchmark": "auth", "date": stamp.isoformat(timespec="seconds"),
        "command": "python -m bench.run " + " ".join(sys.argv[1:] if argv is None else argv),
        "settings": vars(args), "machine": machine(), "versions": versions(),
        "rows": {row.name: {"what": row.what, "path": row.path, "server": row.server,
                            "median_requests_per_s": medians[row.name],
                            "rounds": [asdict(r) for r in results[row.name]]} for row in rows},
        "ratios": ratios, "targets": TARGETS,
    })  # fmt: skip
    print(f"\nresults: {out}")
    after_run(out)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        raise SystemExit("interrupted; the servers were stopped") from None
