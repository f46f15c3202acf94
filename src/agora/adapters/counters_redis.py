"""The Redis backend of the Counters port: counted in the process, flushed in batches.

Each key's state here is what Redis said of the other processes' events at the last
flush (`others`) plus what this process counted itself (`own`, sent or not). An event is
answered from that sum, without a round trip, while the key has fewer than B events
pending (`batch_for`). Otherwise the event waits for a
flush and is answered with what Redis counts: exact in one process, and across P
processes a subject gets at most P x (B - 1) events past its limit per window (each
process can have counted at most B - 1 of them on a stale `others` before its flush tells
it the truth; after that it asks Redis about every event of that window).

A flusher task sends every pending count every `flush_interval` seconds, so other
processes see them within that time even when B is never reached. A flush is ONE
script call for all the keys (INCRBY, creating the key with its window's TTL, and PTTL,
so each key's local window ends when Redis's does); flushes run one at a time.

Redis down or hung: calls go through the shared client and the server's circuit
breaker (`redis_call`), so a flush fails within the call budget, then at once while
the breaker is open. The event being answered raises `CacheUnavailable` (the limiter
counts it in the process, `LocalFallbackCounters`); events counted here stay pending
and are sent once Redis answers again. Counts pending when the process stops are not
sent (at most B - 1 per key, less than a flush interval's worth).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from agora.adapters.redis_breaker import breaker_for
from agora.adapters.redis_client import redis_call, redis_client
from agora.ports.cache import CacheUnavailable

log = logging.getLogger("agora.limits")

# KEYS: the counters; ARGV: per key, its window in ms then the events to add.
# Returns, per key, the count after the add and the ms left of its window.
FLUSH = """
local out = {}
for i, key in ipairs(KEYS) do
  redis.call('SET', key, 0, 'PX', ARGV[2 * i - 1], 'NX')
  out[2 * i - 1] = redis.call('INCRBY', key, ARGV[2 * i])
  out[2 * i] = redis.call('PTTL', key)
end
return out
"""

FLUSH_INTERVAL = 0.1  # seconds
MAX_BATCH = 32  # events of one key counted here before a flush is awaited
SWEEP_EVERY = 10  # flushes between two sweeps of the keys whose window ended


def _ms(seconds: float) -> int:
    return max(1, math.ceil(seconds * 1000))


@dataclass(slots=True)
class _Count:
    """One key, this window. An event's count is `others` + its own rank among this
    process's events: exact in one process, even for events that waited for a flush
    while later ones were counted."""

    ttl: float  # the window, for creating the key
    expires_at: float  # when the window ends, as far as this process knows (monotonic)
    others: int = 0  # other processes' events in Redis at the last flush
    sent: int = 0  # this process's events in Redis
    in_flight: int = 0  # sent by the flush under way
    pending: int = 0  # counted here since, not sent yet

    @property
    def own(self) -> int:
        return self.sent + self.in_flight + self.pending


class RedisCounters:
    def __init__(
        self,
        url: str,
        *,
        namespace: str = "",
        flush_interval: float = FLUSH_INTERVAL,
        max_batch: int = MAX_BATCH,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if flush_interval <= 0 or max_batch < 1:
            raise ValueError("invalid counter batching")
        self._namespace = namespace
        self._redis = redis_client(url)
        self._breaker = breaker_for(url)  # shared with every Redis adapter of the process
        self._flush_script = self._redis.register_script(FLUSH)
        self.flush_interval = flush_interval
        self.max_batch = max_batch
        self._clock = clock
        self._counts: dict[str, _Count] = {}
        self._dirty: set[str] = set()  # keys with pending events
        self._lock = asyncio.Lock()  # one flush at a time: `others` only moves forward
        self._flusher: asyncio.Task[None] | None = None
        self.flushes = 0  # calls to Redis so far (a flush is one call)

    def batch_for(self, limit: int) -> int:
        """B: at most a tenth of the limit, so that P processes together overshoot by
        at most P tenths of it; 1 (a round trip per event) for limits under 20."""
        return max(1, min(self.max_batch, limit // 10))

    async def incr(self, key: str, ttl: float, limit: int) -> int:
        now = self._clock()
        count = self._counts.get(key)
        if count is None:
            count = self._counts[key] = _Count(ttl, now + ttl)
        elif count.expires_at <= now:  # Redis's window has ended: so has what we knew
            count.others, count.sent, count.expires_at, count.ttl = 0, 0, now + ttl, ttl
        count.pending += 1
        rank = count.own
        self._dirty.add(key)
        # Over the limit by what is known here is over for sure (`others` only grows in
        # a window): answered at once, as an event far under it is, until B are pending.
        if count.pending >= self.batch_for(limit):
            try:
                await self._flush_now()
            except BaseException:
                if count.pending:  # the caller counts this one elsewhere, or not at all
                    count.pending -= 1
                raise
            return count.others + rank  # with what Redis said of the others just now
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_every_interval())
        return count.others + rank

    async def set(self, key: str, value: int, ttl: float) -> None:
        async with self._lock:
            name = self._namespace + key
            await self._call(lambda: self._redis.set(name, value, px=_ms(ttl)))
            count = self._counts.get(key)
            if count is None:
                count = self._counts[key] = _Count(ttl, 0.0)
            # The count is now `value`, none of it this process's own events.
            count.others, count.sent, count.pending = value, 0, 0
            count.expires_at = self._clock() + ttl
            self._dirty.discard(key)

    async def close(self) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
            await asyncio.gather(self._flusher, return_exceptions=True)
        await self._redis.aclose()

    # --- flushing ------------------------------------------------------------------------

    async def _call(self, command: Callable[[], Any]) -> Any:
        return await redis_call(command, CacheUnavailable, self._breaker)

    async def _flush_now(self) -> None:
        async with self._lock:
            await self._flush()

    async def _flush_every_interval(self) -> None:
        while self._dirty:
            await asyncio.sleep(self.flush_interval)
            try:
                await self._flush_now()
            except CacheUnavailable:
                pass  # logged by the breaker; the counts stay pending for the next try
            except Exception:  # a bug: logged, and tried again at the next interval
                log.exception("flushing the rate-limit counters failed")

    async def _flush(self) -> None:
        """Send every pending count in one script call. Caller holds the lock."""
        sent = [(key, self._counts[key]) for key in self._dirty]
        self._dirty.clear()
        sent = [(key, count) for key, count in sent if count.pending]
        if not sent:
            return
        keys: list[str] = []
        args: list[int] = []
        for key, count in sent:
            count.in_flight, count.pending = count.pending, 0
            keys.append(self._namespace + key)
            args += [_ms(count.ttl), count.in_flight]
        try:
            reply = await self._call(lambda: self._flush_script(keys=keys, args=args))
        except BaseException:
            for key, count in sent:  # not counted in Redis: pending again
                count.pending += count.in_flight
                count.in_flight = 0
                self._dirty.add(key)
            raise
        now = self._clock()
        for i, (_, count) in enumerate(sent):
            millis = int(reply[2 * i + 1])
            total = int(reply[2 * i])
            count.sent += count.in_flight
            if total < count.sent:  # Redis's window restarted: only these of ours are in it
                count.sent = min(total, count.in_flight)
            count.others, count.in_flight = total - count.sent, 0
            count.expires_at = now + (millis / 1000 if millis > 0 else count.ttl)
        self.flushes += 1
        if self.flushes % SWEEP_EVERY == 0:
            self._sweep(now)

    def _sweep(self, now: float) -> None:
        # Keys whose window has ended and that have nothing to send: memory stays
        # proportional to the subjects counted within their last window.
        ended = [
            key
            for key, count in self._counts.items()
            if count.expires_at <= now and not count.pending and not count.in_flight
        ]
        for key in ended:
            del self._counts[key]
