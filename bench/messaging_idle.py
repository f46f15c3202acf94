"""Idle messaging sockets (issue 13): the server's memory per socket, measured as the
social ones are (bench/social_bench.py's idle row), against the bare socket in the same run.

    .venv/bin/python -m bench.messaging_idle [--idle 10000] [--clients 4] [--settle 35]
        [--skip bare]

Servers, each its own process, one uvicorn worker, on a free 127.0.0.1 port:

    agora   `agora serve`, embedded backends, `IDLE_USERS` users, each in a direct
            conversation with the next (so each socket follows two contacts' presence),
            messaging limits raised as in bench/messaging_bench.py
    bare    bench/socket_baselines.py:bare_app (Starlette, no auth, no state): social
            bench's bare idle row, same sockets

Each Agora socket is what phoenix.js with its defaults makes (docs/messaging.md §3.4):
`vsn=2.0.0`, a join of its own `user:<id>` with `{}`, a heartbeat every 30 s, every push
read. `--idle` sockets spread over `IDLE_USERS` users (so each user has many devices) and
`--clients` processes. RSS of the server after the tickets are fetched, then again
`--settle` seconds after the last socket joined (more than one heartbeat round, so the
per-heartbeat costs are in it): (after - before) / sockets. JSON in bench/results/.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import multiprocessing as mp
import time
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson
from websockets.asyncio.client import ClientConnection, connect

from bench.harness import wait_for_idle, write_results
from bench.messaging_bench import MESSAGING_ENV
from bench.social_bench import (
    IDLE_USERS,
    Target,
    agora_server,
    baseline_server,
    client_processes,
    idle_memory,
    idle_row,
    loadavg,
    raise_nofile,
    run_client_job,
    split,
    tickets_for,
    wait_at,
)

HEARTBEAT_S = 30.0  # phoenix.js's default heartbeatIntervalMs
SOCKET_OPTIONS: dict[str, Any] = {"ping_interval": None, "open_timeout": 120, "max_size": 2**20}


def frame(join_ref: str | None, ref: str, topic: str, event: str, payload: Any) -> str:
    return orjson.dumps([join_ref, ref, topic, event, payload]).decode()


async def phoenix_device(base: str, one_time: str, user_id: str) -> ClientConnection:
    """A socket as phoenix.js opens it: vsn 2.0.0, its user topic joined with `{}`."""
    url = f"{base.replace('http://', 'ws://')}/socket/websocket?token={one_time}&vsn=2.0.0"
    ws = await connect(url, **SOCKET_OPTIONS)
    topic = f"user:{user_id}"
    await ws.send(frame("1", "1", topic, "phx_join", {}))
    while True:
        _, ref, _, event, payload = orjson.loads(await ws.recv())
        if event == "phx_reply" and ref == "1":
            if payload.get("status") != "ok":
                raise RuntimeError(f"join refused: {payload}")
            return ws


async def drain(ws: ClientConnection) -> None:
    """Read every push (presence diffs, heartbeat replies), as phoenix.js does."""
    with contextlib.suppress(Exception):
        async for _ in ws:
            pass


async def heartbeats(sockets: list[ClientConnection], stop: asyncio.Event) -> None:
    """Each socket's heartbeat every HEARTBEAT_S, spread evenly over the interval."""
    refs = itertools.count(2)
    while not stop.is_set():
        gap = HEARTBEAT_S / max(1, len(sockets))
        for ws in list(sockets):
            with contextlib.suppress(Exception):
                await ws.send(frame(None, str(next(refs)), "phoenix", "heartbeat", {}))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), gap)
            if stop.is_set():
                return


async def idle_job(job: dict[str, Any], sync: dict[str, Any]) -> dict[str, Any]:
    """Tickets first, then (after the parent's RSS reading) every socket, left idle."""
    spec, users = job["target"], job["users"]
    tickets = await tickets_for(spec, users)
    await wait_at(sync["ready"])
    await wait_at(sync["go"])
    started = time.time()
    opening = asyncio.Semaphore(64)
    sockets: list[ClientConnection] = []
    readers: list[asyncio.Task[None]] = []
    errors: dict[str, int] = {}

    async def one(index: int) -> None:
        async with opening:
            try:
                ws = await phoenix_device(spec["base"], tickets[index], job["ids"][users[index]])
            except Exception as exc:  # counted and reported: the largest count reached
                errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
                return
            sockets.append(ws)
            readers.append(asyncio.create_task(drain(ws)))

    await asyncio.gather(*(one(i) for i in range(len(users))))
    stop = asyncio.Event()
    beating = asyncio.create_task(heartbeats(sockets, stop))
    sync["out"].put({"opened": len(sockets), "errors": errors, "seconds": time.time() - started})
    await wait_at(sync["release"])
    stop.set()
    await beating
    for ws in sockets:
        if ws.transport is not None:
            ws.transport.abort()
    for reader in readers:
        reader.cancel()
    return {}


def client_main(job: dict[str, Any], sync: dict[str, Any]) -> None:
    run_client_job({"idle": idle_job}, job, sync)


CTX = mp.get_context("fork")  # the parent holds no loop or thread between rows


def agora_row(target: Target, args: argparse.Namespace) -> dict[str, Any]:
    users = [i % IDLE_USERS for i in range(args.idle)]
    spec = target.spec()
    jobs = [
        {"role": "idle", "target": spec, "users": part, "ids": target.user_ids}
        for part in split(users, args.clients)
    ]
    processes = client_processes(jobs, client_main, ("ready", "go", "release"), context=CTX)
    measured = idle_memory(target.pid, jobs, processes, args.settle)
    return {**measured, "asked": args.idle, "settle_seconds": args.settle}


def ring(target: Target) -> None:
    """Each user in a direct conversation with the next: two contacts per socket."""
    with httpx.Client(base_url=target.base, timeout=30) as http:
        for index, token in enumerate(target.tokens):
            other = target.user_ids[(index + 1) % len(target.user_ids)]
            made = http.post(
                "/api/v1/conversations",
                json={"kind": "direct", "user_id": other},
                headers={"Authorization": f"Bearer {token}"},
            )
            made.raise_for_status()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--idle", type=int, default=10_000, help="idle sockets")
    parser.add_argument("--clients", type=int, default=4, help="client processes")
    parser.add_argument("--settle", type=float, default=HEARTBEAT_S + 5, help="seconds")
    parser.add_argument("--idle-wait", type=float, default=10.0)
    parser.add_argument("--skip", default="", help="comma list: bare")
    args = parser.parse_args(argv)
    skip = set(filter(None, args.skip.split(",")))
    nofile = raise_nofile()
    if nofile < args.idle + 200:
        print(f"RLIMIT_NOFILE hard limit is {nofile}: at most that many sockets per process")
    began = time.time()
    busy = wait_for_idle(args.idle_wait)
    print(f"machine busy before the run: {busy} cores, load {loadavg()}", flush=True)
    rows: dict[str, dict[str, Any]] = {}
    env = {**MESSAGING_ENV, "AGORA_WS_TICKET_TTL": "300"}
    with agora_server("agora", IDLE_USERS, extra_env=env) as target:
        ring(target)
        rows["agora messaging"] = agora_row(target, args)
    if "bare" not in skip:
        with baseline_server("bare", IDLE_USERS) as target:
            rows["bare"] = idle_row(target, args, deflate=False)
    for label, row in rows.items():
        print(
            f"idle {label:16} {row['sockets']} sockets ({row['errors'] or 'no errors'}), "
            f"RSS {row['rss_before_kib']} -> {row['rss_after_kib']} KiB: "
            f"{row['kib_per_socket']} KiB/socket, opened in {row['open_seconds']} s",
            flush=True,
        )
    agora = rows["agora messaging"]["kib_per_socket"]
    bare = rows.get("bare", {}).get("kib_per_socket")
    report = {
        "bench": "messaging-idle",
        "at": datetime.now(UTC).isoformat(),
        "seconds_total": round(time.time() - began, 1),
        "machine_busy_before": busy,
        "rows": rows,
        "summary": {
            "agora messaging KiB/socket": agora,
            "bare KiB/socket": bare,
            "over_bare": round(agora / bare, 2) if agora and bare else None,
            "target_kib": round(30_000 / 1024, 1),  # 30 KB
            "met": agora is not None and agora <= 30_000 / 1024,
        },
    }
    print(report["summary"], flush=True)
    print(f"results in {write_results('messaging-idle', report)}")


if __name__ == "__main__":
    main()
