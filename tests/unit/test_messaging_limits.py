"""Messaging's per-hour limits count messages on the Counters port they are given (the
backends' own: batched on Redis, ports/counters.py), the user first, then the address;
uploads stay on the cache."""

from __future__ import annotations

from pathlib import Path

import pytest

from agora.adapters.cache_memory import MemoryCache
from agora.adapters.counters_cache import CacheCounters
from agora.core.audit import Audit
from agora.core.errors import TooManyRequests
from agora.services.messaging.domain import Actor
from agora.services.messaging.rate_limits import MessagingLimits
from tests.support.settings import make_settings


class RecordingCounters(CacheCounters):
    def __init__(self, cache: MemoryCache) -> None:
        super().__init__(cache)
        self.keys: list[str] = []

    async def incr(self, key: str, ttl: float, limit: int) -> int:
        self.keys.append(key)
        return await super().incr(key, ttl, limit)


async def test_messages_count_on_the_given_counters(tmp_path: Path) -> None:
    cache = MemoryCache()
    counters = RecordingCounters(cache)
    settings = make_settings(tmp_path, messaging_messages_per_hour=2, messaging_media_per_hour=5)
    limits = MessagingLimits(cache, settings, Audit("test"), counters)
    actor = Actor("u1", ip="203.0.113.9")
    await limits.check_message(actor)
    await limits.check_message(actor)
    with pytest.raises(TooManyRequests):
        await limits.check_message(actor)
    assert [key.rsplit(":", 2)[-2:] for key in counters.keys] == [
        ["count", "u1"],
        ["count", "203.0.113.9"],
        ["count", "u1"],
        ["count", "203.0.113.9"],
        ["count", "u1"],  # over: the address is not counted
    ]
    assert all("messaging-messages-" in key for key in counters.keys)
    await limits.check_media(actor)  # uploads: on the cache, not these counters
    assert len(counters.keys) == 5
