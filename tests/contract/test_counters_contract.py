"""The Counters port's contract, run against both backends: counts on the embedded
cache (`CacheCounters` over `MemoryCache`) and `RedisCounters` (counted in the process,
flushed in batches). Then what only the batching backend promises: the bound across
processes, the flush interval, and a hung Redis failing over like every Redis call."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from agora.adapters.cache_memory import MemoryCache
from agora.adapters.cache_redis import RedisCache
from agora.adapters.counters_cache import CacheCounters
from agora.adapters.counters_redis import RedisCounters
from agora.ports.cache import CacheUnavailable
from agora.ports.counters import Counters
from agora.realtime.limits import RateLimiter
from tests.contract.redis_proxy import stalling_to, tcp_server
from tests.support.services import drop_namespace

SHORT = 0.3  # seconds: a window we wait out with a real sleep
WAIT = 0.5


@pytest.fixture
async def counters(backend: tuple[str, str, str]) -> AsyncIterator[Counters]:
    kind, url, namespace = backend
    store: Counters = (
        CacheCounters(MemoryCache())
        if kind == "memory"
        else RedisCounters(url, namespace=namespace, max_batch=8)
    )
    try:
        yield store
    finally:
        await store.close()
        if kind == "redis":
            await drop_namespace(url, namespace)


# --- both backends -----------------------------------------------------------------


async def test_one_process_counts_every_event_exactly(counters: Counters) -> None:
    # Under, at and over the limit: the batching backend answers from its own counts
    # below the limit and asks Redis past it; in one process both are exact.
    answers = [await counters.incr("k", 60, limit=100) for _ in range(150)]
    assert answers == list(range(1, 151))


async def test_concurrent_events_are_each_counted_once(counters: Counters) -> None:
    answers = await asyncio.gather(*(counters.incr("k", 60, limit=30) for _ in range(60)))
    assert max(answers) == 60
    # Every event at or under the limit got its own count: none allowed twice over.
    assert sorted(a for a in answers if a <= 30) == list(range(1, 31))


async def test_keys_are_counted_apart(counters: Counters) -> None:
    for _ in range(3):
        await counters.incr("a", 60, limit=100)
    assert await counters.incr("b", 60, limit=100) == 1
    assert await counters.incr("a", 60, limit=100) == 4


async def test_the_window_starts_with_the_first_event_and_ends_after_ttl(
    counters: Counters,
) -> None:
    assert await counters.incr("k", SHORT, limit=100) == 1
    assert await counters.incr("k", SHORT, limit=100) == 2
    await asyncio.sleep(WAIT)
    assert await counters.incr("k", SHORT, limit=100) == 1


async def test_set_overwrites_the_count_and_its_window(counters: Counters) -> None:
    await counters.incr("k", 60, limit=100)
    await counters.set("k", 101, SHORT)  # a block: over the limit for the block's length
    assert await counters.incr("k", 60, limit=100) == 102
    await asyncio.sleep(WAIT)
    assert await counters.incr("k", 60, limit=100) == 1


# --- Redis: the batching, across processes ------------------------------------------


@pytest.mark.redis
async def test_processes_together_pass_a_limit_by_at_most_p_times_batch_minus_one(
    redis_url: str, redis_namespace: str
) -> None:
    # Three "processes" (one RedisCounters each, as each process has its own), a limit
    # of 200 (batch 8 of at most a tenth: 8); each counts in turn, so each one's last
    # known count is as stale as the interleaving makes it.
    limit, batch, processes = 200, 8, 3
    counters = [
        RedisCounters(redis_url, namespace=redis_namespace, max_batch=batch, flush_interval=5)
        for _ in range(processes)
    ]
    try:
        assert counters[0].batch_for(limit) == batch
        allowed = 0
        for _ in range(400):
            for process in counters:
                if await process.incr("k", 60, limit) <= limit:
                    allowed += 1
        assert limit <= allowed <= limit + processes * (batch - 1)
        # Each process has learnt: its next event asks Redis and is refused.
        for process in counters:
            assert await process.incr("k", 60, limit) > limit
    finally:
        for process in counters:
            await process.close()
        await drop_namespace(redis_url, redis_namespace)


@pytest.mark.redis
async def test_a_process_that_counted_up_to_the_limit_stops_another_within_a_batch(
    redis_url: str, redis_namespace: str
) -> None:
    first = RedisCounters(redis_url, namespace=redis_namespace, max_batch=8, flush_interval=5)
    second = RedisCounters(redis_url, namespace=redis_namespace, max_batch=8, flush_interval=5)
    try:
        assert await second.incr("k", 60, limit=100) == 1  # second's view: 1, stale soon
        for _ in range(100):
            await first.incr("k", 60, limit=100)
        allowed = 0
        while await second.incr("k", 60, limit=100) <= 100:
            allowed += 1
        assert allowed <= 8 - 1
    finally:
        await first.close()
        await second.close()
        await drop_namespace(redis_url, redis_namespace)


@pytest.mark.redis
async def test_counts_reach_redis_within_the_flush_interval(
    redis_url: str, redis_namespace: str
) -> None:
    counters = RedisCounters(redis_url, namespace=redis_namespace, flush_interval=0.1)
    client = aioredis.Redis.from_url(redis_url)
    try:
        for _ in range(3):  # fewer than a batch: no flush awaited
            await counters.incr("k", 60, limit=1000)
        await asyncio.sleep(0.5)
        assert await client.get(f"{redis_namespace}k") == b"3"
        assert 0 < await client.pttl(f"{redis_namespace}k") <= 60_000
    finally:
        await client.aclose()
        await counters.close()
        await drop_namespace(redis_url, redis_namespace)


@pytest.mark.redis
async def test_batching_saves_round_trips(redis_url: str, redis_namespace: str) -> None:
    # What the batching is for: 320 events of one subject, far under a limit of 10^6,
    # make at most a tenth as many Redis calls (a flush per 32 events).
    counters = RedisCounters(redis_url, namespace=redis_namespace, flush_interval=5)
    try:
        for _ in range(320):
            await counters.incr("k", 60, limit=1_000_000)
        assert counters.flushes <= 10
    finally:
        await counters.close()
        await drop_namespace(redis_url, redis_namespace)


@pytest.mark.redis
async def test_a_hung_redis_fails_within_the_budget_then_at_once(redis_url: str) -> None:
    # A limit of 10: batch 1, every event asks Redis. The first costs one call budget
    # and opens the server's breaker; the next ones fail at once (the limiter then
    # counts them in the process: LocalFallbackCounters).
    flowing = asyncio.Event()
    flowing.set()
    async with tcp_server(stalling_to(redis_url, flowing)) as port:
        counters = RedisCounters(f"redis://127.0.0.1:{port}/0", namespace="agora-test-hung:")
        try:
            assert await counters.incr("k", 60, limit=10) == 1
            flowing.clear()
            started = time.monotonic()
            with pytest.raises(CacheUnavailable):
                await counters.incr("k", 60, limit=10)
            assert time.monotonic() - started < 4.0
            started = time.monotonic()
            with pytest.raises(CacheUnavailable):
                await counters.incr("k", 60, limit=10)
            assert time.monotonic() - started < 0.5
        finally:
            flowing.set()
            await counters.close()
            await drop_namespace(redis_url, "agora-test-hung:")


@pytest.mark.redis
async def test_a_limiter_on_a_hung_redis_still_blocks_counting_in_the_process(
    redis_url: str,
) -> None:
    # The limiter's rule with Redis hung (issue 11's local fallback, issue 15's breaker):
    # one call budget, then the limit holds per process and the block starts locally.
    flowing = asyncio.Event()
    flowing.set()
    async with tcp_server(stalling_to(redis_url, flowing)) as port:
        url = f"redis://127.0.0.1:{port}/0"
        cache = RedisCache(url, namespace="agora-test-hung-limiter:")
        counters = RedisCounters(url, namespace="agora-test-hung-limiter:")
        limiter = RateLimiter(
            cache, prefix="t:", name="m", limit=50, window=60, block=5, counters=counters
        )
        try:
            assert (await limiter.hit("u")).allowed
            flowing.clear()
            started = time.monotonic()
            verdicts = [await limiter.hit("u") for _ in range(80)]
            assert time.monotonic() - started < 8.0
            # The counts here start from zero, as the fallback's always did (issue 11),
            # so the limit holds from the stall on, plus at most the B - 1 = 4 events
            # answered from this process's own count before the first flush failed.
            allowed = 1 + sum(v.allowed for v in verdicts)
            assert 50 <= allowed <= 50 + 4
            assert [v.new_block_level for v in verdicts if v.new_block_level] == [1]
        finally:
            flowing.set()
            await counters.close()
            await cache.close()
            await drop_namespace(redis_url, "agora-test-hung-limiter:")
