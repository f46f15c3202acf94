"""The Redis backend of the Cache port, shared by every process of a deployment.

The cache is an accelerator, never the source of truth: on the shared client's short
timeouts (`redis_client`), a dead or unreachable Redis turns into `CacheUnavailable`
within a couple of seconds and callers fall back to the database.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar, cast

from agora.adapters.redis_breaker import breaker_for
from agora.adapters.redis_client import redis_call, redis_client
from agora.ports.cache import CacheUnavailable

T = TypeVar("T")
Command = tuple[Any, ...]


def _packer() -> Callable[[Command], bytes] | None:
    """hiredis's command packer (the `redis` extra takes hiredis), or None: then
    redis-py packs in Python."""
    try:
        from hiredis import pack_command
    except ImportError:  # pragma: no cover
        return None
    return pack_command


PACK_COMMAND = _packer()

# Connections the hot read keeps between its calls, checked out of the pool once (the
# pool still bounds them: they count as in use there). redis-py's checkout and release
# cost about 40 µs of CPU (a condition, a lock, a timeout, observability records), a
# tenth of a protected publications read (issue 13).
HOT_IDLE = 4

INCR_WITH_TTL = (
    "redis.call('SET', KEYS[1], 0, 'PX', ARGV[1], 'NX') return redis.call('INCR', KEYS[1])"
)


def _ms(seconds: float) -> int:
    # Redis refuses a zero PX; a sub-millisecond TTL still means "almost gone".
    return max(1, math.ceil(seconds * 1000))


class RedisCache:
    def __init__(self, url: str, *, namespace: str = "") -> None:
        self._namespace = namespace
        self._redis = redis_client(url)
        self._breaker = breaker_for(url)  # shared with every Redis adapter of the process
        # EVALSHA, loading the script again on NOSCRIPT (a restarted Redis).
        self._incr_with_ttl = self._redis.register_script(INCR_WITH_TTL)
        self._hot: list[Any] = []  # idle connections of `_pipelined`, most recent last

    def _key(self, key: str) -> str:
        return self._namespace + key

    async def _call(self, command: Callable[[], Awaitable[T]]) -> T:
        return await redis_call(command, CacheUnavailable, self._breaker)

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

    async def get_many_and_touch(
        self, keys: Sequence[str], ttls: Mapping[str, float]
    ) -> list[bytes | None]:
        if not keys:
            return []

        plain = [i for i, key in enumerate(keys) if key not in ttls]
        touched = [i for i, key in enumerate(keys) if key in ttls]
        # One MGET (one instant) for the plain keys, a GETEX for each touched one;
        # no MULTI: one round trip is all we want.
        commands: list[Command] = []
        if plain:
            commands.append(("MGET", *(self._key(keys[i]) for i in plain)))
        commands.extend(("GETEX", self._key(keys[i]), "PX", _ms(ttls[keys[i]])) for i in touched)

        replies = await self._call(lambda: self._pipelined(commands))
        values: list[bytes | None] = [None] * len(keys)
        if plain:
            for i, value in zip(plain, replies[0], strict=True):
                values[i] = value
        for i, value in zip(touched, replies[1:] if plain else replies, strict=True):
            values[i] = value
        return values

    async def _pipelined(self, commands: Sequence[Command]) -> list[Any]:
        """The replies of `commands`, written at once on one pooled connection: what
        `pipeline(transaction=False).execute()` does, without the Pipeline object's
        per-call bookkeeping (command stack, response callbacks, observability records):
        the hot read's one round trip. The same retry as any command: once more on a
        fresh connection after a connection or timeout error. An error reply raises, as
        `execute()` raises the first one."""
        pool = self._redis.connection_pool
        connection = self._hot.pop() if self._hot else await pool.get_connection()
        # The same bytes as `connection.pack_commands` (utf-8 keys, ints as digits),
        # without its Python pass over every argument.
        pack = PACK_COMMAND
        packed = b"".join(map(pack, commands)) if pack else connection.pack_commands(commands)

        async def send_and_read() -> list[Any]:
            await connection.send_packed_command(packed)
            return [await connection.read_response() for _ in commands]

        async def dropped(_error: Exception) -> None:
            await connection.disconnect()

        try:
            replies: list[Any] = await connection.retry.call_with_retry(send_and_read, dropped)
        except BaseException:
            # Replies may still be on the socket: it must not serve another caller.
            await connection.disconnect(nowait=True)
            await pool.release(connection)
            raise
        if len(self._hot) < HOT_IDLE:
            self._hot.append(connection)
        else:
            await pool.release(connection)
        return replies

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

    async def ping(self) -> None:
        await self._call(self._redis.ping)

    async def close(self) -> None:
        hot, self._hot = self._hot, []
        for connection in hot:
            await self._redis.connection_pool.release(connection)
        await self._redis.aclose()
