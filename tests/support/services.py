"""The local PostgreSQL, Redis and RabbitMQ the integration tests share: where they are,
whether they answer, and removing what one test left there.

A missing service skips the test with a visible reason, or fails it when
AGORA_REQUIRE_SERVICES=1 (CI).
"""

from __future__ import annotations

import asyncio
import os
import uuid

import pytest

from agora.ports.bus import Topology

PG_ADMIN_DSN = os.environ.get("AGORA_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("AGORA_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
AMQP_URL = os.environ.get("AGORA_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
RUN_ID = uuid.uuid4().hex[:8]  # in every database, key and queue name this run creates


def require_services() -> bool:
    return os.environ.get("AGORA_REQUIRE_SERVICES") == "1"


def service_unavailable(name: str, error: BaseException) -> None:
    """Skip, or fail under AGORA_REQUIRE_SERVICES=1."""
    message = f"{name} not reachable: {error!r}"
    if require_services():
        pytest.fail(message)
    pytest.skip(message)


# --- reachable? (for code outside an event loop; the fixtures have async twins) --------


def require_redis(url: str = REDIS_URL) -> str:
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=2)
    try:
        client.ping()
    except Exception as exc:
        service_unavailable("Redis", exc)
    finally:
        client.close()
    return url


def require_rabbitmq(url: str = AMQP_URL) -> str:
    import aio_pika

    async def probe() -> None:
        connection = await aio_pika.connect(url, timeout=5)
        await connection.close()

    try:
        asyncio.run(probe())
    except Exception as exc:
        service_unavailable("RabbitMQ", exc)
    return url


# --- clean-up ---------------------------------------------------------------------------


async def drop_namespace(redis_url: str, namespace: str) -> int:
    """Delete every Redis key under `namespace`; how many there were."""
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(redis_url)
    try:
        keys = [key async for key in client.scan_iter(match=f"{namespace}*", count=1000)]
        return int(await client.delete(*keys)) if keys else 0
    finally:
        await client.aclose()


async def delete_topology(url: str, topology: Topology) -> None:
    """Remove a test's own exchanges and queues from the shared broker."""
    import aio_pika

    connection = await aio_pika.connect(url, timeout=5)
    async with connection:
        channel = await connection.channel()
        for queue in (topology.queue, topology.dead_letter_queue):
            await channel.queue_delete(queue)
        for exchange in (topology.exchange, topology.dead_letter_exchange):
            await channel.exchange_delete(exchange)
