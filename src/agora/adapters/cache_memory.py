"""The embedded cache: a dict with per-key expiry, for one process.

Honest about being one node: nothing is shared between processes or kept across a
restart. Expired keys are dropped when touched and swept on writes, so memory stays
proportional to the live keys.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence

SWEEP_EVERY = 1024


class MemoryCache:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._items: dict[str, tuple[bytes, float | None]] = {}
        self._writes = 0

    def _live(self, key: str) -> tuple[bytes, float | None] | None:
        item = self._items.get(key)
        if item is not None and item[1] is not None and item[1] <= self._clock():
            del self._items[key]
            return None
        return item

    def _expiry(self, ttl: float | None) -> float | None:
        return None if ttl is None else self._clock() + ttl

    def _written(self) -> None:
        self._writes += 1
        if self._writes % SWEEP_EVERY == 0:
            now = self._clock()
            for key in [k for k, (_, exp) in self._items.items() if exp is not None and exp <= now]:
                del self._items[key]

    async def get(self, key: str) -> bytes | None:
        item = self._live(key)
        return item[0] if item else None

    async def set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        self._items[key] = (value, self._expiry(ttl))
        self._written()

    async def get_and_touch(self, key: str, ttl: float) -> bytes | None:
        item = self._live(key)
        if item is None:
            return None
        self._items[key] = (item[0], self._expiry(ttl))
        return item[0]

    async def get_many(self, *keys: str) -> list[bytes | None]:
        return [item[0] if (item := self._live(key)) else None for key in keys]

    async def get_many_and_touch(
        self, keys: Sequence[str], ttls: Mapping[str, float]
    ) -> list[bytes | None]:
        values: list[bytes | None] = []
        for key in keys:
            ttl = ttls.get(key)
            values.append(await (self.get(key) if ttl is None else self.get_and_touch(key, ttl)))
        return values

    async def set_many(self, items: Mapping[str, bytes], ttl: float | None = None) -> None:
        for key, value in items.items():
            await self.set(key, value, ttl)

    async def set_if_absent(self, key: str, value: bytes, ttl: float) -> bool:
        if self._live(key) is not None:
            return False
        await self.set(key, value, ttl)
        return True

    async def delete(self, *keys: str) -> int:
        return sum(1 for key in keys if self._live(key) and self._items.pop(key, None))

    async def expire(self, key: str, ttl: float) -> bool:
        item = self._live(key)
        if item is None:
            return False
        self._items[key] = (item[0], self._expiry(ttl))
        return True

    async def ttl(self, key: str) -> float | None:
        item = self._live(key)
        if item is None or item[1] is None:
            return None
        return item[1] - self._clock()

    async def incr(self, key: str, ttl: float) -> int:
        item = self._live(key)
        value = int(item[0]) + 1 if item else 1
        expiry = item[1] if item else self._expiry(ttl)
        self._items[key] = (str(value).encode(), expiry)
        self._written()
        return value

    async def ping(self) -> None:
        return None  # in this process: always there

    async def close(self) -> None:
        self._items.clear()
