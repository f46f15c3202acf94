"""A rate limiter over the Cache port: a count per window, then blocks that grow.

`hit(subject)` counts one event of `subject` (a user id, an IP) and says whether it is
allowed. Going over `limit` events in a window starts a block of the subject for
`block` seconds; each new block of the same subject lasts `growth` times longer, up
to `max_block`, and the level is remembered for `memory` seconds after the last block
(the login throttle's rules, services/auth/throttle.py, for sockets).

Events are counted on the Counters port (given, or the cache's own `incr`): one count
per allowed event, and on Redis most of them without a round trip (`RedisCounters`
counts in the process and flushes in batches: exact in one process, within a stated
bound across processes, ports/counters.py). A block also overwrites the subject's
counter with a value over the limit and the block's TTL, so the count of the next
event answers "blocked" too. The block key exists only to let one of several
simultaneous events (on any instance) start the block and raise the level.

With the cache unreachable, the counts go on in this process (`LocalFallbackCache`,
`LocalFallbackCounters`, logged once): a limit holds per instance, never disappears,
and a cache outage does not turn into a socket outage.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from agora.adapters.cache_local_fallback import LocalFallbackCache, LocalFallbackCounters
from agora.adapters.counters_cache import CacheCounters
from agora.core.settings import Settings
from agora.ports.cache import Cache
from agora.ports.counters import Counters

log = logging.getLogger("agora.realtime.limits")


@dataclass(frozen=True, slots=True)
class Verdict:
    allowed: bool
    retry_after: float = 0.0
    # Set on the event that started a block: its level (1 for the first) and length.
    new_block_level: int | None = None


ALLOWED = Verdict(True)


class RateLimiter:
    def __init__(
        self,
        cache: Cache,
        *,
        prefix: str,
        name: str,
        limit: int,
        window: float,
        block: float,
        growth: float = 2.0,
        max_block: float = 3600.0,
        memory: float = 86400.0,
        counters: Counters | None = None,
    ) -> None:
        if limit < 1 or window <= 0 or block <= 0 or max_block < block or growth < 1:
            raise ValueError("invalid rate limit")
        self._cache = LocalFallbackCache(cache, f"rate limit {name}")
        self._counts = LocalFallbackCounters(
            counters if counters is not None else CacheCounters(cache), f"rate limit {name} counts"
        )
        self._base = f"{prefix}ratelimit:{name}:"
        self.limit = limit
        self.window = window
        self._block = block
        self._growth = growth
        self._max_block = max_block
        self._memory = max(memory, max_block)

    def key(self, kind: str, subject: str) -> str:
        """`<prefix>ratelimit:<name>:count:<subject>`, `...:block:...`, `...:level:...`."""
        return f"{self._base}{kind}:{subject}"

    def block_seconds(self, level: int) -> float:
        try:
            seconds = self._block * self._growth ** (level - 1)
        except OverflowError:
            return self._max_block
        return min(seconds, self._max_block)

    async def hit(self, subject: str) -> Verdict:
        count = await self._counts.incr(self.key("count", subject), self.window, self.limit)
        if count <= self.limit:
            return ALLOWED
        return await self._over(subject)

    async def blocked_for(self, subject: str) -> float:
        """Seconds left of the subject's block (0 when not blocked); counts nothing."""
        return await self._cache.ttl(self.key("block", subject)) or 0.0

    async def _over(self, subject: str) -> Verdict:
        block_key = self.key("block", subject)
        # Claimed with the first block's length: of simultaneous events over the limit,
        # only one raises the level, which is known only once claimed.
        if not await self._cache.set_if_absent(block_key, b"0", self._block):
            left = await self._cache.ttl(block_key)
            return Verdict(False, left if left is not None else self._block)
        level_key = self.key("level", subject)
        level = await self._cache.incr(level_key, self._memory)
        await self._cache.expire(level_key, self._memory)  # remembered from the last block
        seconds = self.block_seconds(level)
        await self._cache.set(block_key, str(level).encode(), seconds)
        # The counter stays over the limit for exactly the block: one INCR answers.
        await self._counts.set(self.key("count", subject), self.limit + 1, seconds)
        return Verdict(False, seconds, new_block_level=level)


def realtime_limiter(
    cache: Cache,
    settings: Settings,
    name: str,
    limit: int,
    window: float,
    counters: Counters | None = None,
) -> RateLimiter:
    """A limiter of the real-time services: blocks grow as `realtime_block_*` say."""
    return RateLimiter(
        cache,
        prefix=settings.key_prefix,
        name=name,
        limit=limit,
        window=window,
        block=settings.realtime_block_seconds,
        growth=settings.realtime_block_growth,
        max_block=settings.realtime_block_max_seconds,
        memory=settings.realtime_block_memory,
        counters=counters,
    )
