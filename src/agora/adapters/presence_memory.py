"""The embedded presence registry: live devices per user, with expiry, in one process."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable


class MemoryPresence:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._devices: dict[str, dict[str, float]] = {}  # user -> device -> expires at

    def _live(self, user_id: str) -> dict[str, float]:
        devices = self._devices.get(user_id, {})
        now = self._clock()
        for device in [d for d, expires in devices.items() if expires <= now]:
            del devices[device]
        if not devices:
            self._devices.pop(user_id, None)
        return devices

    async def join(self, user_id: str, device_id: str, ttl: float) -> bool:
        was_offline = not self._live(user_id)
        self._devices.setdefault(user_id, {})[device_id] = self._clock() + ttl
        return was_offline

    async def leave(self, user_id: str, device_id: str) -> bool:
        devices = self._live(user_id)
        devices.pop(device_id, None)
        if devices:
            return False
        self._devices.pop(user_id, None)
        return True

    async def refresh(self, devices: Iterable[tuple[str, str]], ttl: float) -> None:
        expires = self._clock() + ttl
        for user_id, device_id in devices:
            self._devices.setdefault(user_id, {})[device_id] = expires

    async def online(self, user_ids: Iterable[str]) -> set[str]:
        return {user_id for user_id in user_ids if self._live(user_id)}

    async def close(self) -> None:
        self._devices.clear()
