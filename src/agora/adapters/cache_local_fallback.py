"""A Cache that counts in this process while the shared one is unavailable.

For limits (login throttling, socket and messaging limits, uploads): with Redis down
they used to stop counting, so a limit silently disappeared (issue 11). Wrapped in
`LocalFallbackCache`, a limit's counters go to a per-process `MemoryCache` for as long
as the shared cache raises `CacheUnavailable`: the limit holds per process (N instances
let through at most N times the limit) instead of not at all. The switch is logged once
each way. Counters do not move between the two: after the outage the shared counts
resume where they were, the local ones expire with their TTLs.

`LocalFallbackCounters` does the same for the Counters port (a limiter's event counts).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Generic, TypeVar

from agora.adapters.cache_memory import MemoryCache
from agora.adapters.counters_cache import CacheCounters
from agora.ports.cache import Cache, CacheUnavailable
from agora.ports.counters import Counters

log = logging.getLogger("agora.limits")

T = TypeVar("T")
Store = TypeVar("Store", Cache, Counters)


class _Fallback(Generic[Store]):
    """Each call to `shared`, or to `local` while `shared` raises CacheUnavailable."""

    shared: Store
    local: Store
    name: str
    degraded: bool  # the last call fell back

    async def _either(self, call: Callable[[Store], Awaitable[T]]) -> T:
        try:
            result = await call(self.shared)
        except CacheUnavailable as error:
            if not self.degraded:
                self.degraded = True
                log.warning(
                    "%s: the shared cache is unavailable (%s); counting per process",
                    self.name,
                    error,
                )
            return await call(self.local)
        if self.degraded:
            self.degraded = False
            log.warning("%s: the shared cache is back; counting across instances", self.name)
        return result


class LocalFallbackCache(_Fallback[Cache]):
    def __init__(self, shared: Cache, name: str, local: Cache | None = None) -> None:
        self.shared = shared
        self.local = local if local is not None else MemoryCache()
        self.name = name
        self.degraded = False

    async def get(self, key: str) -> bytes | None:
        return await self._either(lambda cache: cache.get(key))

    async def set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        await self._either(lambda cache: cache.set(key, value, ttl))

    async def get_and_touch(self, key: str, ttl: float) -> bytes | None:
        return await self._either(lambda cache: cache.get_and_touch(key, ttl))

    async def get_many(self, *keys: str) -> list[bytes | None]:
        return await self._either(lambda cache: cache.get_many(*keys))

    async def set_many(self, items: Mapping[str, bytes], ttl: float | None = None) -> None:
        await self._either(lambda cache: cache.set_many(items, ttl))

    async def set_if_absent(self, key: str, value: bytes, ttl: float) -> bool:
        return await self._either(lambda cache: cache.set_if_absent(key, value, ttl))

    async def delete(self, *keys: str) -> int:
        return await self._either(lambda cache: cache.delete(*keys))

    async def expire(self, key: str, ttl: float) -> bool:
        return await self._either(lambda cache: cache.expire(key, ttl))

    async def ttl(self, key: str) -> float | None:
        return await self._either(lambda cache: cache.ttl(key))

    async def incr(self, key: str, ttl: float) -> int:
        return await self._either(lambda cache: cache.incr(key, ttl))

    async def ping(self) -> None:
        await self.shared.ping()  # readiness is the shared cache's

    async def close(self) -> None:
        await self.local.close()  # the shared cache is its owner's to close


class LocalFallbackCounters(_Fallback[Counters]):
    def __init__(self, shared: Counters, name: str, local: Counters | None = None) -> None:
        self.shared = shared
        self.local = local if local is not None else CacheCounters(MemoryCache())
        self.name = name
        self.degraded = False

    async def incr(self, key: str, ttl: float, limit: int) -> int:
        return await self._either(lambda counters: counters.incr(key, ttl, limit))

    async def set(self, key: str, value: int, ttl: float) -> None:
        await self._either(lambda counters: counters.set(key, value, ttl))

    async def close(self) -> None:
        await self.local.close()  # the shared counters are their owner's to close
