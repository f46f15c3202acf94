"""The Cache port's contract, run against both backends: MemoryCache and RedisCache.

Whatever the services build on the cache (the `user:<id>` entries, activity throttles,
rate counters, locks) must behave the same on one embedded process and on a shared
Redis. TTLs are short and real sleeps keep them honest; the suite runs in seconds.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ResponseError as RedisResponseError

from agora.adapters.cache_memory import MemoryCache
from agora.adapters.cache_redis import HOT_IDLE, RedisCache
from agora.adapters.redis_breaker import RETRY_AFTER
from agora.ports.cache import Cache, CacheUnavailable
from tests.contract.redis_proxy import Handler, cutting_to, forwarding_to, tcp_server
from tests.support.services import drop_namespace

T = TypeVar("T")

SHORT = 0.2  # seconds: a TTL we wait out with a real sleep
WAIT = 0.35  # comfortably past SHORT, even on a busy machine


@pytest.fixture
async def cache(backend: tuple[str, str, str]) -> AsyncIterator[Cache]:
    kind, url, namespace = backend
    store: Cache = MemoryCache() if kind == "memory" else RedisCache(url, namespace=namespace)
    try:
        yield store
    finally:
        await store.close()
        if kind == "redis":
            await drop_namespace(url, namespace)


@pytest.fixture
async def redis_cache(redis_url: str, redis_namespace: str) -> AsyncIterator[RedisCache]:
    """A RedisCache alone in its key namespace, which is dropped after the test."""
    store = RedisCache(redis_url, namespace=redis_namespace)
    try:
        yield store
    finally:
        await store.close()
        await drop_namespace(redis_url, redis_namespace)


# --- both backends -----------------------------------------------------------------


async def test_ping_answers_while_the_backend_is_up(cache: Cache) -> None:
    await cache.ping()  # readiness: raises CacheUnavailable when it cannot be reached


async def test_get_set_overwrite_and_delete(cache: Cache) -> None:
    assert await cache.get("k") is None
    await cache.set("k", b"one")
    assert await cache.get("k") == b"one"
    await cache.set("k", b"\x00two\xff")  # values are bytes, not text
    assert await cache.get("k") == b"\x00two\xff"
    assert await cache.delete("k") == 1
    assert await cache.get("k") is None
    assert await cache.delete("k") == 0


async def test_delete_of_several_keys_counts_those_that_existed(cache: Cache) -> None:
    for key in ("a", "b", "c"):
        await cache.set(key, b"x")
    assert await cache.delete("a", "b", "missing") == 2
    assert await cache.get("c") == b"x"
    assert await cache.delete() == 0


async def test_key_expires_after_its_ttl(cache: Cache) -> None:
    await cache.set("short", b"v", ttl=SHORT)
    await cache.set("forever", b"v")
    assert await cache.get("short") == b"v"
    await asyncio.sleep(WAIT)
    assert await cache.get("short") is None
    assert await cache.ttl("short") is None
    assert await cache.delete("short") == 0
    assert await cache.get("forever") == b"v"


async def test_ttl_is_none_when_missing_or_without_expiry_else_seconds(cache: Cache) -> None:
    assert await cache.ttl("missing") is None
    await cache.set("forever", b"v")
    assert await cache.ttl("forever") is None
    await cache.set("hour", b"v", ttl=3600)
    left = await cache.ttl("hour")
    assert isinstance(left, float)
    assert 3590 < left <= 3600


async def test_set_without_ttl_removes_a_previous_ttl(cache: Cache) -> None:
    await cache.set("k", b"v", ttl=SHORT)
    await cache.set("k", b"w")
    assert await cache.ttl("k") is None
    await asyncio.sleep(WAIT)
    assert await cache.get("k") == b"w"


async def test_expire_on_missing_key_is_false_and_creates_nothing(cache: Cache) -> None:
    assert await cache.expire("missing", 60) is False
    assert await cache.get("missing") is None
    assert await cache.ttl("missing") is None


async def test_expire_resets_the_ttl_of_an_existing_key(cache: Cache) -> None:
    await cache.set("k", b"v", ttl=3600)
    assert await cache.expire("k", SHORT) is True
    left = await cache.ttl("k")
    assert left is not None and 0 < left <= SHORT
    await asyncio.sleep(WAIT)
    assert await cache.get("k") is None

    await cache.set("refreshed", b"v", ttl=SHORT)
    assert await cache.expire("refreshed", 3600) is True  # what activity does to user:<id>
    await asyncio.sleep(WAIT)
    assert await cache.get("refreshed") == b"v"


async def test_get_and_touch_reads_and_resets_the_ttl(cache: Cache) -> None:
    await cache.set("k", b"v", ttl=SHORT)
    assert await cache.get_and_touch("k", 3600) == b"v"
    left = await cache.ttl("k")
    assert left is not None and 3590 < left <= 3600
    assert await cache.get_and_touch("missing", 3600) is None
    assert await cache.get("missing") is None  # nothing created


async def test_get_many_and_touch_reads_in_order_and_touches_only_those_given(
    cache: Cache,
) -> None:
    await cache.set("touched", b"t", ttl=SHORT)
    await cache.set("kept", b"k", ttl=SHORT)
    values = await cache.get_many_and_touch(
        ["kept", "missing", "touched"], {"touched": 3600, "missing": 3600}
    )
    assert values == [b"k", None, b"t"]
    left = await cache.ttl("touched")
    assert left is not None and 3590 < left <= 3600
    kept = await cache.ttl("kept")
    assert kept is not None and kept <= SHORT  # not in ttls: its TTL is left alone
    assert await cache.get("missing") is None  # nothing created
    assert await cache.get_many_and_touch([], {}) == []


async def test_get_many_reads_every_key_in_order(cache: Cache) -> None:
    await cache.set("a", b"1")
    await cache.set("c", b"\x003")
    await cache.set("gone", b"x", ttl=SHORT)
    await asyncio.sleep(WAIT)
    assert await cache.get_many("c", "missing", "a", "gone") == [b"\x003", None, b"1", None]
    assert await cache.get_many() == []


async def test_set_many_stores_every_key_with_the_ttl(cache: Cache) -> None:
    await cache.set("old", b"before", ttl=SHORT)
    await cache.set_many({"old": b"after", "new": b"\x00bytes"}, ttl=3600)
    assert await cache.get("old") == b"after" and await cache.get("new") == b"\x00bytes"
    for key in ("old", "new"):
        left = await cache.ttl(key)
        assert left is not None and 3590 < left <= 3600  # the old short TTL was replaced
    await cache.set_many({"short": b"v"}, ttl=SHORT)
    await cache.set_many({"forever": b"v"})
    await cache.set_many({})  # nothing to do is not an error
    await asyncio.sleep(WAIT)
    assert await cache.get("short") is None
    assert await cache.get("forever") == b"v" and await cache.ttl("forever") is None


async def test_set_if_absent_stores_only_when_absent(cache: Cache) -> None:
    assert await cache.set_if_absent("lock", b"first", ttl=SHORT) is True
    assert await cache.set_if_absent("lock", b"second", ttl=3600) is False
    assert await cache.get("lock") == b"first"
    left = await cache.ttl("lock")
    assert left is not None and left <= SHORT  # the loser did not touch the TTL
    await asyncio.sleep(WAIT)
    assert await cache.set_if_absent("lock", b"third", ttl=SHORT) is True
    assert await cache.get("lock") == b"third"


async def test_set_if_absent_has_exactly_one_winner_under_concurrency(cache: Cache) -> None:
    attempts = 50
    results = await asyncio.gather(
        *(cache.set_if_absent("race", str(i).encode(), ttl=10) for i in range(attempts))
    )
    winners = [i for i, won in enumerate(results) if won]
    assert len(winners) == 1
    assert await cache.get("race") == str(winners[0]).encode()


async def test_incr_sets_the_ttl_only_when_it_creates_the_key(cache: Cache) -> None:
    assert await cache.incr("hits", ttl=SHORT) == 1
    first = await cache.ttl("hits")
    assert first is not None and 0 < first <= SHORT
    assert await cache.incr("hits", ttl=3600) == 2  # a later, longer TTL is ignored
    later = await cache.ttl("hits")
    assert later is not None and later <= SHORT
    await asyncio.sleep(WAIT)
    assert await cache.get("hits") is None  # the window ended: the counter starts over
    assert await cache.incr("hits", ttl=3600) == 1
    started = await cache.ttl("hits")
    assert started is not None and started > 3590


async def test_incr_keeps_an_existing_key_without_expiry(cache: Cache) -> None:
    await cache.set("count", b"41")
    assert await cache.incr("count", ttl=SHORT) == 42
    assert await cache.ttl("count") is None
    assert await cache.get("count") == b"42"


async def test_incr_counts_every_concurrent_call_once(cache: Cache) -> None:
    values = await asyncio.gather(*(cache.incr("n", ttl=10) for _ in range(50)))
    assert sorted(values) == list(range(1, 51))
    assert await cache.get("n") == b"50"
    left = await cache.ttl("n")
    assert left is not None and 0 < left <= 10


# --- Redis: keys, namespaces ---------------------------------------------------------


@pytest.mark.redis
async def test_redis_key_is_exactly_namespace_plus_key(
    redis_url: str, redis_namespace: str
) -> None:
    raw = aioredis.Redis.from_url(redis_url)
    namespaced = RedisCache(redis_url, namespace=redis_namespace)
    bare = RedisCache(redis_url)  # the deployment default: docs/contracts.md's keys, untouched
    user_id = f"contract-{uuid.uuid4().hex}"
    try:
        await namespaced.set(f"user:{user_id}", b'{"status":"connected"}', ttl=60)
        assert await raw.get(f"{redis_namespace}user:{user_id}") == b'{"status":"connected"}'
        assert await raw.exists(f"user:{user_id}") == 0

        await bare.set(f"user:{user_id}", b"{}", ttl=60)
        assert await raw.get(f"user:{user_id}") == b"{}"
        assert 0 < await raw.ttl(f"user:{user_id}") <= 60
    finally:
        await raw.delete(f"user:{user_id}")
        await drop_namespace(redis_url, redis_namespace)
        await namespaced.close()
        await bare.close()
        await raw.aclose()


@pytest.mark.redis
async def test_redis_namespaces_do_not_see_each_other(redis_url: str, redis_namespace: str) -> None:
    one = RedisCache(redis_url, namespace=f"{redis_namespace}one:")
    two = RedisCache(redis_url, namespace=f"{redis_namespace}two:")
    try:
        await one.set("k", b"1", ttl=60)
        assert await two.get("k") is None
        assert await two.ttl("k") is None
        assert await two.expire("k", 5) is False
        assert await two.set_if_absent("k", b"2", ttl=60) is True
        assert await two.incr("n", ttl=60) == 1
        assert await two.delete("k") == 1
        assert await one.get("k") == b"1"
        assert await one.get("n") is None
    finally:
        await one.close()
        await two.close()
        await drop_namespace(redis_url, redis_namespace)


@pytest.mark.redis
async def test_redis_error_reply_in_one_round_trip_raises_and_the_next_call_works(
    redis_url: str, redis_namespace: str, redis_cache: RedisCache
) -> None:
    # A GETEX on a hash: Redis answers WRONGTYPE (a bug of ours, not an outage). The
    # replies after it must not be left for the next caller of the pooled connection.
    raw = aioredis.Redis.from_url(redis_url)
    try:
        await raw.hset(f"{redis_namespace}hash", "f", "v")
    finally:
        await raw.aclose()
    await redis_cache.set("a", b"1", ttl=60)
    await redis_cache.set("b", b"2", ttl=60)
    with pytest.raises(RedisResponseError, match="WRONGTYPE"):
        await redis_cache.get_many_and_touch(["a", "hash", "b"], {"hash": 60, "b": 60})
    for _ in range(3):
        assert await redis_cache.get_many_and_touch(["b", "a"], {"a": 60}) == [b"2", b"1"]


@pytest.mark.redis
async def test_redis_connection_dropped_during_the_round_trip_is_retried_once(
    redis_url: str, redis_namespace: str
) -> None:
    # The pooled connection dies after the client took it (a Redis restart, a load
    # balancer's idle cut): the round trip is tried again on a new connection, once.
    cut = asyncio.Event()
    async with tcp_server(cutting_to(redis_url, cut)) as port:
        cache = RedisCache(f"redis://127.0.0.1:{port}", namespace=redis_namespace)
        try:
            await cache.set("k", b"v", ttl=60)
            assert await cache.get_many_and_touch(["k"], {"k": 60}) == [b"v"]
            cut.set()
            assert await cache.get_many_and_touch(["j", "k"], {"k": 60}) == [None, b"v"]
            assert not cut.is_set()  # the first try was the one cut
        finally:
            await cache.close()
            await drop_namespace(redis_url, redis_namespace)


@pytest.mark.redis
async def test_redis_hot_read_keeps_a_few_connections_and_never_shares_one(
    redis_cache: RedisCache,
) -> None:
    """The one-round-trip read takes its connection out of redis-py's pool once, not
    per call (the checkout cost a tenth of a publications read), keeps at most HOT_IDLE
    of them, and two reads in flight never use the same one."""
    cache = redis_cache
    pool = cache._redis.connection_pool
    checkouts = 0
    checkout = pool.get_connection

    async def counted() -> Any:
        nonlocal checkouts
        checkouts += 1
        return await checkout()

    pool.get_connection = counted  # type: ignore[method-assign]
    for i in range(20):
        await cache.set(f"k{i}", str(i).encode(), ttl=60)
    checkouts = 0
    for _ in range(50):
        assert await cache.get_many_and_touch(["k1", "k2"], {"k2": 60}) == [b"1", b"2"]
    assert checkouts == 1
    keys = [[f"k{i}", f"k{(i + 1) % 20}"] for i in range(20)]
    answers = await asyncio.gather(*(cache.get_many_and_touch(k, {k[1]: 60}) for k in keys))
    assert answers == [[k[0][1:].encode(), k[1][1:].encode()] for k in keys]
    assert len(cache._hot) == HOT_IDLE  # the others went back to the pool
    assert len(pool._in_use_connections) == HOT_IDLE


# --- Redis unreachable: fail fast, then recover ------------------------------------


async def assert_every_call_unavailable(cache: RedisCache, budget: float) -> None:
    calls = [
        lambda: cache.get("k"),
        lambda: cache.set("k", b"v", ttl=1),
        lambda: cache.set_many({"k": b"v", "j": b"w"}, ttl=1),
        lambda: cache.get_many_and_touch(["k", "j"], {"j": 1}),
        lambda: cache.set_if_absent("k", b"v", ttl=1),
        lambda: cache.delete("k", "j"),
        lambda: cache.expire("k", 1),
        lambda: cache.ttl("k"),
        lambda: cache.incr("k", ttl=1),
        cache.ping,
    ]
    for call in calls:
        started = time.monotonic()
        with pytest.raises(CacheUnavailable):
            await call()
        assert time.monotonic() - started < budget


async def test_redis_on_a_closed_port_is_unavailable_at_once() -> None:
    cache = RedisCache("redis://127.0.0.1:1")
    try:
        await assert_every_call_unavailable(cache, budget=1.0)
    finally:
        await cache.close()


def answering(reply: bytes | None) -> Handler:
    """Answers `reply` to anything, or accepts and stays silent (None)."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(100)
        if reply is not None:
            writer.write(reply)
            await writer.drain()
        await reader.read()  # hold the connection until the client gives up

    return handle


async def test_redis_that_never_answers_is_unavailable_within_the_budget() -> None:
    # What a dead host or a stuck Redis looks like: TCP accepts, nothing comes back.
    async with tcp_server(answering(None)) as port:
        cache = RedisCache(f"redis://127.0.0.1:{port}")
        try:
            started = time.monotonic()
            with pytest.raises(CacheUnavailable):
                await cache.get("k")
            assert time.monotonic() - started < 3.0
        finally:
            await cache.close()


async def test_something_that_is_not_redis_is_unavailable() -> None:
    async with tcp_server(answering(b"HTTP/1.1 400 Bad Request\r\n\r\n")) as port:
        cache = RedisCache(f"redis://127.0.0.1:{port}")
        try:
            await assert_every_call_unavailable(cache, budget=1.0)
        finally:
            await cache.close()


@pytest.mark.redis
async def answered_within(call: Callable[[], Awaitable[T]], seconds: float) -> T:
    deadline = time.monotonic() + seconds
    while True:
        try:
            return await call()
        except CacheUnavailable:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


async def test_redis_gone_then_back_the_same_cache_recovers(
    redis_url: str, redis_namespace: str
) -> None:
    async with tcp_server(forwarding_to(redis_url)) as port:
        cache = RedisCache(f"redis://127.0.0.1:{port}", namespace=redis_namespace)
        await cache.set("k", b"v", ttl=60)
        assert await cache.get("k") == b"v"
    try:
        # The proxy is gone: the pooled connection is dead and reconnecting is refused.
        await assert_every_call_unavailable(cache, budget=1.0)
        async with tcp_server(forwarding_to(redis_url), port=port):
            # The circuit breaker lets a probe through within RETRY_AFTER: then it works.
            assert await answered_within(lambda: cache.get("k"), RETRY_AFTER + 2) == b"v"
            assert await cache.incr("n", ttl=60) == 1
    finally:
        await cache.close()
        await drop_namespace(redis_url, redis_namespace)
