"""Every Redis adapter of a process shares one circuit breaker (issue 15 §2): against a
hung Redis, the first call fails within one call budget, every other call of any
adapter fails at once, and a probe brings them all back once Redis answers."""

from __future__ import annotations

import asyncio
import time

import pytest

from agora.adapters.cache_redis import RedisCache
from agora.adapters.presence_redis import RedisPresence
from agora.adapters.pubsub_redis import RedisPubSub
from agora.adapters.redis_breaker import RETRY_AFTER
from agora.adapters.redis_client import CALL_BUDGET
from agora.ports.cache import CacheUnavailable
from agora.ports.presence import PresenceUnavailable
from agora.ports.pubsub import PubSubUnavailable
from tests.contract.redis_proxy import stalling_to, tcp_server
from tests.support.services import drop_namespace

pytestmark = pytest.mark.redis

FAST = 0.05  # seconds: failing fast is not asking Redis at all


async def test_a_hung_redis_costs_one_budget_then_every_adapter_fails_fast(
    redis_url: str, redis_namespace: str
) -> None:
    flowing = asyncio.Event()
    flowing.set()
    async with tcp_server(stalling_to(redis_url, flowing)) as port:
        url = f"redis://127.0.0.1:{port}/0"
        cache = RedisCache(url, namespace=redis_namespace)
        presence = RedisPresence(url, namespace=redis_namespace)
        pubsub = RedisPubSub(url, namespace=redis_namespace)
        try:
            await cache.set("k", b"v", ttl=60)
            flowing.clear()  # Redis hangs
            started = time.monotonic()
            with pytest.raises(CacheUnavailable):
                await cache.get("k")
            assert time.monotonic() - started <= CALL_BUDGET + 0.5
            for call, error in (
                (lambda: cache.get("k"), CacheUnavailable),
                (lambda: cache.incr("n", 60), CacheUnavailable),
                (lambda: presence.online(["u"]), PresenceUnavailable),
                (lambda: pubsub.publish("c", b"m"), PubSubUnavailable),
            ):
                started = time.monotonic()
                with pytest.raises(error):
                    await call()
                assert time.monotonic() - started < FAST, call
            flowing.set()  # Redis answers again: a probe within RETRY_AFTER closes it
            deadline = time.monotonic() + RETRY_AFTER + CALL_BUDGET + 1
            while True:
                try:
                    assert await cache.get("k") == b"v"
                    break
                except CacheUnavailable:
                    assert time.monotonic() < deadline, "never came back"
                    await asyncio.sleep(0.05)
            assert await presence.online(["u"]) == set()
            await pubsub.publish("c", b"m")
        finally:
            flowing.set()
            await cache.close()
            await presence.close()
            await pubsub.close()
            await drop_namespace(redis_url, redis_namespace)
