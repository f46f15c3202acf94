"""The send path alone, in one process: `MessagingService.send` to the stored message.

    .venv/bin/python -m bench.send_path [--sends 1600] [--window 16] [--rounds 3]
        [--floor-seconds 5] [--skip postgres] [--profile 25]

What `bench.messaging_bench` cannot separate: the cost of a send up to its store, without
the sockets and the fan-out around it. One author sends `--sends` messages to a direct
conversation through the real service (real database, memory cache and limits; the push
and the notifications dropped), on uvloop: one at a time (`window 1`), then
`--window` at a time (`window N`, as the messaging socket runs a burst of frames:
their checks overlap, their stores are batched in order), on SQLite (a
file, as `make run` has it) and on PostgreSQL (a throwaway database, when the local one
answers). Beside them, in the same process, the storage floor with one sender
(bench/messaging_storage_floor.py: bare asyncpg, one statement per message, the same
guarantees): what one author's messages, one statement and one commit each, cannot beat.

Reported per send: wall time and this process's CPU (user + system), median of
`--rounds`; the ratio of each backend's sends/s to the floor's. `--profile N`: then one
more round (window N) under cProfile per backend, its N costliest functions (cumulative; cProfile
slows everything down, read the shares, not the times). Results JSON in bench/results/.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import statistics
import tempfile
import time
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import uvloop

from agora.adapters.cache_memory import MemoryCache
from agora.adapters.media_disk import DiskMediaStore
from agora.core.audit import Audit
from agora.core.settings import Settings
from agora.db.engine import Database
from agora.db.migrate import upgrade
from agora.services.auth.models import User
from agora.services.auth.user_directory import LocalUserDirectory
from agora.services.messaging.domain import Actor
from agora.services.messaging.rate_limits import MessagingLimits
from agora.services.messaging.service.messages import MessagingService
from bench import messaging_storage_floor as storage_floor
from bench.harness import machine, write_results
from bench.messaging_setup import postgres_available, postgres_database

TEXT = "a message of ordinary length, about sixty characters long"


class Dropped:
    """The push and the notification ports, doing nothing: this bench stops at the store
    (the fan-out is bench.messaging_bench's)."""

    async def publish(self, user_ids: Iterable[str], event: str, payload: dict[str, Any]) -> None:
        return None

    async def online(self, user_ids: Iterable[str]) -> set[str]:
        return set(user_ids)  # everyone online: no notification to build

    async def notify(self, user_ids: Sequence[str], notification: dict[str, Any]) -> None:
        return None


async def _user(db: Database) -> Actor:
    login = f"b{uuid.uuid4().hex[:12]}"
    async with db.transaction() as session:
        user = User(
            login=login,
            login_key=login,
            email=f"{login}@example.com",
            email_key=f"{login}@example.com",
            name=login,
            password_hash="not-a-hash",
        )
        session.add(user)
        await session.flush()
        return Actor(str(user.id))


async def _service(url: str, data_dir: Path) -> tuple[MessagingService, Database]:
    big = 10**9
    settings = Settings(
        env="dev",
        data_dir=data_dir,
        database_url=url,
        log_level="WARNING",
        messaging_messages_per_hour=big,
        messaging_messages_per_ip_per_hour=big,
    )
    db = Database(url)
    audit = Audit("messaging")  # nothing is refused here: no audit row
    dropped = Dropped()
    service = MessagingService(
        db=db,
        users=LocalUserDirectory(db),
        media=DiskMediaStore(data_dir / "media"),
        events=dropped,
        notifier=dropped,
        limits=MessagingLimits(MemoryCache(), settings, audit),
        audit=audit,
        settings=settings,
    )
    return service, db


async def _rows(url: str, data_dir: Path, args: argparse.Namespace) -> dict[str, Any]:
    service, db = await _service(url, data_dir)
    try:
        alice, bob = await _user(db), await _user(db)
        conversation, _ = await service.create_direct(alice, bob.user_id)
        sent = 0

        async def sends(count: int, window: int) -> None:
            """`count` sends, `window` started at once (as the socket runs a burst)."""
            nonlocal sent
            for _ in range(count // window):
                burst = [
                    service.send(alice, conversation.id, f"s{sent + i}", text=TEXT)
                    for i in range(window)
                ]
                sent += window
                await asyncio.gather(*burst)

        await sends(100, 1)  # warm up: statements prepared, caches filled
        runs: dict[int, list[tuple[float, float]]] = {1: [], args.window: []}
        for _ in range(args.rounds):
            for window in runs:
                times, wall = os.times(), time.perf_counter()
                await sends(args.sends, window)
                done, wall = os.times(), time.perf_counter() - wall
                cpu = done.user - times.user + done.system - times.system
                count = args.sends // window * window
                runs[window].append((wall / count * 1e6, cpu / count * 1e6))
        if args.profile:
            profile = cProfile.Profile()
            profile.enable()
            await sends(args.sends, args.window)
            profile.disable()
            pstats.Stats(profile).sort_stats("cumulative").print_stats(args.profile)
        rows = {}
        for window, measured in runs.items():
            wall_us = statistics.median(w for w, _ in measured)
            rows[f"window {window}"] = {
                "wall_us_per_send": round(wall_us, 1),
                "cpu_us_per_send": round(statistics.median(c for _, c in measured), 1),
                "sends_per_s": round(1e6 / wall_us, 1),
            }
        return rows
    finally:
        await db.close()


async def _floor(url: str, seconds: float) -> dict[str, object]:
    dsn = url.replace("postgresql+asyncpg://", "postgresql://", 1)
    return await storage_floor.run(dsn, argparse.Namespace(seconds=seconds, senders=1))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sends", type=int, default=1600)
    parser.add_argument("--window", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--floor-seconds", type=float, default=5)
    parser.add_argument("--skip", default="", help="postgres")
    parser.add_argument("--profile", type=int, default=0, metavar="N")
    args = parser.parse_args(argv)
    report: dict[str, Any] = {"bench": "send_path", "args": vars(args), "machine": machine()}
    with tempfile.TemporaryDirectory() as folder:
        data_dir = Path(folder)
        url = f"sqlite+aiosqlite:///{data_dir / 'agora.db'}"
        upgrade(url)
        report["sqlite"] = uvloop.run(_rows(url, data_dir, args))
        if "postgres" not in args.skip and postgres_available():
            with postgres_database() as pg_url:
                report["postgres"] = uvloop.run(_rows(pg_url, data_dir, args))
                report["floor"] = uvloop.run(_floor(pg_url, args.floor_seconds))
    floor = report.get("floor")
    for backend in ("sqlite", "postgres"):
        for name, row in (report.get(backend) or {}).items():
            rate, wall, cpu = row["sends_per_s"], row["wall_us_per_send"], row["cpu_us_per_send"]
            line = f"{backend:8} {name:9} {rate:7.1f} sends/s  wall {wall:7.1f} µs  CPU {cpu:6.1f}"
            if floor is not None:
                line += f"  ({rate / float(floor['messages_per_s']):.2f}x the floor)"
            print(line)
    if floor is not None:
        rate, cpu = float(floor["messages_per_s"]), floor["client_cpu_us_per_message"]
        print(f"floor    1 sender  {rate:7.1f} messages/s (bare asyncpg)  CPU {cpu} µs")
    print(f"results in {write_results('send_path', report)}")


if __name__ == "__main__":
    main()
