"""The Presence port under a scope: the same store, a separate set of ids.

Services that keep presence in one store (the embedded app shares one
`Backends.presence`) must not count each other's devices: a user with a social socket
is not "online in messaging". `ScopedPresence(presence, "messaging:")` puts the scope in
front of every id on the way in and takes it off the ids `online` answers, so the store,
its expiry and its atomic join/leave stay the port's while the ids are the service's.
The same trick keys presence per room: `ScopedPresence(presence, "messaging:room:")`
with ids `conversation:7:42` (user 42 in conversation 7).
"""

from __future__ import annotations

from collections.abc import Iterable

from agora.ports.presence import Presence


class ScopedPresence:
    def __init__(self, presence: Presence, scope: str) -> None:
        if not scope:
            raise ValueError("a scope is needed")
        self.presence = presence
        self.scope = scope

    async def join(self, user_id: str, device_id: str, ttl: float) -> bool:
        return await self.presence.join(self.scope + user_id, device_id, ttl)

    async def leave(self, user_id: str, device_id: str) -> bool:
        return await self.presence.leave(self.scope + user_id, device_id)

    async def refresh(self, devices: Iterable[tuple[str, str]], ttl: float) -> None:
        await self.presence.refresh(
            [(self.scope + user_id, device_id) for user_id, device_id in devices], ttl
        )

    async def online(self, user_ids: Iterable[str]) -> set[str]:
        scoped = await self.presence.online(self.scope + user_id for user_id in user_ids)
        cut = len(self.scope)
        return {user_id[cut:] for user_id in scoped}

    async def close(self) -> None:
        """The store belongs to whoever built it (`Backends`), not to a view of it."""
