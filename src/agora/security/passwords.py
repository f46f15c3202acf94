"""argon2id password hashing, off the event loop, with a bounded number at once.

Each hash costs ~0.4 s of CPU and 64 MiB (the default cost): unbounded, 24 parallel
registrations took a normal login from 0.28 s to 11.3 s. So hashes run in lanes, each
with its own threads and a short queue: `login` (checking a password, and the rehash
after a login) and `register` (hashing a new password). A flood of registrations fills
its own lane and never takes a login's thread; a full lane answers at once with
`Overloaded` (503 + Retry-After) instead of letting requests pile up for a minute.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Literal, TypeVar

from argon2 import PasswordHasher as _Argon2
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from agora.core.errors import Overloaded

Lane = Literal["login", "register"]
T = TypeVar("T")

BUSY = "Too many password checks at once, try again shortly"


class HashLane:
    """`workers` threads and at most `queue` calls waiting for one; more fail at once."""

    def __init__(self, name: str, workers: int, queue: int) -> None:
        self.name = name
        self.workers = workers
        self.capacity = workers + queue
        self.in_flight = 0  # running and waiting; only the event loop's thread touches it
        # A running mean of one call's duration, for Retry-After.
        self.mean_seconds = 0.5
        self._executor = ThreadPoolExecutor(workers, thread_name_prefix=f"argon2-{name}")

    def retry_after(self) -> int:
        """Seconds until the calls ahead are likely done (at least 1)."""
        return max(1, math.ceil(self.mean_seconds * self.in_flight / self.workers))

    async def run(self, call: Callable[..., T], *args: object) -> T:
        if self.in_flight >= self.capacity:
            raise Overloaded(BUSY, self.retry_after(), lane=self.name)
        self.in_flight += 1
        try:
            loop = asyncio.get_running_loop()
            started = time.perf_counter()
            result = await loop.run_in_executor(self._executor, call, *args)
            elapsed = time.perf_counter() - started
            self.mean_seconds += (elapsed - self.mean_seconds) * 0.2
            return result
        finally:
            self.in_flight -= 1

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


class PasswordHasher:
    def __init__(
        self,
        time_cost: int = 3,
        memory_cost: int = 65536,
        parallelism: int = 4,
        *,
        lanes: dict[Lane, tuple[int, int]] | None = None,
    ) -> None:
        """`lanes`: (workers, queue) of each lane; by default 2 and 32 for logins, 1 and
        4 for registrations (the settings' defaults)."""
        self._argon2 = _Argon2(
            time_cost=time_cost, memory_cost=memory_cost, parallelism=parallelism
        )
        sizes = {"login": (2, 32), "register": (1, 4), **(lanes or {})}
        self.lanes: dict[Lane, HashLane] = {
            name: HashLane(name, workers, queue) for name, (workers, queue) in sizes.items()
        }
        # Verified against when the login is unknown, so that an unknown login
        # takes as long as a wrong password and reveals nothing.
        self._dummy_hash = self._argon2.hash("agora-timing-equaliser")

    async def hash(self, password: str, lane: Lane = "register") -> str:
        return await self.lanes[lane].run(self._argon2.hash, password)

    async def verify(self, stored_hash: str | None, password: str) -> bool:
        return await self.lanes["login"].run(self._verify, stored_hash, password)

    def _verify(self, stored_hash: str | None, password: str) -> bool:
        try:
            self._argon2.verify(stored_hash or self._dummy_hash, password)  # raises if not
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False
        return stored_hash is not None

    def needs_rehash(self, stored_hash: str) -> bool:
        return self._argon2.check_needs_rehash(stored_hash)

    def close(self) -> None:
        for lane in self.lanes.values():
            lane.close()
