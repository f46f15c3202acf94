"""The Redis backend of the Cache port, shared by every process of a deployment.

The cache is an accelerator, never the source of truth: timeouts are short and retries
few, so a dead or unreachable Redis turns into `CacheUnavailable` within a couple of
seconds and callers fall back to the database instead of hanging a request.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable, Mapping
from typing import TypeVar, cast

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

from agora.ports.cache import CacheUnavailable

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


INCR_WITH_TTL = (
    "redis.call('SET', KEYS[1], 0, 'PX', ARGV[1], 'NX') return redis.call('INCR', KEYS[1])"
)


def _ms(seconds: float) -> int:
    # Redis refuses a zero PX; a sub-millisecond TTL still means "almost gone".
    return max(1, math.ceil(seconds * 1000))


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


async def redis_call(command: Callable[[], Awaitable[T]], unavailable: type[Exception]) -> T:
    """Run one Redis command within CALL_BUDGET; an unreachable Redis raises `unavailable`
    (each port names its own), so every adapter fails over the same way."""
    try:
        async with asyncio.timeout(CALL_BUDGET):
            return await command()
    except TimeoutError as exc:
        raise unavailable(f"Redis gave no answer within {CALL_BUDGET} s") from exc
    except UNAVAILABLE as exc:
        raise unavailable(f"Redis unavailable: {type(exc).__name__}: {exc}") from exc


class RedisCache:
    def __init__(self, url: str, *, namespace: str = "") -> None:
        self._namespace = namespace
        self._redis = redis_client(url)
        # EVALSHA, loading the script again on NOSCRIPT (a restarted Redis).
        self._incr_with_ttl = self._redis.register_script(INCR_WITH_TTL)

    def _key(self, key: str) -> str:
        return self._namespace + key

    async def _call(self, command: Callable[[], Awaitable[T]]) -> T:
        return await redis_call(command, CacheUnavailable)

    async def get(self, key: str) -> bytes | None:
        value = await self._call(lambda: self._redis.get(self._key(key)))
        return cast("bytes | None", value)  # decode_responses is off: always bytes

    async def set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        px = None if ttl is None else _ms(ttl)
        await self._call(lambda: self._redis.set(self._key(key), value, px=px))

    async def get_and_touch(self, key: str, ttl: float) -> bytes | None:
        value = await self._call(lambda: self._redis.getex(self._key(key), px=_ms(ttl)))
        return cast("bytes | None", value)

    async def get_many(self, *keys: str) -> list[bytes | None]:
        if not keys:
            return []
        names = [self._key(key) for key in keys]
        values = await self._call(lambda: self._redis.mget(names))
        return cast("list[bytes | None]", values)

    async def set_many(self, items: Mapping[str, bytes], ttl: float | None = None) -> None:
        if not items:
            return
        px = None if ttl is None else _ms(ttl)

        async def pipelined() -> None:
            # No MULTI: the keys are independent, one round trip is all we want.
            async with self._redis.pipeline(transaction=False) as pipe:
                for key, value in items.items():
                    pipe.set(self._key(key), value, px=px)
                await pipe.execute()

        await self._call(pipelined)

    async def set_if_absent(self, key: str, value: bytes, ttl: float) -> bool:
        stored = await self._call(
            lambda: self._redis.set(self._key(key), value, px=_ms(ttl), nx=True)
        )
        return bool(stored)

    async def delete(self, *keys: str) -> int:
        if not keys:  # DEL with no key is a Redis syntax error
            return 0
        names = [self._key(key) for key in keys]
        removed: int = await self._call(lambda: self._redis.delete(*names))
        return removed

    async def expire(self, key: str, ttl: float) -> bool:
        return bool(await self._call(lambda: self._redis.pexpire(self._key(key), _ms(ttl))))

    async def ttl(self, key: str) -> float | None:
        millis: int = await self._call(lambda: self._redis.pttl(self._key(key)))
        # -2: no such key, -1: no expiry; the port says None for both.
        return None if millis < 0 else millis / 1000

    async def incr(self, key: str, ttl: float) -> int:
        # One script: the NX create (with its TTL) and the INCR run as one step, so a
        # counter never exists without its TTL and an existing TTL is never reset. A
        # script costs a third of the CPU of the MULTI/EXEC pipeline it replaced, and
        # rate limiters call this on every socket frame.
        name = self._key(key)
        value = await self._call(lambda: self._incr_with_ttl(keys=[name], args=[_ms(ttl)]))
        return int(value)

    async def close(self) -> None:
        await self._redis.aclose()
