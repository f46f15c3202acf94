"""The Presence port's contract, run against both backends: MemoryPresence and RedisPresence.

The sockets announce join/leave per user from the booleans these calls return, and answer
"who is online" from `online`; with one embedded process or several instances sharing
Redis, the answers must be the same. TTLs are short and real sleeps keep them honest.
The Redis-only part covers other instances, the key layout and an unreachable Redis.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from agora.adapters.presence_memory import MemoryPresence
from agora.adapters.presence_redis import RedisPresence
from agora.core.settings import Settings
from agora.ports.presence import Presence, PresenceUnavailable
from agora.runtime.backends import build_presence
from tests.support.services import drop_namespace

SHORT = 0.2  # seconds: a TTL we wait out with a real sleep
WAIT = 0.35  # comfortably past SHORT, even on a busy machine
LONG = 60.0


@pytest.fixture
async def presence(backend: tuple[str, str, str]) -> AsyncIterator[Presence]:
    kind, url, namespace = backend
    registry: Presence = (
        MemoryPresence() if kind == "memory" else RedisPresence(url, namespace=namespace)
    )
    try:
        yield registry
    finally:
        await registry.close()
        if kind == "redis":
            await drop_namespace(url, namespace)


# --- both backends -----------------------------------------------------------------


async def test_join_is_true_for_the_first_device_and_leave_for_the_last(
    presence: Presence,
) -> None:
    assert await presence.join("u1", "phone", LONG) is True
    assert await presence.join("u1", "laptop", LONG) is False
    assert await presence.join("u1", "phone", LONG) is False  # the same device again
    assert await presence.join("u2", "phone", LONG) is True  # users are independent
    assert await presence.leave("u1", "phone") is False
    assert await presence.leave("u1", "laptop") is True
    assert await presence.leave("u1", "laptop") is True  # still nobody there
    assert await presence.online(["u1", "u2"]) == {"u2"}
    assert await presence.join("u1", "phone", LONG) is True  # back online


async def test_leave_of_an_unknown_device_keeps_the_others(presence: Presence) -> None:
    await presence.join("u1", "phone", LONG)
    assert await presence.leave("u1", "never-joined") is False
    assert await presence.leave("nobody", "phone") is True
    assert await presence.online(["u1", "nobody"]) == {"u1"}


async def test_online_answers_for_many_users_at_once(presence: Presence) -> None:
    for user in ("a", "b", "c"):
        await presence.join(user, f"{user}-device", LONG)
    await presence.join("b", "second", LONG)
    await presence.leave("c", "c-device")
    asked = ["a", "b", "c", "missing", "a", "user:with:colons"]
    assert await presence.online(asked) == {"a", "b"}
    assert await presence.online(iter(["b"])) == {"b"}  # any iterable, read once
    assert await presence.online([]) == set()


async def test_online_over_many_calls_keeps_the_order(
    presence: Presence, monkeypatch: pytest.MonkeyPatch
) -> None:
    """RedisPresence asks for at most ONLINE_KEYS_PER_CALL users per script call."""
    monkeypatch.setattr("agora.adapters.presence_redis.ONLINE_KEYS_PER_CALL", 2)
    users = [f"u{i}" for i in range(7)]
    for user in users[::3]:
        await presence.join(user, "device", LONG)
    assert await presence.online(users) == {"u0", "u3", "u6"}


async def test_a_device_not_refreshed_expires(presence: Presence) -> None:
    assert await presence.join("u1", "phone", SHORT) is True
    assert await presence.online(["u1"]) == {"u1"}
    await asyncio.sleep(WAIT)
    assert await presence.online(["u1"]) == set()
    assert await presence.join("u1", "laptop", LONG) is True  # the expired one does not count
    assert await presence.leave("u1", "laptop") is True


async def test_refresh_keeps_devices_alive(presence: Presence) -> None:
    await presence.join("u1", "phone", SHORT)
    await presence.join("u2", "phone", SHORT)
    await presence.join("u2", "tablet", SHORT)
    started = time.monotonic()
    while time.monotonic() - started < 2 * WAIT:  # well past the first expiry
        await asyncio.sleep(SHORT / 3)
        await presence.refresh([("u1", "phone"), ("u2", "phone"), ("u2", "tablet")], SHORT)
        assert await presence.online(["u1", "u2"]) == {"u1", "u2"}
    await presence.refresh([("u2", "tablet")], LONG)
    await presence.refresh([], LONG)  # nothing to do is not an error
    await asyncio.sleep(WAIT)
    assert await presence.online(["u1", "u2"]) == {"u2"}
    assert await presence.leave("u2", "tablet") is True


async def test_refresh_brings_back_an_entry_that_was_lost(presence: Presence) -> None:
    # What a refresh after a Redis restart (or a left-then-late refresh) must do: the
    # socket is still open, so the device is live again.
    await presence.join("u1", "phone", SHORT)
    await asyncio.sleep(WAIT)
    await presence.refresh([("u1", "phone"), ("u9", "never-joined")], LONG)
    assert await presence.online(["u1", "u9"]) == {"u1", "u9"}
    assert await presence.join("u1", "laptop", LONG) is False


async def test_a_short_lived_device_does_not_cut_a_long_lived_one(presence: Presence) -> None:
    await presence.join("u1", "desktop", LONG)
    await presence.join("u1", "phone", SHORT)  # joins later, with a shorter TTL
    await presence.refresh([("u1", "phone")], SHORT)
    await asyncio.sleep(WAIT)
    assert await presence.online(["u1"]) == {"u1"}
    assert await presence.leave("u1", "desktop") is True  # the phone had expired


async def test_concurrent_joins_and_leaves_announce_exactly_once(presence: Presence) -> None:
    devices = [f"device-{i}" for i in range(30)]
    joined = await asyncio.gather(*(presence.join("u1", d, LONG) for d in devices))
    assert joined.count(True) == 1
    left = await asyncio.gather(*(presence.leave("u1", d) for d in devices))
    assert left.count(True) == 1
    assert await presence.online(["u1"]) == set()


# --- Redis: shared between instances, keys, namespaces --------------------------------


@pytest.mark.redis
async def test_another_instance_sees_the_same_users(redis_url: str, redis_namespace: str) -> None:
    one = RedisPresence(redis_url, namespace=redis_namespace)
    two = RedisPresence(redis_url, namespace=redis_namespace)
    try:
        assert await one.join("u1", "phone", LONG) is True
        assert await two.join("u1", "laptop", LONG) is False  # already online via one
        assert await two.online(["u1", "u2"]) == {"u1"}
        await two.refresh([("u2", "tablet")], LONG)
        assert await one.online(["u1", "u2"]) == {"u1", "u2"}
        assert await one.leave("u1", "phone") is False  # the laptop is on the other one
        assert await two.leave("u1", "laptop") is True
        assert await one.online(["u1"]) == set()
        await one.close()  # an instance going away leaves its entries to their TTL
        assert await two.online(["u2"]) == {"u2"}
    finally:
        await one.close()
        await two.close()
        await drop_namespace(redis_url, redis_namespace)


@pytest.mark.redis
async def test_namespaces_do_not_see_each_other(redis_url: str, redis_namespace: str) -> None:
    one = RedisPresence(redis_url, namespace=f"{redis_namespace}one:")
    two = RedisPresence(redis_url, namespace=f"{redis_namespace}two:")
    try:
        assert await one.join("u1", "phone", LONG) is True
        assert await two.online(["u1"]) == set()
        assert await two.join("u1", "phone", LONG) is True
        assert await two.leave("u1", "phone") is True
        assert await one.online(["u1"]) == {"u1"}
    finally:
        await one.close()
        await two.close()
        await drop_namespace(redis_url, redis_namespace)


@pytest.mark.redis
async def test_one_sorted_set_per_user_scored_by_expiry_on_redis_time(
    redis_url: str, redis_namespace: str
) -> None:
    raw = aioredis.Redis.from_url(redis_url)
    presence = RedisPresence(redis_url, namespace=redis_namespace)
    key = f"{redis_namespace}presence:42"
    try:
        await presence.join("42", "phone", 30)
        await presence.join("42", "laptop", SHORT)
        seconds, micros = await raw.time()
        now = seconds + micros / 1_000_000
        phone = await raw.zscore(key, "phone")
        assert phone is not None and 29 < phone - now <= 30
        # The key lives as long as its last member, not as the last join asked.
        assert 29_000 < await raw.pttl(key) <= 30_000

        # Dead devices are pruned by the next join: an always-online user whose phone
        # reconnects under new ids does not grow a set without end.
        await asyncio.sleep(WAIT)
        await presence.join("42", "tablet", SHORT)
        assert sorted(await raw.zrange(key, 0, -1)) == [b"phone", b"tablet"]

        await presence.leave("42", "phone")
        await presence.refresh([("42", "laptop")], SHORT)
        assert 0 < await raw.pttl(key) <= SHORT * 1000 + 1
        await asyncio.sleep(WAIT)
        assert await raw.exists(key) == 0  # a dead user leaves no key behind
    finally:
        await presence.close()
        await drop_namespace(redis_url, redis_namespace)
        await raw.aclose()


async def test_unreachable_redis_is_presence_unavailable_at_once() -> None:
    presence = RedisPresence("redis://127.0.0.1:1")
    calls = [
        lambda: presence.join("u1", "phone", LONG),
        lambda: presence.leave("u1", "phone"),
        lambda: presence.refresh([("u1", "phone")], LONG),
        lambda: presence.online(["u1"]),
    ]
    try:
        for call in calls:
            started = time.monotonic()
            with pytest.raises(PresenceUnavailable):
                await call()
            assert time.monotonic() - started < 1.0
    finally:
        await presence.close()


async def test_settings_choose_the_backend(settings: Settings) -> None:
    assert isinstance(build_presence(settings), MemoryPresence)
    shared = settings.model_copy(
        update={"redis_url": "redis://127.0.0.1:1/0", "redis_namespace": "deploy:"}
    )
    presence = build_presence(shared)
    try:
        assert isinstance(presence, RedisPresence)
        assert presence._key("42") == "deploy:presence:42"
    finally:
        await presence.close()
