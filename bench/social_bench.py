"""The social socket against a bare uvicorn socket and python-socketio (issue 5).

    .venv/bin/python -m bench.social_bench [--seconds 5] [--rounds 2] [--connections 50]
        [--devices 100] [--messages 500] [--idle 10000] [--clients 2] [--deflate]
        [--profile DIR] [--skip echo-fanout,idle,redis] [--quick]

Servers, each its own process, one uvicorn worker, on a free 127.0.0.1 port:

    agora        `agora serve` (every service, embedded backends: SQLite, in-process
                 cache and pub/sub: the honest backend for one worker)
    agora-redis  the same with AGORA_REDIS_URL: cache (tickets, limits) and pub/sub in
                 Redis, in a key namespace of its own, deleted at the end
    bare         bench/socket_baselines.py:bare_app (Starlette, no auth, no limits)
    socketio     bench/socket_baselines.py:socketio_app (python-socketio, ASGI)

The Agora servers run with AGORA_SOCIAL_MESSAGES_PER_WINDOW and
AGORA_SOCIAL_CONNECTIONS_PER_IP raised to 10^9 (one IP, one sender: the default limits
would close the bench's sockets) and a low argon2 cost (users are registered through
the real routes). Everything else is the default, rate limiter included: every frame
still pays its counter.

The load comes from separate processes (`--clients`, plus one for the fan-out
sender) using the `websockets` package on uvloop, without permessage-deflate (the
framework is measured, not zlib; `--deflate` adds idle rows with it, as browsers
offer it). Rows:

    echo     `--connections` sockets, each sending a chat frame and waiting for its
             echo, back to back, for `--seconds` (after 0.5 s of warm-up): round
             trips/s, p50/p99 latency
    fan-out  one sender sends `--messages` chat frames (at most 16 un-acked) to a user
             (a room) with `--devices` sockets; deliveries/s = deliveries / (first send
             to last receipt), p50/p99 latency from a send timestamp in the content
    idle     `--idle` sockets opened and left idle on a fresh server; (RSS after - RSS
             before) / sockets. For Agora the tickets are fetched first (the memory
             servers run with AGORA_WS_TICKET_TTL=300 so that they can be), so RSS
             "before" already holds what issuing them cost; the sockets are spread
             over 100 users

Each echo and fan-out row also reports the server's CPU (cores, and CPU microseconds
per round trip or delivery: less sensitive to a loaded machine than rates), the
clients' CPU, and what the rest of the machine used meanwhile (`other_cores`), with
the load average. Rounds alternate between the servers; each row reports its median
round (the lower of two) and lists every round. JSON in bench/results/. About 2.5
minutes on a quiet 2-core machine.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing as mp
import os
import resource
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
from websockets.asyncio.client import ClientConnection, connect

from bench.charts import after_run
from bench.harness import free_port, serving, wait_for_idle, write_results
from bench.targets import target as target_of

PYTHON = sys.executable
REDIS_URL = os.environ.get("AGORA_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
TICKET_PATH = "/social/api/socials/connect-token"
PASSWORD = "bench password 1"
CONTENT_FILL = "x" * 64  # a short chat line after the timestamp
WINDOW = 16  # un-acked chat frames the fan-out sender keeps in flight
IDLE_USERS = 100
SOCKET_OPTIONS: dict[str, Any] = {"ping_interval": None, "open_timeout": 60, "max_size": 2**20}

BIG = str(10**9)
AGORA_ENV = {
    "AGORA_ENV": "dev",
    "AGORA_GRPC_PORT": "0",  # HTTP and sockets only; 50051 may be a dev server's
    "AGORA_COOKIE_SECURE": "false",
    "AGORA_ARGON2_TIME_COST": "1",
    "AGORA_ARGON2_MEMORY_COST": "1024",
    "AGORA_ARGON2_PARALLELISM": "1",
    "AGORA_REGISTER_IP_MAX_ATTEMPTS": "1000000",  # every bench user comes from one IP
    "AGORA_SOCIAL_MESSAGES_PER_WINDOW": BIG,
    "AGORA_SOCIAL_CONNECTIONS_PER_IP": BIG,
}
UVICORN_OPTIONS = [  # what `agora serve` passes, with the settings' defaults
    "--ws-max-size", "65536", "--ws-ping-interval", "20", "--ws-ping-timeout", "20",
    "--no-access-log", "--log-level", "warning",
]  # fmt: skip


# --- servers ---------------------------------------------------------------------------


@dataclass
class Target:
    name: str
    kind: str  # agora | bare | socketio
    base: str
    pid: int
    user_ids: list[str] = field(default_factory=list)
    tokens: list[str] = field(default_factory=list)  # agora: access token per user

    def spec(self) -> dict[str, Any]:
        return {"kind": self.kind, "base": self.base, "tokens": self.tokens}

    def recipient(self, user: int) -> str:
        return self.user_ids[user] if self.kind == "agora" else f"u{user}"


def register_users(base: str, count: int) -> tuple[list[str], list[str]]:
    ids, tokens = [], []
    with httpx.Client(base_url=base, timeout=30) as http:
        for _ in range(count):
            login = f"b_{uuid.uuid4().hex[:12]}"
            created = http.post(
                "/auth/api/register",
                json={"login": login, "password": PASSWORD, "email": f"{login}@example.com",
                      "name": login},
            )  # fmt: skip
            created.raise_for_status()
            logged = http.post("/auth/api/login", json={"login": login, "password": PASSWORD})
            logged.raise_for_status()
            http.cookies.clear()
            ids.append(str(created.json()["id"]))
            tokens.append(str(logged.json()["token"]))
    return ids, tokens


@contextlib.contextmanager
def agora_server(
    name: str, users: int, redis: bool = False, extra_env: dict[str, str] | None = None
) -> Iterator[Target]:
    port = free_port()
    namespace = f"bench-social-{secrets.token_hex(4)}:"
    with tempfile.TemporaryDirectory(prefix="agora-social-bench-") as data_dir:
        env = {**AGORA_ENV, "AGORA_DATA_DIR": data_dir, **(extra_env or {})}
        if redis:
            env |= {"AGORA_REDIS_URL": REDIS_URL, "AGORA_REDIS_NAMESPACE": namespace}
        command = [PYTHON, "-m", "agora.cli", "serve", "--port", str(port)]
        base = f"http://127.0.0.1:{port}"
        try:
            with serving(command, f"{base}/auth/.well-known/jwks.json", env, 60) as pid:
                ids, tokens = register_users(base, users)
                yield Target(name, "agora", base, pid, ids, tokens)
        finally:
            if redis:
                delete_namespace(namespace)


def share_a_conversation(target: Target) -> None:
    """Users 0 and 1 in a direct conversation: a chat reaches only someone the sender
    shares one with (AGORA_SOCIAL_CHAT_REACH, default), else it is refused, unacked."""
    headers = {"Authorization": f"Bearer {target.tokens[0]}"}
    with httpx.Client(base_url=target.base, headers=headers, timeout=30) as http:
        answer = http.post(
            "/api/v1/conversations", json={"kind": "direct", "user_id": target.user_ids[1]}
        )
        answer.raise_for_status()


def delete_namespace(namespace: str) -> None:
    import redis as redis_sync

    client = redis_sync.Redis.from_url(REDIS_URL)
    try:
        keys = list(client.scan_iter(f"{namespace}*", count=1000))
        for start in range(0, len(keys), 1000):
            client.delete(*keys[start : start + 1000])
    finally:
        client.close()


@contextlib.contextmanager
def baseline_server(name: str, users: int) -> Iterator[Target]:
    port = free_port()
    app = f"bench.socket_baselines:{name}_app"
    command = [PYTHON, "-m", "uvicorn", app, "--port", str(port), *UVICORN_OPTIONS]
    base = f"http://127.0.0.1:{port}"
    with serving(command, f"{base}/health", {}, 30) as pid:
        yield Target(name, name, base, pid, [f"u{i}" for i in range(users)])


def redis_available() -> bool:
    import redis as redis_sync

    try:
        client = redis_sync.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
        client.ping()
        client.close()
        return True
    except Exception:
        return False


# --- measuring the server and the machine -----------------------------------------------

TICK = os.sysconf("SC_CLK_TCK")


def group_cpu(group: int) -> float:
    """CPU seconds used so far by the processes of process group `group`."""
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) == group:
                total += int(fields[11]) + int(fields[12])
    return total / TICK


def machine_busy() -> float:
    """CPU seconds the whole machine has been busy (user, nice, system, steal)."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]
    return sum(int(fields[i]) for i in (0, 1, 2, 7)) / TICK


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def loadavg() -> list[float]:
    return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]


@dataclass
class Snapshot:
    at: float
    server: float
    machine: float

    @classmethod
    def take(cls, group: int) -> Snapshot:
        return cls(time.time(), group_cpu(group), machine_busy())


def usage(before: Snapshot, after: Snapshot, client_cpu: float) -> dict[str, float]:
    wall = after.at - before.at
    server = after.server - before.server
    other = (after.machine - before.machine) - server - client_cpu
    return {
        "wall_s": round(wall, 3),
        "server_cores": round(server / wall, 2),
        "client_cores": round(client_cpu / wall, 2),
        "other_cores": round(max(0.0, other) / wall, 2),
        "server_cpu_s": round(server, 3),
    }


def quantiles(latencies: list[float]) -> dict[str, float | None]:
    if not latencies:
        return {"p50_ms": None, "p99_ms": None}
    ordered = sorted(latencies)
    pick = lambda q: round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 2)  # noqa: E731
    return {"p50_ms": pick(0.50), "p99_ms": pick(0.99)}


# --- the load generator (client processes) ----------------------------------------------


class Peer:
    """One client socket speaking the social frames (or socket.io's wrapping of them)."""

    def __init__(self, ws: ClientConnection, socketio: bool) -> None:
        self.ws = ws
        self.socketio = socketio

    async def send(self, frame: dict[str, Any]) -> None:
        if self.socketio:
            await self.ws.send("42" + orjson.dumps(["chat", frame]).decode())
        else:
            await self.ws.send(orjson.dumps(frame).decode())

    async def recv(self) -> dict[str, Any]:
        while True:
            message = await self.ws.recv()
            if not self.socketio:
                return orjson.loads(message)  # type: ignore[no-any-return,unused-ignore]
            if message == "2":  # engine.io ping
                await self.ws.send("3")
            elif isinstance(message, str) and message.startswith("42"):
                _event, data = orjson.loads(message[2:])
                return data  # type: ignore[no-any-return,unused-ignore]


def ws_base(base: str) -> str:
    return base.replace("http://", "ws://")


async def ticket(http: httpx.AsyncClient, spec: dict[str, Any], user: int) -> str:
    response = await http.get(
        spec["base"] + TICKET_PATH, headers={"Authorization": f"Bearer {spec['tokens'][user]}"}
    )
    response.raise_for_status()
    return str(response.json()["token"])


async def tickets_for(spec: dict[str, Any], users: list[int]) -> list[str]:
    """A fresh ticket for each of `users`, 16 requests at a time."""
    tickets = [""] * len(users)
    limit = asyncio.Semaphore(16)
    async with httpx.AsyncClient(timeout=60) as http:

        async def fetch(index: int) -> None:
            async with limit:
                tickets[index] = await ticket(http, spec, users[index])

        await asyncio.gather(*(fetch(i) for i in range(len(users))))
    return tickets


async def open_peer(
    spec: dict[str, Any], user: int, token: str | None = None, deflate: bool = False
) -> Peer:
    """A socket past its welcome; `token` is the Agora ticket."""
    options = dict(SOCKET_OPTIONS, compression="deflate" if deflate else None)
    base, kind = ws_base(spec["base"]), spec["kind"]
    if kind == "agora":
        ws = await connect(f"{base}/social/api/socials/ws?token={token}", **options)
        welcome = orjson.loads(await ws.recv())
        if welcome.get("type") != "connected":
            raise RuntimeError(f"refused: {welcome}")
        return Peer(ws, socketio=False)
    if kind == "bare":
        return Peer(await connect(f"{base}/ws?room=u{user}", **options), socketio=False)
    ws = await connect(f"{base}/socket.io/?EIO=4&transport=websocket", **options)
    opened = await ws.recv()
    if not str(opened).startswith("0"):
        raise RuntimeError(f"engine.io open expected, got {opened!r}")
    await ws.send("40" + orjson.dumps({"room": f"u{user}"}).decode())
    joined = await ws.recv()
    if not str(joined).startswith("40"):
        raise RuntimeError(f"socket.io connect refused: {joined!r}")
    return Peer(ws, socketio=True)


async def open_peers(spec: dict[str, Any], users: list[int], deflate: bool = False) -> list[Peer]:
    async with httpx.AsyncClient(timeout=30) as http:

        async def one(user: int) -> Peer:
            token = await ticket(http, spec, user) if spec["kind"] == "agora" else None
            return await open_peer(spec, user, token, deflate)

        return list(await asyncio.gather(*(one(user) for user in users)))


async def close_all(peers: list[Peer]) -> None:
    for peer in peers:
        transport = peer.ws.transport
        if transport is not None:
            transport.abort()


async def wait_at(barrier: Any) -> None:
    await asyncio.to_thread(barrier.wait, 120)


async def sleep_until(moment: float) -> None:
    await asyncio.sleep(max(0.0, moment - time.time()))


async def echo_job(job: dict[str, Any], sync: dict[str, Any]) -> dict[str, Any]:
    peers = await open_peers(job["target"], job["users"])
    await wait_at(sync["ready"])
    await wait_at(sync["go"])
    go, start_at, end_at = sync["times"][:]
    latencies: list[float] = []
    cpu: list[float] = []

    async def loop(peer: Peer) -> None:
        await sleep_until(go)
        frame = {"type": "chat", "content": CONTENT_FILL, "timestamp": "2024-05-01T10:00:00Z"}
        while (now := time.time()) < end_at:
            started = time.perf_counter()
            await peer.send(frame)
            answer = await peer.recv()
            if answer.get("type") != "echo":
                raise RuntimeError(f"echo expected, got {answer}")
            if now >= start_at:
                latencies.append(time.perf_counter() - started)

    async def clock() -> None:
        await sleep_until(start_at)
        cpu.append(time.process_time())
        await sleep_until(end_at)
        cpu.append(time.process_time())

    await asyncio.gather(clock(), *(loop(peer) for peer in peers))
    await close_all(peers)
    return {"latencies": latencies, "cpu": cpu[1] - cpu[0]}


async def fanout_receivers(job: dict[str, Any], sync: dict[str, Any]) -> dict[str, Any]:
    peers = await open_peers(job["target"], job["users"])
    await wait_at(sync["ready"])
    await wait_at(sync["go"])
    _go, _start_at, deadline = sync["times"][:]
    cpu_start = time.process_time()
    latencies: list[float] = []
    last = [0.0]

    async def receive(peer: Peer) -> None:
        got = 0
        while got < job["messages"]:
            frame = await peer.recv()
            if frame.get("type") == "chat":
                now = time.time()
                latencies.append(now - float(frame["content"].split(" ", 1)[0]))
                last[0] = max(last[0], now)
                got += 1

    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(
            asyncio.gather(*(receive(peer) for peer in peers)), deadline - time.time()
        )
    cpu = time.process_time() - cpu_start
    await close_all(peers)
    return {"latencies": latencies, "last": last[0], "cpu": cpu}


async def fanout_sender(job: dict[str, Any], sync: dict[str, Any]) -> dict[str, Any]:
    (peer,) = await open_peers(job["target"], job["users"])
    await wait_at(sync["ready"])
    await wait_at(sync["go"])
    go, _start_at, deadline = sync["times"][:]
    await sleep_until(go)
    cpu_start = time.process_time()
    slots = asyncio.Semaphore(WINDOW)
    acks = [0]
    refused: dict[str, int] = {}  # frames answered with something else than an ack

    async def read_acks() -> None:
        while acks[0] < job["messages"]:
            frame = await peer.recv()
            if frame.get("type") == "ack":
                acks[0] += 1
                slots.release()
            elif frame.get("type") == "error":
                code = str(frame.get("message") or frame)
                refused[code] = refused.get(code, 0) + 1

    async def send_all() -> None:
        for index in range(job["messages"]):
            await slots.acquire()
            content = f"{time.time():.6f} {CONTENT_FILL}"
            await peer.send(
                {"type": "chat", "to": job["to"], "content": content, "id": f"c{index}"}
            )
        await reader

    reader = asyncio.create_task(read_acks())
    first = time.time()
    # Bounded by the deadline: a missing ack ends the row (its `acks` says so), never hangs it.
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(send_all(), deadline - time.time())
    cpu = time.process_time() - cpu_start
    await close_all([peer])
    return {"first": first, "acks": acks[0], "cpu": cpu, "refused": refused}


async def idle_job(job: dict[str, Any], sync: dict[str, Any]) -> dict[str, Any]:
    """Tickets first, then (after the parent's RSS reading) every socket, left open."""
    spec, users, deflate = job["target"], job["users"], job["deflate"]
    warm = await open_peers(spec, users[:1], deflate)  # not counted: first-socket costs
    errors: dict[str, int] = {}
    tokens: list[str | None] = [None] * len(users)
    if spec["kind"] == "agora":
        tokens = list(await tickets_for(spec, users))
    await wait_at(sync["ready"])
    await wait_at(sync["go"])
    started = time.time()
    limit = asyncio.Semaphore(64)
    peers: list[Peer] = []

    async def one(index: int) -> None:
        async with limit:
            try:
                peers.append(await open_peer(spec, users[index], tokens[index], deflate))
            except Exception as exc:  # counted and reported: the largest count reached
                name = type(exc).__name__
                errors[name] = errors.get(name, 0) + 1

    await asyncio.gather(*(one(i) for i in range(len(users))))
    sync["out"].put({"opened": len(peers), "errors": errors, "seconds": time.time() - started})
    await wait_at(sync["release"])
    await close_all(peers + warm)
    return {}


JOBS = {
    "echo": echo_job,
    "receivers": fanout_receivers,
    "sender": fanout_sender,
    "idle": idle_job,
}


def run_client_job(jobs: dict[str, Any], job: dict[str, Any], sync: dict[str, Any]) -> None:
    """A client process's body: the job named by its role, its result (or error) to
    the parent's queue."""
    raise_nofile()
    import uvloop

    try:
        result = uvloop.run(jobs[job["role"]](job, sync))
    except Exception as exc:
        result = {"error": f"{type(exc).__name__}: {exc}"}
        for value in sync.values():  # the parent must not wait for us at any barrier
            if hasattr(value, "abort"):
                value.abort()
    sync["out"].put(result)


def client_main(job: dict[str, Any], sync: dict[str, Any]) -> None:
    run_client_job(JOBS, job, sync)


def raise_nofile() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


# --- rows --------------------------------------------------------------------------------

CTX = mp.get_context("spawn")


def split(items: list[int], parts: int) -> list[list[int]]:
    return [items[i::parts] for i in range(parts) if items[i::parts]]


@contextlib.contextmanager
def client_processes(
    jobs: list[dict[str, Any]],
    target: Callable[[dict[str, Any], dict[str, Any]], None],
    barriers: tuple[str, ...],
    context: Any = CTX,
) -> Iterator[dict[str, Any]]:
    """One process per job running `target(job, sync)` (processes of `context`); the
    parent meets them at the named barriers of `sync`, which also holds a `times` array
    and an `out` queue."""
    sync: dict[str, Any] = {name: context.Barrier(len(jobs) + 1) for name in barriers}
    sync |= {"times": context.Array("d", 3), "out": context.Queue()}
    processes = [context.Process(target=target, args=(job, sync), daemon=True) for job in jobs]
    for process in processes:
        process.start()
    try:
        yield sync
    except threading.BrokenBarrierError:
        error = next((r["error"] for r in drain(sync["out"]) if "error" in r), "no report")
        raise RuntimeError(f"a client process failed: {error}") from None
    finally:
        for process in processes:
            process.join(timeout=30)
            if process.is_alive():
                process.kill()
                process.join()


def clients(jobs: list[dict[str, Any]]) -> contextlib.AbstractContextManager[dict[str, Any]]:
    return client_processes(jobs, client_main, ("ready", "go", "release"))


def drain(queue: Any) -> list[dict[str, Any]]:
    out = []
    with contextlib.suppress(Exception):
        while True:
            out.append(queue.get(timeout=2))
    return out


def results_of(sync: dict[str, Any], count: int, timeout: float) -> list[dict[str, Any]]:
    out = [sync["out"].get(timeout=timeout) for _ in range(count)]
    failed = [r["error"] for r in out if "error" in r]
    if failed:
        raise RuntimeError(f"client failed: {failed[0]}")
    return out


def start(sync: dict[str, Any], warmup: float, seconds: float) -> tuple[float, float, float]:
    sync["ready"].wait(180)
    go = time.time() + 0.2
    times = (go, go + warmup, go + warmup + seconds)
    sync["times"][:] = list(times)
    sync["go"].wait(30)
    return times


@contextlib.contextmanager
def profiled(target: Target, row: str, directory: Path | None) -> Iterator[None]:
    """py-spy on an Agora server over exactly the measured window (`--profile DIR`)."""
    if directory is None or target.kind != "agora":
        yield
        return
    spy_bin = shutil.which("py-spy") or shutil.which("py-spy", path=str(Path(PYTHON).parent))
    if spy_bin is None:
        raise SystemExit("--profile needs py-spy on PATH: pip install py-spy")
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{target.name}-{row}-{datetime.now(UTC):%H%M%S}.txt"
    spy = subprocess.Popen(
        [spy_bin, "record", "--pid", str(target.pid), "--rate",
         "200", "--format", "raw", "--output", str(path), "--nonblocking"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        yield
    finally:
        spy.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
        try:
            spy.wait(30)
        except subprocess.TimeoutExpired:
            spy.kill()
            spy.wait()


def echo_row(target: Target, args: argparse.Namespace) -> dict[str, Any]:
    users = [2 + i % 10 for i in range(args.connections)]
    jobs = [
        {"role": "echo", "target": target.spec(), "users": part}
        for part in split(users, args.clients)
    ]
    load = loadavg()
    with clients(jobs) as sync:
        _go, start_at, end_at = start(sync, 0.5, args.seconds)
        time.sleep(max(0.0, start_at - time.time()))
        with profiled(target, "echo", args.profile):
            before = Snapshot.take(target.pid)
            time.sleep(max(0.0, end_at - time.time()))
            after = Snapshot.take(target.pid)
        out = results_of(sync, len(jobs), args.seconds + 60)
    latencies = [x for r in out for x in r["latencies"]]
    used = usage(before, after, sum(r["cpu"] for r in out))
    rate = len(latencies) / args.seconds
    return {
        "round_trips_per_s": round(rate),
        **quantiles(latencies),
        "server_us_per_op": round(used["server_cpu_s"] / max(1, len(latencies)) * 1e6, 1),
        **used,
        "loadavg": load,
    }


def fanout_row(target: Target, args: argparse.Namespace) -> dict[str, Any]:
    # User 1's devices (Agora) or room u1's sockets receive what user 0 sends.
    jobs = [
        {"role": "receivers", "target": target.spec(), "users": [1] * len(part),
         "messages": args.messages}
        for part in split(list(range(args.devices)), args.clients)
    ]  # fmt: skip
    to = target.recipient(1)
    jobs.append(
        {"role": "sender", "target": target.spec(), "users": [0], "messages": args.messages,
         "to": to}
    )  # fmt: skip
    load = loadavg()
    with clients(jobs) as sync:
        go, _start, _deadline = start(sync, 0.0, 60.0)
        time.sleep(max(0.0, go - time.time()))
        with profiled(target, "fanout", args.profile):
            before = Snapshot.take(target.pid)
            out = results_of(sync, len(jobs), 90)
            after = Snapshot.take(target.pid)
    sender = next(r for r in out if "first" in r)
    got = [r for r in out if "last" in r]
    latencies = [x for r in got for x in r["latencies"]]
    expected = args.messages * args.devices
    span = max(r["last"] for r in got) - sender["first"]
    used = usage(before, after, sum(r["cpu"] for r in out))
    return {
        "deliveries_per_s": round(len(latencies) / span) if span > 0 else None,
        "deliveries": len(latencies),
        "expected": expected,
        "acks": sender["acks"],
        "refused": sender.get("refused", {}),
        **quantiles(latencies),
        "server_us_per_op": round(used["server_cpu_s"] / max(1, len(latencies)) * 1e6, 1),
        **used,
        "loadavg": load,
    }


def idle_memory(
    pid: int,
    jobs: list[dict[str, Any]],
    processes: contextlib.AbstractContextManager[dict[str, Any]],
    settle: float,
) -> dict[str, Any]:
    """The server's RSS before and after the client `processes` open the idle sockets of
    `jobs` (and `settle` seconds of quiet): KiB per socket, errors by kind."""
    with processes as sync:
        sync["ready"].wait(600)
        time.sleep(1.0)
        before = rss_kib(pid)
        sync["go"].wait(30)
        opened = [sync["out"].get(timeout=900) for _ in jobs]
        time.sleep(settle)
        after = rss_kib(pid)
        count = sum(r.get("opened", 0) for r in opened)
        sync["release"].wait(120)
        results_of(sync, len(jobs), 120)
    errors: dict[str, int] = {}
    for r in opened:
        for name, n in r.get("errors", {}).items():
            errors[name] = errors.get(name, 0) + n
    return {
        "sockets": count,
        "errors": errors,
        "rss_before_kib": before,
        "rss_after_kib": after,
        "kib_per_socket": round((after - before) / count, 2) if count else None,
        "open_seconds": round(max(r.get("seconds", 0) for r in opened), 1),
        "loadavg": loadavg(),
    }


def idle_row(target: Target, args: argparse.Namespace, deflate: bool) -> dict[str, Any]:
    users = [i % IDLE_USERS for i in range(args.idle)]
    jobs = [
        {"role": "idle", "target": target.spec(), "users": part, "deflate": deflate}
        for part in split(users, args.clients)
    ]
    measured = idle_memory(target.pid, jobs, clients(jobs), args.settle)
    return {**measured, "asked": args.idle, "deflate": deflate}


# --- the run -------------------------------------------------------------------------------


def median_row(rows: list[dict[str, Any]], key: str) -> dict[str, Any]:
    """The round with the median `key` (the whole round, so its figures belong together)."""
    ordered = sorted(rows, key=lambda r: r[key] or 0)
    chosen = dict(ordered[(len(ordered) - 1) // 2])
    chosen["rounds"] = [r[key] for r in rows]
    return chosen


def ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a and b else None


def throughput(args: argparse.Namespace, names: list[str]) -> dict[str, dict[str, Any]]:
    raw: dict[str, dict[str, list[dict[str, Any]]]] = {n: {"echo": [], "fanout": []} for n in names}
    with contextlib.ExitStack() as stack:
        targets = []
        for name in names:
            if name.startswith("agora"):
                server = agora_server(name, 12, redis=name == "agora-redis")
            else:
                server = baseline_server(name, 12)
            targets.append(stack.enter_context(server))
            if name.startswith("agora"):
                share_a_conversation(targets[-1])
        for round_no in range(args.rounds):
            for target in targets:
                row = echo_row(target, args)
                raw[target.name]["echo"].append(row)
                print(f"round {round_no + 1} echo    {target.name:12} {brief(row)}", flush=True)
            for target in targets:
                row = fanout_row(target, args)
                raw[target.name]["fanout"].append(row)
                print(f"round {round_no + 1} fan-out {target.name:12} {brief(row)}", flush=True)
    return {
        name: {
            "echo": median_row(rows["echo"], "round_trips_per_s"),
            "fanout": median_row(rows["fanout"], "deliveries_per_s"),
            "all_rounds": rows,
        }
        for name, rows in raw.items()
    }


def brief(row: dict[str, Any]) -> str:
    rate = row.get("round_trips_per_s") or row.get("deliveries_per_s")
    refused = f"  REFUSED {row['refused']}" if row.get("refused") else ""
    return (
        f"{rate!s:>7}/s  p50 {row['p50_ms']} ms  p99 {row['p99_ms']} ms  "
        f"server {row['server_cores']} cores ({row['server_us_per_op']} us/op)  "
        f"clients {row['client_cores']}  other {row['other_cores']}  "
        f"load {row['loadavg'][0]}{refused}"
    )


def memory(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    rows: dict[str, dict[str, Any]] = {}
    plans = [("agora", False), ("bare", False)]
    if args.deflate:
        plans += [("agora", True), ("bare", True)]
    for name, deflate in plans:
        label = f"{name}{'+deflate' if deflate else ''}"
        if name == "agora":
            server = agora_server(name, IDLE_USERS, extra_env={"AGORA_WS_TICKET_TTL": "300"})
        else:
            server = baseline_server(name, IDLE_USERS)
        with server as target:
            row = idle_row(target, args, deflate)
        rows[label] = row
        print(
            f"idle    {label:14} {row['sockets']} sockets ({row['errors'] or 'no errors'}), "
            f"RSS {row['rss_before_kib']} -> {row['rss_after_kib']} KiB: "
            f"{row['kib_per_socket']} KiB/socket, opened in {row['open_seconds']} s",
            flush=True,
        )
    return rows


def summary(speed: dict[str, dict[str, Any]], idle: dict[str, dict[str, Any]]) -> dict[str, Any]:
    def rate(name: str, row: str, key: str) -> float | None:
        return speed.get(name, {}).get(row, {}).get(key)

    out: dict[str, Any] = {}
    for agora in ("agora", "agora-redis"):
        if agora not in speed:
            continue
        for row, key in (("echo", "round_trips_per_s"), ("fanout", "deliveries_per_s")):
            for base in ("bare", "socketio"):
                goal = target_of("social", f"{agora} {row} / {base}")  # the table: bench/targets.py
                value = ratio(rate(agora, row, key), rate(base, row, key))
                # The base's server CPU per op over Agora's: above 1, Agora is cheaper.
                cost = ratio(
                    rate(base, row, "server_us_per_op"), rate(agora, row, "server_us_per_op")
                )
                out[f"{agora} {row} / {base}"] = {
                    "rate_ratio": value,
                    "cpu_per_op_ratio": cost,
                    "target": goal.bound,
                    "met": value is not None and goal.reached(value),
                }
    if "agora" in idle:
        kib = idle["agora"]["kib_per_socket"]
        out["agora idle KiB/socket"] = {
            "value": kib,
            "target": 30_000 / 1024,
            "met": kib is not None and kib * 1024 <= 30_000,
            "sockets": idle["agora"]["sockets"],
        }
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="echo measuring time")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--connections", type=int, default=50, help="echo sockets")
    parser.add_argument("--devices", type=int, default=100, help="fan-out receivers")
    parser.add_argument("--messages", type=int, default=500, help="fan-out messages")
    parser.add_argument("--idle", type=int, default=10_000, help="idle sockets")
    parser.add_argument("--settle", type=float, default=3.0, help="seconds before RSS after")
    parser.add_argument("--clients", type=int, default=2, help="client processes")
    parser.add_argument("--idle-wait", type=float, default=10.0)
    parser.add_argument("--skip", default="", help="comma list: echo-fanout, idle, redis")
    parser.add_argument(
        "--deflate", action="store_true", help="also idle rows with permessage-deflate"
    )
    parser.add_argument("--profile", type=Path, help="py-spy the Agora rows into this folder")
    parser.add_argument(
        "--quick", action="store_true",
        help="the regression guard's form (make bench-quick): agora-redis and bare only, "
        "2 rounds of 2 s echo and 200 fan-out messages, no idle rows, no waiting",
    )  # fmt: skip
    args = parser.parse_args(argv)
    skip = set(filter(None, args.skip.split(",")))
    if args.quick:
        args.rounds, args.seconds, args.messages, args.idle_wait = 2, 2.0, 200, 0.0
        skip.add("idle")

    nofile = raise_nofile()
    if nofile < args.idle + 200:
        print(f"RLIMIT_NOFILE hard limit is {nofile}: at most that many sockets per process")
    began = time.time()
    busy = wait_for_idle(args.idle_wait)
    print(f"machine busy before the run: {busy} cores, load {loadavg()}", flush=True)

    names = ["agora", "agora-redis", "bare", "socketio"]
    if "redis" in skip or not redis_available():
        names.remove("agora-redis")
    if args.quick:
        names = [name for name in names if name in ("agora-redis", "bare")]
    speed = throughput(args, names) if "echo-fanout" not in skip else {}
    idle = memory(args) if "idle" not in skip else {}
    report = {
        "bench": "social",
        "at": datetime.now(UTC).isoformat(),
        "seconds_total": round(time.time() - began, 1),
        "args": vars(args),
        "machine": {
            "hostname": socket.gethostname(),
            "nproc": os.cpu_count(),
            "python": sys.version.split()[0],
            "busy_cores_before": busy,
            "rlimit_nofile": nofile,
        },
        "agora_env": dict(AGORA_ENV),
        "throughput": speed,
        "idle": idle,
    }
    report["summary"] = verdicts = summary(speed, idle)
    path = write_results("social", report)
    for name, line in verdicts.items():
        print(f"{name:32} {line}")
    print(f"total {report['seconds_total']} s; results in {path}")
    after_run(path)


if __name__ == "__main__":
    main()
