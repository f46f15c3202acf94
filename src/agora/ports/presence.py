"""Presence port: which users have at least one live device, across instances.

A device is online while its entry is refreshed; entries carry a TTL (under 30 s), so
the devices of a crashed instance go offline by themselves within a minute. Online
means "at least one live device": join/leave are per user, computed by the callers
from the booleans these methods return.

Backends: `adapters.memory_presence.MemoryPresence` and
`adapters.redis_presence.RedisPresence` (one sorted set per user: member = device id,
score = expiry time on Redis's clock; each call one small Lua script, so atomic).

Every method of a shared backend may raise `PresenceUnavailable`; the embedded one never
does.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol


class PresenceUnavailable(Exception):
    """The backend could not be reached in time (a change may or may not be made)."""


class Presence(Protocol):
    async def join(self, user_id: str, device_id: str, ttl: float) -> bool:
        """Mark the device live; True if the user had no live device before."""

    async def leave(self, user_id: str, device_id: str) -> bool:
        """Remove the device; True if the user has no live device left."""

    async def refresh(self, devices: Iterable[tuple[str, str]], ttl: float) -> None:
        """Push back the expiry of these (user_id, device_id) entries."""

    async def online(self, user_ids: Iterable[str]) -> set[str]:
        """The users among `user_ids` with at least one live device."""

    async def close(self) -> None: ...
