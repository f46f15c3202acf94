"""Counters on a Cache: each event one `Cache.incr`, exact everywhere.

The embedded backend of the Counters port (over the process's `MemoryCache`, where a
round trip is a dict lookup), and what a limiter counts with when given no Counters
(the cache's own `incr`: on Redis, one script per event).
"""

from __future__ import annotations

from agora.ports.cache import Cache


class CacheCounters:
    def __init__(self, cache: Cache) -> None:
        self.cache = cache

    async def incr(self, key: str, ttl: float, limit: int) -> int:
        return await self.cache.incr(key, ttl)

    async def set(self, key: str, value: int, ttl: float) -> None:
        await self.cache.set(key, str(value).encode(), ttl)

    async def close(self) -> None:
        return None  # the cache is its owner's to close
