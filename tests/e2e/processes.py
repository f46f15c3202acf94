"""Agora as it is deployed: each service its own `agora serve SERVICE` process on the real
PostgreSQL, Redis and RabbitMQ, observed only from outside (HTTP, SQL, Redis, AMQP).

A `Deployment` owns everything of one test's own: a throwaway database (migrated with
`agora db upgrade`, dropped at the end), a Redis key namespace and AMQP names (both
deleted at the end), and the processes it started (stopped at the end). Servers that a
fault test stops are its own (`private_servers`): the shared ones are never touched.

Every wait is bounded: `wait_until` polls and fails with the servers' logs attached.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import aio_pika
import asyncpg
import httpx
import jwt
import orjson
import pytest
import redis.asyncio as aioredis
from aio_pika.abc import AbstractIncomingMessage

from tests.e2e.agora_command import AGORA, Server, run_agora
from tests.support.databases import empty_postgres_database
from tests.support.services import RUN_ID
from tests.support.settings import TEST_SECRET
from tests.support.users import PASSWORD, unique_login

T = TypeVar("T")

STOP_SECONDS = 10.0


# --- waiting -----------------------------------------------------------------------


async def wait_until(
    check: Callable[[], Awaitable[T | None]],
    *,
    timeout: float,
    what: str,
    interval: float = 0.1,
    logs: Callable[[], str] | None = None,
) -> T:
    """Poll `check` until it returns something truthy (returned); fail after `timeout`."""
    deadline = time.monotonic() + timeout
    last = await check()
    while not last:
        if time.monotonic() > deadline:
            shown = logs() if logs else ""
            pytest.fail(f"{what}: not within {timeout}s (last: {last!r})\n{shown}")
        await asyncio.sleep(interval)
        last = await check()
    return last


# --- a database of the test's own ----------------------------------------------------


@contextlib.contextmanager
def throwaway_database(env: dict[str, str]) -> Iterator[tuple[str, str]]:
    """A new PostgreSQL database migrated by `agora db upgrade`, dropped at the end.

    Yields (SQLAlchemy URL for the services, plain DSN for the test's own queries).
    """
    with empty_postgres_database("e2e") as url:
        upgraded = run_agora("db", "upgrade", env={**env, "AGORA_DATABASE_URL": url})
        assert upgraded.returncode == 0, upgraded.stderr
        yield url, url.replace("postgresql+asyncpg://", "postgresql://", 1)


# --- one deployment ------------------------------------------------------------------


def base_env(data_dir: Path) -> dict[str, str]:
    """What every process of a test runs with: test mode, a real secret, cheap hashing."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGORA_")}
    env.update(
        AGORA_ENV="test",
        AGORA_JWT_SECRET=TEST_SECRET,
        AGORA_DATA_DIR=str(data_dir),
        AGORA_ARGON2_TIME_COST="1",
        AGORA_ARGON2_MEMORY_COST="64",
        AGORA_ARGON2_PARALLELISM="1",
        AGORA_REGISTER_IP_MAX_ATTEMPTS="100000",  # every test user comes from 127.0.0.1
        # Tests register users several at a time: the register lane (1 hash at once) queues
        # them rather than answering 503 (the lane itself: tests/security/test_registration.py).
        AGORA_PASSWORD_REGISTER_QUEUE="256",
        AGORA_LOG_LEVEL="WARNING",
        # No gRPC server unless a test gives the process a port of its own: the default
        # (50051) is one per machine, and several processes and runs share this one.
        AGORA_GRPC_PORT="0",
    )
    return env


@dataclass
class Deployment:
    """The services of one test, as separate processes sharing one database, one Redis
    namespace and one set of AMQP names."""

    root: Path
    database_url: str
    dsn: str
    redis_url: str
    amqp_url: str
    namespace: str = field(default_factory=lambda: f"agora-e2e:{RUN_ID}:{uuid.uuid4().hex[:6]}:")
    suffix: str = field(default_factory=lambda: f".e2e-{RUN_ID}-{uuid.uuid4().hex[:6]}")
    servers: dict[str, Server] = field(default_factory=dict)

    # names on the broker, as docs/contracts.md gives them plus this deployment's suffix
    @property
    def exchange(self) -> str:
        return f"user.events{self.suffix}"

    @property
    def queue(self) -> str:
        return f"publications.user-events{self.suffix}"

    @property
    def dead_letter_queue(self) -> str:
        return f"publications.user-events.dlq{self.suffix}"

    @property
    def dead_letter_exchange(self) -> str:
        return f"user.events.dlx{self.suffix}"

    def env(self, **overrides: str) -> dict[str, str]:
        env = base_env(self.root)
        env.update(
            AGORA_DATABASE_URL=self.database_url,
            AGORA_REDIS_URL=self.redis_url,
            AGORA_REDIS_NAMESPACE=self.namespace,
            AGORA_AMQP_URL=self.amqp_url,
            AGORA_AMQP_NAME_SUFFIX=self.suffix,
        )
        env.update(overrides)
        return env

    # --- processes -----------------------------------------------------------------

    def start(self, service: str, **overrides: str) -> Server:
        """`agora serve SERVICE --port <free>`, returned once it answers HTTP."""
        server = self.servers.get(service)
        if server is None:
            server = Server(self.root, self.env(**overrides), args=(service,))
            self.servers[service] = server
        elif overrides:
            server.env = self.env(**overrides)
        return server.start()

    def spawn(self, service: str) -> Server:
        """Start a service already started once, without waiting for it to answer: for
        a test that must act within the first moments of its life."""
        server = self.servers[service]
        assert server.process is None or server.process.poll() is not None
        with server.log_file.open("ab") as log:
            server.process = subprocess.Popen(
                [str(AGORA), "serve", *server.args, "--port", str(server.port)],
                env=server.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        return server

    def url(self, service: str) -> str:
        return self.servers[service].base_url

    def logs(self) -> str:
        return "\n".join(
            f"--- {name} log (tail) ---\n{server.log()[-4000:]}"
            for name, server in self.servers.items()
        )

    def stop_all(self) -> None:
        for server in self.servers.values():
            stop(server)

    # --- observing: SQL, Redis, AMQP ----------------------------------------------------

    async def fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        conn = await asyncpg.connect(self.dsn, timeout=5)
        try:
            return list(await conn.fetch(sql, *args))
        finally:
            await conn.close()

    async def fetchval(self, sql: str, *args: Any) -> Any:
        rows = await self.fetch(sql, *args)
        return rows[0][0] if rows else None

    async def user_status(self, user_id: str) -> str | None:
        status: str | None = await self.fetchval(
            "SELECT status FROM pub_users WHERE user_id = $1", user_id
        )
        return status

    async def cached_user(self, user_id: str) -> tuple[dict[str, Any] | None, int]:
        """`user:<id>` under this deployment's namespace: (decoded JSON or None, PTTL ms)."""
        client = aioredis.Redis.from_url(self.redis_url, socket_connect_timeout=2)
        try:
            key = f"{self.namespace}user:{user_id}"
            raw, pttl = await client.get(key), await client.pttl(key)
        finally:
            await client.aclose()
        return (orjson.loads(raw) if raw is not None else None), int(pttl)

    async def wait_status(self, user_id: str, status: str, timeout: float = 15) -> None:
        async def reached() -> bool:
            return await self.user_status(user_id) == status

        await wait_until(reached, timeout=timeout, what=f"user {user_id} {status}", logs=self.logs)

    async def wait_cache(self, user_id: str, present: bool, timeout: float = 10) -> None:
        async def reached() -> bool:
            value, _ = await self.cached_user(user_id)
            return (value is not None) == present

        what = f"user:{user_id} {'in' if present else 'gone from'} Redis"
        await wait_until(reached, timeout=timeout, what=what, logs=self.logs)

    async def publish(
        self,
        routing_key: str,
        body: dict[str, Any] | bytes,
        *,
        message_id: str | None = None,
    ) -> None:
        """A foreign publisher: plain aio-pika, persistent, confirmed; not our adapter."""
        await publish_raw(self.amqp_url, self.exchange, [(routing_key, body, message_id)])

    def cleanup(self) -> None:
        """Delete this deployment's Redis keys and AMQP names (the database goes with it)."""
        asyncio.run(_delete_namespace(self.redis_url, self.namespace))
        names = (self.queue, self.dead_letter_queue), (self.exchange, self.dead_letter_exchange)
        asyncio.run(_delete_amqp_names(self.amqp_url, *names))


Message = tuple[str, "dict[str, Any] | bytes", "str | None"]


async def publish_raw(url: str, exchange_name: str, messages: list[Message]) -> None:
    connection = await aio_pika.connect(url, timeout=5)
    try:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.get_exchange(exchange_name, ensure=True)
        chunk = 200  # confirms awaited a window at a time: fast, and bounded memory
        for start in range(0, len(messages), chunk):
            await asyncio.gather(
                *(
                    exchange.publish(
                        aio_pika.Message(
                            body if isinstance(body, bytes) else orjson.dumps(body),
                            message_id=message_id,
                            content_type="application/json",
                            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                        ),
                        routing_key,
                    )
                    for routing_key, body, message_id in messages[start : start + chunk]
                )
            )
    finally:
        await connection.close()


async def queue_counts(url: str, queue: str) -> tuple[int, int]:
    """(ready messages, consumers) of a queue, by a passive declare."""
    connection = await aio_pika.connect(url, timeout=5)
    try:
        channel = await connection.channel()
        declared = await channel.declare_queue(queue, passive=True)
        ok = declared.declaration_result
        return int(ok.message_count or 0), int(ok.consumer_count or 0)
    finally:
        await connection.close()


async def drain_queue(url: str, queue: str, limit: int = 1000) -> list[AbstractIncomingMessage]:
    """Take (and ack) every message of a queue of the test's own, e.g. its DLQ."""
    taken: list[AbstractIncomingMessage] = []
    connection = await aio_pika.connect(url, timeout=5)
    try:
        channel = await connection.channel()
        declared = await channel.get_queue(queue, ensure=True)
        while len(taken) < limit:
            message = await declared.get(no_ack=True, fail=False)
            if message is None:
                break
            taken.append(message)
    finally:
        await connection.close()
    return taken


async def _delete_namespace(url: str, namespace: str) -> None:
    client = aioredis.Redis.from_url(url, socket_connect_timeout=2)
    try:
        keys = [key async for key in client.scan_iter(match=f"{namespace}*", count=1000)]
        for start in range(0, len(keys), 500):
            await client.delete(*keys[start : start + 500])
    except Exception:  # a private Redis may already be gone
        pass
    finally:
        await client.aclose()


async def _delete_amqp_names(url: str, queues: tuple[str, ...], exchanges: tuple[str, ...]) -> None:
    try:
        connection = await aio_pika.connect(url, timeout=5)
    except Exception:  # a private broker may already be gone
        return
    try:
        # One channel per deletion: a refused one closes its channel, not the others.
        for queue in queues:
            with contextlib.suppress(Exception):
                async with connection.channel() as channel:
                    await channel.queue_delete(queue)
        for exchange in exchanges:
            with contextlib.suppress(Exception):
                async with connection.channel() as channel:
                    await channel.exchange_delete(exchange)
    finally:
        await connection.close()


def stop(server: Server) -> None:
    """Ctrl-C, then SIGKILL if it does not exit within STOP_SECONDS."""
    process = server.process
    if process is None or process.poll() is not None:
        return
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=STOP_SECONDS)
    except subprocess.TimeoutExpired:
        server.kill()


@contextlib.contextmanager
def deployment(root: Path, *, redis_url: str, amqp_url: str) -> Iterator[Deployment]:
    """A database, namespace and AMQP names of their own; everything removed at the end."""
    root.mkdir(parents=True, exist_ok=True)
    with throwaway_database(base_env(root)) as (database_url, dsn):
        deployed = Deployment(root, database_url, dsn, redis_url, amqp_url)
        try:
            yield deployed
        finally:
            deployed.stop_all()
            deployed.cleanup()


# --- HTTP, as a client does it -----------------------------------------------------


async def register(client: httpx.AsyncClient, prefix: str = "e2e") -> dict[str, str]:
    login = unique_login(prefix)
    response = await client.post(
        "/auth/api/register",
        json={"login": login, "password": PASSWORD, "email": f"{login}@example.com",
              "name": f"Name of {login}"},
    )  # fmt: skip
    assert response.status_code == 201, response.text
    user: dict[str, str] = response.json()
    return user


async def login(client: httpx.AsyncClient, user: dict[str, str]) -> str:
    response = await client.post(
        "/auth/api/login", json={"login": user["login"], "password": PASSWORD}
    )
    assert response.status_code == 200, response.text
    token: str = response.json()["token"]
    return token


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def token_issued(user_id: str, at: float) -> str:
    """A valid, never revoked access token of the user issued at `at`, as auth signs it
    (the deployments' HS256 secret): a session older than a disconnect, for a 403."""
    claims = {"sub": user_id, "user_id": user_id, "iss": "agora-auth", "aud": "agora"}
    claims |= {"iat": int(at), "nbf": int(at), "exp": int(at) + 3600, "typ": "access"}
    return jwt.encode({**claims, "jti": uuid.uuid4().hex}, TEST_SECRET)
