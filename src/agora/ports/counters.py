"""Counters port: event counts per key and window, for rate limits on hot paths.

A rate limiter counts every socket frame; on a shared Redis one round trip per frame
was most of a frame's cost (issue 13). A backend may therefore count in the process and
tell the shared store in batches, as long as the answers keep these promises:

- in ONE process the count is exact: `incr` answers every event counted so far in the
  window, this one included;
- across P processes sharing the store, a backend that batches lets a subject past its
  `limit` by at most P x (B - 1) events per window, B being its batch for that limit
  (`RedisCounters.batch_for`: never over a tenth of the limit), and every process
  learns that a subject is over its limit within one flush interval or one batch;
- a count is never lower than what this process counted itself in the window.

Backends: `adapters.counters_cache.CacheCounters` (exact, one round trip per event,
over any Cache: the embedded backend over `MemoryCache`) and
`adapters.counters_redis.RedisCounters` (batched). A shared backend raises
`CacheUnavailable` when it cannot be reached; limiters then count in the process
(`adapters.cache_local_fallback.LocalFallbackCounters`).
"""

from __future__ import annotations

from typing import Protocol


class Counters(Protocol):
    async def incr(self, key: str, ttl: float, limit: int) -> int:
        """Count one event of `key`; the window is `ttl` seconds from the key's first
        event. Returns the count in the window, this event included. `limit` is the
        caller's bound, which sets how many events a batching backend may count
        before it asks the shared store."""

    async def set(self, key: str, value: int, ttl: float) -> None:
        """Overwrite the count and its window (a block holds the counter over the
        limit for exactly the block's length)."""

    async def close(self) -> None: ...
