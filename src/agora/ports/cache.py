"""Cache port: a key-value store with per-key TTLs.

Backends: `adapters.memory_cache.MemoryCache` (embedded, one process) and
`adapters.redis_cache.RedisCache`. Keys are given whole by the caller (`user:<id>` is
docs/contracts.md's exact key); a backend may add a deployment-wide namespace in front of
every key (`AGORA_REDIS_NAMESPACE`), invisible to callers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol


class CacheUnavailable(Exception):
    """The backend could not be reached; callers fall back to the database."""


class Cache(Protocol):
    async def get(self, key: str) -> bytes | None: ...

    async def set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        """Store `value`; `ttl` in seconds, None for no expiry."""

    async def get_and_touch(self, key: str, ttl: float) -> bytes | None:
        """Read a key and, if it exists, reset its TTL, in one step (Redis GETEX)."""

    async def get_many(self, *keys: str) -> list[bytes | None]:
        """The values of `keys`, in order, read at one instant (Redis MGET)."""

    async def get_many_and_touch(
        self, keys: Sequence[str], ttls: Mapping[str, float]
    ) -> list[bytes | None]:
        """The values of `keys`, in order, in one round trip; each key also in `ttls`
        that exists gets its TTL reset to that many seconds, as `get_and_touch` does.
        The keys not in `ttls` are read at one instant, as `get_many` reads them. A hot
        route reads everything it needs at once (the publications page read)."""

    async def set_many(self, items: Mapping[str, bytes], ttl: float | None = None) -> None:
        """Store several keys with one TTL, in one round trip where the backend can.

        Not atomic: after a failure some of the keys may be stored.
        """

    async def set_if_absent(self, key: str, value: bytes, ttl: float) -> bool:
        """Atomically store only if `key` does not exist; True if stored."""

    async def delete(self, *keys: str) -> int:
        """Remove keys; returns how many existed."""

    async def expire(self, key: str, ttl: float) -> bool:
        """Reset the TTL of an existing key; False if it does not exist."""

    async def ttl(self, key: str) -> float | None:
        """Seconds left; None if the key is missing or never expires."""

    async def incr(self, key: str, ttl: float) -> int:
        """Add one; the TTL is set when the key is created. Returns the new value."""

    async def ping(self) -> None:
        """One round trip to the backend (readiness); raises `CacheUnavailable` if it
        cannot be reached. The embedded cache always answers."""

    async def close(self) -> None: ...
