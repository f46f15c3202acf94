"""The Redis connection every Redis adapter shares: one bounded pool, short timeouts.

Redis is an accelerator, never the source of truth: timeouts are short and retries
few, so a dead or unreachable Redis turns into the port's own "unavailable" error within
a couple of seconds (`redis_call`) and callers fall back instead of hanging a request.
After that first failure, the server's circuit breaker (`redis_breaker`, one per Redis
server in the process) makes every other call fail at once until a probe succeeds.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import (
    InvalidResponse,
    NoPermissionError,
    OutOfMemoryError,
    ReadOnlyError,
)
from redis.exceptions import TimeoutError as RedisTimeoutError

from agora.adapters.redis_breaker import RedisBreaker

T = TypeVar("T")

# One second to connect or answer is already ages for Redis on a LAN; more only delays
# the fallback. Two attempts ride over a dropped idle connection or a failover blip.
SOCKET_TIMEOUT = 1.0
RETRIES = 1
# redis-py nests retries (connect, its health check, the command), so the worst case
# is several socket timeouts; this caps a whole call. Cancelling drops the connection.
CALL_BUDGET = 2.0
# A connection idle this long is PINGed before use, so a half-dead one is replaced
# instead of failing a request.
HEALTH_CHECK_INTERVAL = 15
# Bounded, and waiting for a free connection counts against the same short budget.
MAX_CONNECTIONS = 100
POOL_WAIT = 1.0

# Besides the network: something at the address that does not speak Redis, a replica
# left read-only by a failover, a full Redis, an ACL that refuses us. In all of them the
# cache cannot serve and the database can. Other errors (WRONGTYPE...) are bugs and raise.
UNAVAILABLE = (
    RedisConnectionError,
    RedisTimeoutError,
    InvalidResponse,
    ReadOnlyError,
    OutOfMemoryError,
    NoPermissionError,
)


def redis_client(url: str, max_connections: int = MAX_CONNECTIONS) -> aioredis.Redis:
    """A client on a bounded pool with the short timeouts above; shared by every Redis
    adapter so that they all fail over to their fallback the same way."""
    pool = aioredis.BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=POOL_WAIT,
        socket_connect_timeout=SOCKET_TIMEOUT,
        socket_timeout=SOCKET_TIMEOUT,
        health_check_interval=HEALTH_CHECK_INTERVAL,
        # Retries connection and timeout errors only, the default supported errors.
        retry=Retry(ExponentialWithJitterBackoff(base=0.05, cap=0.2), RETRIES),
    )
    # from_pool: the client owns the pool, so closing the client closes the pool.
    return aioredis.Redis.from_pool(pool)


async def redis_call(
    command: Callable[[], Awaitable[T]],
    unavailable: type[Exception],
    breaker: RedisBreaker | None = None,
) -> T:
    """Run one Redis command within CALL_BUDGET; an unreachable Redis raises `unavailable`
    (each port names its own), so every adapter fails over the same way. With the
    server's `breaker` open, it raises at once, without asking Redis."""
    if breaker is not None and not breaker.allow():
        raise unavailable(f"Redis unavailable (circuit open, probed every {breaker.retry_after} s)")
    try:
        async with asyncio.timeout(CALL_BUDGET):
            result = await command()
    except TimeoutError as exc:
        error = f"Redis gave no answer within {CALL_BUDGET} s"
        if breaker is not None:
            breaker.failed(error)
        raise unavailable(error) from exc
    except UNAVAILABLE as exc:
        error = f"Redis unavailable: {type(exc).__name__}: {exc}"
        if breaker is not None:
            breaker.failed(error)
        raise unavailable(error) from exc
    except asyncio.CancelledError:
        if breaker is not None:
            breaker.abandoned()  # says nothing of Redis; a probe may be tried again
        raise
    except Exception:
        if breaker is not None:
            breaker.succeeded()  # Redis answered, with an error of ours (WRONGTYPE...)
        raise
    if breaker is not None:
        breaker.succeeded()
    return result
