"""User events applied per second: RabbitMQ -> ONE publications consumer -> PostgreSQL + Redis.

    .venv/bin/python -m bench.events_bench [--events 20000] [--users 2000]
                                           [--single-events 2000] [--prefetch 512]
                                           [--log-level INFO] [--loop uvloop]
                                           [--profile FILE]

Needs the local PostgreSQL (postgres@127.0.0.1:5432, trust), Redis (127.0.0.1:6379) and
RabbitMQ (guest@127.0.0.1:5672); override with AGORA_BENCH_PG_DSN, AGORA_BENCH_REDIS_URL,
AGORA_BENCH_AMQP_URL. Everything it makes is its own and removed at the end: a
throwaway database (migrated with `agora.db.migrate.upgrade`, dropped), a Redis key
namespace (deleted), suffixed exchanges and queues (deleted).

Two rows, each on its own queue and users:

    batched        the publications app as deployed: `create_app` with the PostgreSQL
                   database, Redis cache and AMQP bus, its consumer micro-batching
                   (batch size 256, 5 ms), prefetch `--prefetch` (the setting's default),
                   on uvloop as `agora serve` runs it, logging as the service does
                   (JSON lines at INFO, into a temporary file)
    one-at-a-time  the same app with the consumer's batch size set to 1: each event is
                   its own transaction and cache write, one after the other

For each row, `--events` events (`--single-events` for the slow row) are published
first, as the auth service's relay sends them (connected/disconnected alternating per
user, with event_id, occurred_at and a per-user seq; users interleaved), with publisher
confirms. Then the app starts consuming and the clock runs until every event is in
`pub_processed_events`. events/s = events / that time. Each row then checks the end
state: every user's last seq stored, the right status, and `user:<id>` in Redis exactly
for the users left connected.

Measured 2026-11-21 on the 2-core machine while other sessions ran their test suites
(load average 4.6-4.9 throughout; exact command `.venv/bin/python -m bench.events_bench`,
uvloop, INFO logging, prefetch 512):
    batched        1,514 events/s  (20,000 events, 2,000 users; consumer CPU 12.7 s in
                   13.2 s: CPU-bound, ~630 us of CPU per event)
    one-at-a-time     50 events/s  (2,000 events, 200 users)
    ratio 30.5x. Other runs under heavier load (4-7) gave 740-1,000 events/s batched:
    the figure follows the CPU the consumer gets, so read it with the load printed.
    The code before batching (git HEAD at the time, prefetch 200), same load: 87/s.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import logging
import os
import resource
import secrets
import tempfile
import time
import uuid
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import cast

import aio_pika
import asyncpg
import orjson
import redis.asyncio as aioredis
from pydantic import SecretStr
from sqlalchemy import func, select

from agora.adapters.bus_amqp import AmqpBus
from agora.adapters.cache_redis import RedisCache
from agora.adapters.presence_memory import MemoryPresence
from agora.adapters.pubsub_memory import MemoryPubSub
from agora.core.logs import configure_logging
from agora.core.settings import Settings
from agora.db.engine import Database
from agora.db.migrate import upgrade
from agora.ports.backends import Backends
from agora.ports.bus import Topology
from agora.services.publications.app import create_app
from agora.services.publications.deps import PublicationsServices
from agora.services.publications.models import ProcessedEvent, PubUser
from agora.services.publications.status.consumer import BATCH_SIZE, UserEventConsumer
from bench.charts import after_run
from bench.harness import machine, write_results

try:
    import uvloop
except ImportError:  # uvicorn[standard] brings it; without it the default loop runs
    uvloop = None  # type: ignore[assignment]

PG_DSN = os.environ.get("AGORA_BENCH_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("AGORA_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
AMQP_URL = os.environ.get("AGORA_BENCH_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
PER_USER = 10  # events per user; --events / --users should give this
PUBLISH_IN_FLIGHT = 500
DRAIN_TIMEOUT = 600.0


@dataclass
class Row:
    name: str
    events: int
    users: int
    seconds: float
    cpu_seconds: float

    @property
    def rate(self) -> float:
        return self.events / self.seconds


def kind_of(user_index: int, seq: int) -> str:
    # Half the users end connected, half disconnected.
    return "connected" if (seq + user_index) % 2 == 1 else "disconnected"


def event_bodies(prefix: str, events: int, users: int) -> list[tuple[str, str, bytes]]:
    """(routing key, event_id, body) in publishing order: seq by seq, users interleaved."""
    per_user = max(1, events // users)
    start = datetime.now(UTC)
    out: list[tuple[str, str, bytes]] = []
    for seq in range(1, per_user + 1):
        for index in range(users):
            user_id = f"{prefix}{index}"
            event_id = f"{prefix}{uuid.uuid4()}"
            body: dict[str, object] = {
                "event": kind_of(index, seq),
                "user_id": user_id,
                "event_id": event_id,
                "occurred_at": (start + timedelta(milliseconds=seq)).isoformat(),
                "seq": seq,
            }
            if body["event"] == "connected":
                body |= {"name": f"User {index}", "email": f"{user_id}@example.com"}
            out.append((f"user.{body['event']}", event_id, orjson.dumps(body)))
    return out


async def publish_all(topology: Topology, bodies: list[tuple[str, str, bytes]]) -> float:
    bus = AmqpBus(AMQP_URL, topology)
    await bus.start()  # declares the topology, queue included
    slots = asyncio.Semaphore(PUBLISH_IN_FLIGHT)

    async def one(routing_key: str, event_id: str, body: bytes) -> None:
        async with slots:
            await bus.publish(routing_key, body, message_id=event_id)

    started = time.perf_counter()
    try:
        await asyncio.gather(*(one(*item) for item in bodies))
    finally:
        await bus.close()
    return time.perf_counter() - started


async def processed_count(db: Database, prefix: str) -> int:
    async with db.sessions() as session:
        statement = select(func.count()).where(ProcessedEvent.event_id.startswith(prefix))
        return int((await session.execute(statement)).scalar_one())


async def check_end_state(db: Database, cache: RedisCache, prefix: str, users: int) -> None:
    per_user = PER_USER
    async with db.sessions() as session:
        rows = (
            await session.execute(
                select(PubUser.user_id, PubUser.status, PubUser.last_event_seq).where(
                    PubUser.user_id.startswith(prefix)
                )
            )
        ).all()
    assert len(rows) == users, f"{len(rows)} users stored, expected {users}"
    for user_id, status, seq in rows:
        index = int(user_id.removeprefix(prefix))
        assert seq == per_user, f"{user_id}: last seq {seq}"
        assert status == kind_of(index, per_user), f"{user_id}: {status}"
        cached = await cache.get(f"user:{user_id}")
        assert (cached is not None) == (status == "connected"), f"{user_id}: cache {cached!r}"


async def run_row(
    name: str,
    pg_url: str,
    namespace: str,
    events: int,
    users: int,
    batch_size: int,
    prefetch: int,
    profile: str | None,
) -> Row:
    prefix = f"{name[0]}{secrets.token_hex(3)}-"
    topology = Topology().suffixed(f".bench-{prefix.rstrip('-')}")
    try:
        publish_seconds = await publish_all(topology, event_bodies(prefix, events, users))
        print(f"  {name}: published {events} events in {publish_seconds:.1f} s", flush=True)
        settings = Settings.model_validate(
            {
                "env": "test",
                "jwt_secret": SecretStr(secrets.token_urlsafe(48)),
                "database_url": pg_url,
                "amqp_prefetch": prefetch,
                "log_level": "WARNING",
            }
        )
        cache = RedisCache(REDIS_URL, namespace=namespace)
        backends = Backends(
            Database(pg_url), cache, AmqpBus(AMQP_URL, topology), MemoryPubSub(), MemoryPresence()
        )
        app = create_app(settings, backends)
        if batch_size != BATCH_SIZE:
            services = app.provided(PublicationsServices)
            consumer = UserEventConsumer(services.user_status, batch_size=batch_size)
            app.provide(replace(services, user_events=consumer))
        await backends.start()
        try:
            profiler = cProfile.Profile() if profile else None
            cpu_before = resource.getrusage(resource.RUSAGE_SELF)
            started = time.perf_counter()
            if profiler:
                profiler.enable()
            async with app.router.lifespan_context(app):  # starts consuming
                while await processed_count(backends.database, prefix) < events:
                    if time.perf_counter() - started > DRAIN_TIMEOUT:
                        raise TimeoutError(f"{name}: queue not drained in {DRAIN_TIMEOUT} s")
                    await asyncio.sleep(0.1)
                seconds = time.perf_counter() - started
                cpu_after = resource.getrusage(resource.RUSAGE_SELF)
            if profiler:
                profiler.disable()
                profiler.dump_stats(f"{profile}.{name}")
            await check_end_state(backends.database, cache, prefix, users)
        finally:
            await backends.close()
    finally:
        await delete_topology(topology)
    cpu = (cpu_after.ru_utime + cpu_after.ru_stime) - (cpu_before.ru_utime + cpu_before.ru_stime)
    return Row(name, events, users, seconds, cpu)


async def delete_topology(topology: Topology) -> None:
    connection = await aio_pika.connect(AMQP_URL, timeout=5)
    async with connection:
        channel = await connection.channel()
        for queue in (topology.queue, topology.dead_letter_queue):
            await channel.queue_delete(queue)
        for exchange in (topology.exchange, topology.dead_letter_exchange):
            await channel.exchange_delete(exchange)


async def drop_namespace(namespace: str) -> None:
    raw = aioredis.Redis.from_url(REDIS_URL)
    try:
        keys = [key async for key in raw.scan_iter(match=f"{namespace}*", count=1000)]
        if keys:
            await raw.delete(*keys)
    finally:
        await raw.aclose()


async def admin(sql: str) -> None:
    connection = await asyncpg.connect(PG_DSN, timeout=5)
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


async def main(args: argparse.Namespace) -> None:
    run_id = secrets.token_hex(4)
    database = f"agora_bench_{run_id}"
    namespace = f"agora-bench:{run_id}:"
    base = PG_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
    pg_url = f"{base}/{database}"
    log_file = Path(tempfile.gettempdir()) / f"agora-events-bench-{run_id}.log"
    # The service's own logging (JSON lines, one per applied event at INFO), written to a
    # file: its cost is counted, the terminal is not flooded.
    configure_logging(args.log_level)
    stream = log_file.open("w")
    for handler in logging.getLogger().handlers:
        cast(logging.StreamHandler, handler).setStream(stream)
    print(f"event loop: {args.loop}, log level {args.log_level} into {log_file}")
    print(f"load average before: {os.getloadavg()}", flush=True)
    await admin(f'CREATE DATABASE "{database}"')
    try:
        await asyncio.to_thread(upgrade, pg_url)
        batched = await run_row(
            "batched",
            pg_url,
            namespace,
            args.events,
            args.users,
            BATCH_SIZE,
            args.prefetch,
            args.profile,
        )
        single_users = max(1, args.single_events // PER_USER)
        single = await run_row(
            "one-at-a-time",
            pg_url,
            namespace,
            args.single_events,
            single_users,
            1,
            args.prefetch,
            args.profile,
        )
    finally:
        await drop_namespace(namespace)
        await admin(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    print(f"load average after: {os.getloadavg()}")
    stream.close()
    for row in (batched, single):
        print(
            f"{row.name:>14}: {row.rate:8,.0f} events/s  ({row.events} events, {row.users} users,"
            f" {row.seconds:.2f} s, consumer process CPU {row.cpu_seconds:.2f} s)"
        )
    print(f"         ratio: {batched.rate / single.rate:.1f}x  (target: batched >= 2,000 events/s)")
    out = write_results("events", {
        "benchmark": "events", "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "settings": vars(args), "machine": machine(), "load_average_after": os.getloadavg(),
        "rows": {row.name: {"events_per_s": round(row.rate, 1), "events": row.events,
                            "users": row.users, "seconds": round(row.seconds, 2),
                            "consumer_cpu_s": round(row.cpu_seconds, 2)}
                 for row in (batched, single)},
        "ratios": {"batched / one-at-a-time": batched.rate / single.rate},
    })  # fmt: skip
    print(f"results: {out}")
    after_run(out)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--users", type=int, default=2_000)
    parser.add_argument("--single-events", type=int, default=2_000)
    parser.add_argument(
        "--prefetch", type=int, default=Settings.model_fields["amqp_prefetch"].default
    )
    parser.add_argument(
        "--profile", metavar="FILE", help="cProfile the consuming into FILE.<row> (pstats)"
    )
    parser.add_argument("--log-level", default="INFO", help="the service's default: INFO")
    parser.add_argument(
        "--loop",
        choices=("uvloop", "asyncio"),
        default="uvloop" if uvloop is not None else "asyncio",
        help="uvloop, as `agora serve` (uvicorn) uses when it is installed",
    )
    args = parser.parse_args()
    if args.events != args.users * PER_USER or args.single_events % PER_USER:
        parser.error(f"use {PER_USER} events per user (--events = {PER_USER} x --users)")
    return args


if __name__ == "__main__":
    arguments = parse_args()
    if arguments.loop == "uvloop" and uvloop is not None:
        uvloop.run(main(arguments))
    else:
        asyncio.run(main(arguments))
