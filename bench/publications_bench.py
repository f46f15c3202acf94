"""`GET /api/publications` (10 rows, PostgreSQL + Redis): Agora against the Flask baseline.

    .venv/bin/python -m bench.publications_bench [--duration 10] [--rounds 3]

Two servers, two worker processes each (the machine's two cores), run side by side
and loaded one at a time with wrk (`-t1 -c64`, the auth benchmark's load), with the
same access token:

    agora   `agora serve publications --workers 2` (uvicorn) on PostgreSQL and Redis:
            token guard (verified-token cache, revocation lookup in Redis), active-user
            check (`user:<id>` read and TTL refresh), the page query, orjson response
    flask   bench/flask_publications_app.py under gunicorn, 2 sync workers: PyJWT decode
            per request, Redis GET `user:<id>`, the same SQL (psycopg 3 in autocommit;
            `--flask-sql sqlalchemy`: a SQLAlchemy Session, a transaction per request)

Needs wrk, the local PostgreSQL (postgres@127.0.0.1:5432, trust) and Redis; override
with AGORA_BENCH_PG_DSN and AGORA_BENCH_REDIS_URL. Everything it makes is its own and
removed at the end: a throwaway database (migrated with `agora.db.migrate.upgrade`,
dropped) and a Redis key namespace (deleted). The publications process gets no
AGORA_AMQP_URL, so it runs the in-process bus: the read path never touches the bus,
and the events that would keep the user connected are replaced by writing what the
consumer writes (the `pub_users` row, then `user:<id>` as docs/contracts.md fixes it).

Before measuring, both servers must answer 200 with the same JSON (10 publications),
401 without a token and 403 for a user who is not connected. Then a warm-up, and
`--rounds` rounds of `--duration` s, the servers taking turns in each round; the median
requests/s is reported, with p50/p99 and `other_cpu_cores` (CPU that other processes
of the shared machine used during the round) per round. Results: bench/results/*.json.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from importlib import metadata
from pathlib import Path
from typing import Any

import psycopg
import redis

from agora.db.migrate import upgrade
from agora.security.tokens import TokenService
from bench.charts import after_run
from bench.flask_publications_app import PATH
from bench.harness import (
    ROOT,
    OtherCpu,
    WrkResult,
    free_port,
    http_get,
    machine,
    require_wrk,
    run_wrk,
    serving,
    wait_for_idle,
    write_results,
)
from bench.targets import target

PG_DSN = os.environ.get("AGORA_BENCH_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("AGORA_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
ISSUER, AUDIENCE = "agora-auth", "agora"
IDLE_THRESHOLD = 0.2  # cores busy with other work before a round, above which we wait
RATE_TARGET = target("publications", "agora / flask, requests/s")  # the table: bench/targets.py
CPU_TARGET = target("publications", "agora / flask, CPU per request")
TARGET = RATE_TARGET.bound
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
SERVERS = ("agora", "flask")
WHAT = {
    "agora": "agora serve publications (uvicorn, 2 workers): guard + revocation + "
    "active-user check + page query + orjson",
    "flask": "Flask + gunicorn (2 sync workers): PyJWT decode, Redis GET user:<id>, "
    "same SQL (see settings.flask_sql), same JSON",
}


@dataclass(frozen=True)
class Fixture:
    """What the servers need: where the data is, and who asks."""

    pg_url: str  # SQLAlchemy form, for Agora
    pg_dsn: str  # libpq form, for the Flask app
    namespace: str
    secret: str
    token: str  # the connected user with 10 publications
    token_not_connected: str
    user_id: str


def libpq_dsn(database: str) -> str:
    return PG_DSN.rsplit("/", 1)[0] + f"/{database}"


def sqlalchemy_url(database: str) -> str:
    return libpq_dsn(database).replace("postgresql://", "postgresql+asyncpg://", 1)


def cached_user(name: str, email: str, last_activity_at: datetime) -> bytes:
    """`user:<id>` exactly as docs/contracts.md fixes it (and as the status cache writes it)."""
    value = {
        "status": "connected",
        "name": name,
        "email": email,
        "last_activity_at": last_activity_at.isoformat(),
    }
    return json.dumps(value).encode()


def seed(dsn: str, user_id: str, publications: int, now: datetime) -> None:
    """A connected `pub_users` row (as the consumer leaves it) and the user's posts."""
    with psycopg.connect(dsn, autocommit=True) as connection:
        connection.execute(
            "INSERT INTO pub_users (user_id, name, email, status, last_activity_at,"
            " updated_at, last_event_seq, last_event_at)"
            " VALUES (%s, %s, %s, 'connected', %s, %s, 1, %s)",
            (user_id, "Bench User", f"{user_id}@example.com", now, now, now),
        )
        # The user refused with 403: logged out after the bench issues its token (a user
        # never seen is let in on a fresh token: its login event may be on its way).
        off = now + timedelta(hours=1)
        connection.execute(
            "INSERT INTO pub_users (user_id, name, email, status, last_activity_at,"
            " updated_at, last_event_seq, last_event_at)"
            " VALUES (%s, %s, %s, 'disconnected', %s, %s, 2, %s)",
            (f"{user_id}-off", "Bench Off", f"{user_id}-off@example.com", now, off, off),
        )
        with connection.cursor() as cursor:
            cursor.executemany(
                "INSERT INTO publications (user_id, title, body, created_at, updated_at)"
                " VALUES (%s, %s, %s, %s, %s)",
                [
                    (
                        user_id,
                        f"Publication {n}",
                        f"<p>Body of publication {n}: "
                        + "lorem ipsum dolor sit amet " * 6
                        + "</p>",
                        now - timedelta(minutes=publications - n),
                        now - timedelta(minutes=publications - n),
                    )
                    for n in range(1, publications + 1)
                ],
            )


@contextmanager
def throwaway_data(publications: int) -> Iterator[Fixture]:
    """A migrated database, a Redis namespace, one connected user with posts; removed after."""
    run_id = secrets.token_hex(4)
    database = f"agora_bench_pub_{run_id}"
    namespace = f"agora-bench:{run_id}:"
    secret = secrets.token_urlsafe(48)
    tokens = TokenService(secret, issuer=ISSUER, audience=AUDIENCE)
    user_id = f"bench-{run_id}"
    with psycopg.connect(PG_DSN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{database}"')
    cache = redis.Redis.from_url(REDIS_URL)
    try:
        upgrade(sqlalchemy_url(database))
        now = datetime.now(UTC)
        seed(libpq_dsn(database), user_id, publications, now)
        # The user as the consumer caches them, TTL 1 h; AGORA_ACTIVITY_WRITE_INTERVAL
        # stays at 60 s, so the activity write comes about once a minute, as in production.
        cache.set(
            f"{namespace}user:{user_id}",
            cached_user("Bench User", f"{user_id}@example.com", now),
            ex=3600,
        )
        yield Fixture(
            pg_url=sqlalchemy_url(database),
            pg_dsn=libpq_dsn(database),
            namespace=namespace,
            secret=secret,
            token=tokens.issue_access(user_id, "bench").token,
            token_not_connected=tokens.issue_access(f"{user_id}-off", "bench-off").token,
            user_id=user_id,
        )
    finally:
        keys = list(cache.scan_iter(match=f"{namespace}*", count=1000))
        if keys:
            cache.delete(*keys)
        cache.close()
        with psycopg.connect(PG_DSN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


def server_env(
    fixture: Fixture, agora_pythonpath: str | None, flask_sql: str = "psycopg"
) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("AGORA_")}
    env |= {
        "AGORA_ENV": "test",
        "AGORA_JWT_SECRET": fixture.secret,
        "AGORA_JWT_ISSUER": ISSUER,
        "AGORA_JWT_AUDIENCE": AUDIENCE,
        "AGORA_DATABASE_URL": fixture.pg_url,
        "AGORA_REDIS_URL": REDIS_URL,
        "AGORA_REDIS_NAMESPACE": fixture.namespace,
        "AGORA_AMQP_URL": "",  # the in-process bus: the read path never touches the bus
        "AGORA_LOG_LEVEL": "WARNING",
        "AGORA_BENCH_PG_DSN": fixture.pg_dsn,  # the Flask app's
        "AGORA_BENCH_FLASK_SQL": flask_sql,
    }
    if agora_pythonpath:  # a scratch copy of src/ to measure a change against
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [agora_pythonpath, str(ROOT)]))
    return env


def server_command(server: str, port: int, workers: int) -> list[str]:
    if server == "agora":
        return [
            sys.executable,
            "-m",
            "agora.cli",
            "serve",
            "publications",
            "--workers",
            str(workers),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ]
    return [sys.executable, "-m", "gunicorn", "bench.flask_publications_app:app",
            "--bind", f"127.0.0.1:{port}", "--workers", str(workers),
            "--worker-class", "sync", "--log-level", "warning"]  # fmt: skip


def check_answers(name: str, url: str, fixture: Fixture, publications: int) -> Any:
    """Refuse to measure a server that answers wrongly: a fast 401 or 403 is not a result."""
    status, body = http_get(url, {"Authorization": f"Bearer {fixture.token}"})
    page = json.loads(body) if status == 200 else None
    if page is None or len(page.get("publications", [])) != publications:
        raise SystemExit(f"{name}: expected 200 with {publications} publications, "
                         f"got {status} {body[:300]!r}")  # fmt: skip
    status, body = http_get(url)
    if status != 401:
        raise SystemExit(f"{name}: expected 401 without a token, got {status} {body!r}")
    status, body = http_get(url, {"Authorization": f"Bearer {fixture.token_not_connected}"})
    if status != 403 or json.loads(body).get("error") != "Forbidden":  # Agora adds a reason
        raise SystemExit(f"{name}: expected 403 for a user not connected, got {status} {body!r}")
    return page


def _cpu_seconds(stat: Path) -> tuple[int, float]:
    """(process group, utime + stime in seconds) from a /proc/<pid>/stat."""
    after_name = stat.read_text().rsplit(")", 1)[1].split()
    return int(after_name[2]), (int(after_name[11]) + int(after_name[12])) / CLOCK_TICKS


class CostMeter:
    """CPU time per request of the server, of its PostgreSQL backends and of Redis.

    Unlike requests/s, this barely moves when other work shares the machine, and on a
    2-core box the three compete for the same cores: it is what a quiet machine's
    throughput follows. Redis is the whole (shared) redis-server, so it counts other
    users' commands too; PostgreSQL is the backends connected to our database only.
    """

    def __init__(self, server_group: int, dsn: str) -> None:
        self.group = server_group
        self.dsn = dsn

    def _postgres_pids(self) -> list[int]:
        with psycopg.connect(self.dsn, autocommit=True) as connection:
            rows = connection.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
                " AND pid <> pg_backend_pid()"
            ).fetchall()
        return [int(row[0]) for row in rows]

    def _snapshot(self) -> dict[int, tuple[str, float]]:
        """(part, CPU seconds) of every process that counts, by pid."""
        postgres = set(self._postgres_pids())
        found: dict[int, tuple[str, float]] = {}
        for proc in Path("/proc").glob("[0-9]*"):
            try:
                group, cpu = _cpu_seconds(proc / "stat")
                name = (proc / "comm").read_text().strip()
            except (OSError, IndexError, ValueError):
                continue
            pid = int(proc.name)
            if group == self.group:
                found[pid] = ("server", cpu)
            elif pid in postgres:
                found[pid] = ("postgres", cpu)
            elif name == "redis-server":
                found[pid] = ("redis", cpu)
        return found

    @contextmanager
    def measuring(self, result: list[WrkResult]) -> Iterator[dict[str, float | None]]:
        """Yields a dict filled, after the block, with CPU ms per request of each part
        (the block appends its wrk result to `result`)."""
        out: dict[str, float | None] = {}
        try:
            before = self._snapshot()
        except OSError:  # no /proc
            yield out
            return
        yield out
        after = self._snapshot()
        requests = result[-1].requests if result else 0
        spent = {"server": 0.0, "postgres": 0.0, "redis": 0.0}
        # A process that ended during the round took its CPU time with it (left out); one
        # that started during it spent all of its time in the round.
        for pid, (part, cpu) in after.items():
            spent[part] += cpu - before.get(pid, (part, 0.0))[1]
        for part, seconds in spent.items():
            out[part] = round(1000 * seconds / requests, 3) if requests else None
        out["total"] = round(sum(v for v in out.values() if v is not None), 3)


# Where a sample of the Agora worker's main thread is charged: the first part whose
# marker (a function in the stack, as py-spy names it) appears in the stack.
PROFILE_PARTS = [
    ("serialization: item(), orjson", ("item (agora/services/publications/schemas.py",
                                       "json_response (agora/services/publications/routes.py")),
    ("revocation lookup (Redis MGET)", ("RevocationStore.is_revoked",)),
    ("active-user check (Redis GETEX)", ("UserStatusService.check_active",)),
    ("guard: token read, verify (cached), identity", ("authenticate (agora/web/guard.py",)),
    ("SQL: BEGIN", ("_start_transaction",)),
    ("SQL: ROLLBACK + session close", ("AsyncSession.close", "Transaction.rollback")),
    ("SQL: the query (build, compile cache, execute, rows)", ("PublicationService.page",)),
    ("FastAPI: dependency solving", ("solve_dependencies",)),
    ("FastAPI/Starlette: middleware, routing, response", ("run_asgi",)),
    ("uvicorn (HTTP parsing, transport) and the event loop", ("Server.run",)),
]  # fmt: skip


def profile_breakdown(raw: Path) -> dict[str, float]:
    """Share of the worker's main-thread samples per part, from py-spy's raw output."""
    counts = dict.fromkeys((name for name, _ in PROFILE_PARTS), 0)
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, number = line.rpartition(" ")
        if "Server.run" not in stack:  # other threads (uvicorn's ping/pong) are idle
            continue
        total += int(number)
        for name, markers in PROFILE_PARTS:
            if any(marker in stack for marker in markers):
                counts[name] += int(number)
                break
    return {name: round(100 * n / total, 1) for name, n in counts.items()} if total else {}


def uvicorn_workers(group: int) -> list[int]:
    pids = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            in_group = _cpu_seconds(proc / "stat")[0] == group
            command = (proc / "cmdline").read_bytes()
        except (OSError, IndexError, ValueError):
            continue
        if in_group and b"spawn_main" in command:
            pids.append(int(proc.name))
    return sorted(pids)


def find_py_spy() -> str:
    found = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(found).exists():
        raise SystemExit("--py-spy needs py-spy: .venv/bin/pip install py-spy")
    return found


def profile_agora(url: str, group: int, headers: dict[str, str], args: argparse.Namespace) -> None:
    """One more round on Agora while py-spy samples one worker; prints the breakdown."""
    py_spy = find_py_spy()
    out = Path(args.py_spy)
    worker = uvicorn_workers(group)[0]
    spy = subprocess.Popen(
        [py_spy, "record", "--pid", str(worker), "--duration", str(args.duration),
         "--rate", "250", "--format", "raw", "--output", str(out)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    result = run_wrk(url, seconds=args.duration + 1, headers=headers,
                     connections=args.connections, threads=args.threads)  # fmt: skip
    spy.wait(timeout=60)
    print(f"\nprofile of agora worker {worker} ({result.requests_per_s:,.0f} req/s meanwhile), "
          f"raw stacks in {out}:")  # fmt: skip
    for name, share in profile_breakdown(out).items():
        print(f"  {share:5.1f}%  {name}")


def versions() -> dict[str, str]:
    names = ("fastapi", "starlette", "uvicorn", "uvloop", "httptools", "sqlalchemy", "asyncpg",
             "redis", "orjson", "flask", "gunicorn", "pyjwt", "psycopg")  # fmt: skip
    found = {}
    for name in names:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "absent"
    return found


def measure(
    args: argparse.Namespace, fixture: Fixture
) -> tuple[dict[str, list[WrkResult]], dict[str, list[dict[str, float | None]]]]:
    require_wrk()
    servers = [s for s in SERVERS if not args.only or s in args.only]
    env = server_env(fixture, args.agora_pythonpath, args.flask_sql)
    load = {"connections": args.connections, "threads": args.threads}
    headers = {"Authorization": f"Bearer {fixture.token}"}
    results: dict[str, list[WrkResult]] = {server: [] for server in servers}
    costs: dict[str, list[dict[str, float | None]]] = {server: [] for server in servers}
    with ExitStack() as stack:
        urls: dict[str, str] = {}
        meters: dict[str, OtherCpu] = {}
        cost_meters: dict[str, CostMeter] = {}
        for server in servers:
            port = free_port()
            urls[server] = f"http://127.0.0.1:{port}{PATH}"
            group = stack.enter_context(
                serving(
                    server_command(server, port, args.workers),
                    urls[server],
                    env,
                    timeout=args.start_timeout,
                )
            )
            meters[server] = OtherCpu(group)
            cost_meters[server] = CostMeter(group, fixture.pg_dsn)
        pages = {s: check_answers(s, urls[s], fixture, args.publications) for s in servers}
        if len(pages) == 2 and pages["agora"] != pages["flask"]:
            raise SystemExit(f"the servers disagree:\n{pages['agora']}\n{pages['flask']}")
        for server in servers:
            print(f"  {server}: warm-up {args.warmup} s", flush=True)
            run_wrk(urls[server], seconds=args.warmup, headers=headers, **load)
        # Rounds alternate the servers, so a change in the machine's load hits both.
        for round_no in range(1, args.rounds + 1):
            for server in servers:
                if args.idle_wait:
                    # Our servers idle between loads, so what is busy now is someone else.
                    busy = wait_for_idle(args.idle_wait, IDLE_THRESHOLD)
                    if busy is not None and busy > IDLE_THRESHOLD:
                        print(f"    note: machine still busy ({busy:.2f} cores) after waiting")
                runs = results[server]
                with (
                    cost_meters[server].measuring(runs) as cost,
                    meters[server].measuring() as other,
                ):
                    runs.append(
                        run_wrk(urls[server], seconds=args.duration, headers=headers, **load)
                    )
                result = runs[-1]
                result.other_cpu_cores = other["cores"]
                # The harness counts our own PostgreSQL and Redis work as "other": take
                # it out to see what the rest of the machine took.
                ours = ((cost.get("postgres") or 0) + (cost.get("redis") or 0)) * result.requests
                if other["cores"] is not None:
                    cost["others_cores"] = round(
                        max(0.0, other["cores"] - ours / 1000 / args.duration), 2
                    )
                costs[server].append(cost)
                if result.non_2xx or any(result.socket_errors.values()):
                    print(f"    note: {result.non_2xx} non-2xx, errors {result.socket_errors}")
                print(f"  {server}: round {round_no}: {result.requests_per_s:,.0f} req/s, "
                      f"p50 {result.latency_p50_ms:.2f} ms, p99 {result.latency_p99_ms:.2f} ms, "
                      f"CPU ms/request {cost} "
                      f"(other processes used {other['cores']} cores, of which not our "
                      f"PostgreSQL/Redis: {cost.get('others_cores')})", flush=True)  # fmt: skip
        if args.py_spy and "agora" in servers:
            profile_agora(urls["agora"], meters["agora"].group, headers, args)
    return results, costs


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.publications_bench", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--duration", type=int, default=10, help="seconds per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=3, help="seconds of warm-up per server")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1, help="wrk threads")
    parser.add_argument("--workers", type=int, default=2, help="worker processes per server")
    parser.add_argument("--publications", type=int, default=10, help="the user's rows")
    parser.add_argument(
        "--idle-wait", type=float, default=60,
        help="before each round, wait up to this many seconds for other processes to go "
        "quiet (a shared machine); 0 to never wait",
    )  # fmt: skip
    parser.add_argument(
        "--start-timeout", type=float, default=120,
        help="seconds a server may take to answer after its start (a loaded machine)",
    )  # fmt: skip
    parser.add_argument("--only", nargs="*", choices=SERVERS, help="servers to run")
    parser.add_argument(
        "--agora-pythonpath", metavar="DIR",
        help="run Agora from this copy of src/ (to measure a change); recorded in the JSON",
    )  # fmt: skip
    parser.add_argument(
        "--py-spy", metavar="FILE",
        help="after the rounds, one more Agora round under py-spy (raw stacks into FILE) "
        "and the share of each part of the request",
    )  # fmt: skip
    parser.add_argument(
        "--flask-sql", choices=("psycopg", "sqlalchemy"), default="psycopg",
        help="the Flask app's SQL: plain psycopg in autocommit (the default, the stronger "
        "baseline) or a SQLAlchemy Session with a transaction per request",
    )  # fmt: skip
    parser.add_argument("--label", default="", help="a word for the results file name")
    args = parser.parse_args(argv)
    if not 1 <= args.publications <= 20:
        parser.error("--publications must fit in one default page (1 to 20)")
    # Stopped by a signal, still stop the servers and drop the data: SystemExit unwinds.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    require_wrk()
    if args.py_spy:
        find_py_spy()
    print(f"load average before: {os.getloadavg()}", flush=True)
    with throwaway_data(args.publications) as fixture:
        print(f"{args.workers} workers each, wrk -t{args.threads} -c{args.connections}, "
              f"{args.rounds} x {args.duration} s, {args.publications} publications",
              flush=True)  # fmt: skip
        results, costs = measure(args, fixture)
    medians: dict[str, dict[str, float]] = {
        server: {
            "requests_per_s": statistics.median(r.requests_per_s for r in runs),
            "latency_p50_ms": statistics.median(r.latency_p50_ms for r in runs),
            "latency_p99_ms": statistics.median(r.latency_p99_ms for r in runs),
            "other_cpu_cores_max": max((r.other_cpu_cores or 0.0) for r in runs),
        }
        for server, runs in results.items()
    }
    cpu: dict[str, dict[str, float]] = {
        server: {
            part: statistics.median(c.get(part) or 0.0 for c in rounds)
            for part in ("server", "postgres", "redis", "total")
        }
        for server, rounds in costs.items()
    }
    print(f"\n{'server':<7} {'median req/s':>12} {'p50 ms':>7} {'p99 ms':>7} "
          f"{'other cores (max)':>17}  CPU ms/request = server + postgres + redis")  # fmt: skip
    for server, m in medians.items():
        c = cpu[server]
        print(f"{server:<7} {m['requests_per_s']:>12,.0f} {m['latency_p50_ms']:>7.2f} "
              f"{m['latency_p99_ms']:>7.2f} {m['other_cpu_cores_max']:>17.2f}  "
              f"{c['total']:.3f} = {c['server']:.3f} + {c['postgres']:.3f} + "
              f"{c['redis']:.3f}")  # fmt: skip
    ratio = cpu_ratio = None
    if len(medians) == 2:
        ratio = medians["agora"]["requests_per_s"] / medians["flask"]["requests_per_s"]
        print(f"\nagora / flask: {ratio:.2f}x  ({RATE_TARGET.verdict(ratio)})")
        if cpu["agora"]["total"] and cpu["flask"]["total"]:
            cpu_ratio = cpu["flask"]["total"] / cpu["agora"]["total"]
            print(f"CPU per request, flask / agora: {cpu_ratio:.2f}x  (server + its PostgreSQL "
                  "backends + redis-server; steadier than req/s under load); agora / flask "
                  f"{1 / cpu_ratio:.2f}x ({CPU_TARGET.verdict(1 / cpu_ratio)})")  # fmt: skip
    stamp = datetime.now(UTC)
    label = f"-{args.label}" if args.label else ""
    out = write_results(f"publications{label}", {
        "benchmark": "publications", "date": stamp.isoformat(timespec="seconds"),
        "command": "python -m bench.publications_bench "
        + " ".join(sys.argv[1:] if argv is None else argv),
        "settings": vars(args), "machine": machine(), "versions": versions(),
        "load_average_after": os.getloadavg(),
        "servers": {server: {"what": WHAT[server], "path": PATH, **medians[server],
                             "cpu_ms_per_request": cpu[server],
                             "rounds": [asdict(r) | {"cpu_ms_per_request": c}
                                        for r, c in zip(results[server], costs[server],
                                                        strict=True)]}
                    for server in results},
        "ratio": ratio, "target": TARGET, "cpu_per_request_ratio_flask_over_agora": cpu_ratio,
    })  # fmt: skip
    print(f"results: {out}")
    after_run(out)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        raise SystemExit("interrupted; the servers were stopped and the data removed") from None
