"""`user:<id>` in the cache, exactly as docs/contracts.md fixes it, and what to do when it is down.

The cache only accelerates the "is this user active" check; the `pub_users` table is
the source of truth. So every call here survives an unreachable cache: reads answer
"unknown" (the caller asks the database) and writes are skipped, with a warning at
most every `WARN_EVERY` seconds instead of one per request. After a failure, reads and
sets skip the cache for `SKIP_AFTER_FAILURE` seconds, so a cache that times out (rather
than refusing at once) does not add its timeout to every request; deletes are always
tried, since a key left behind is the one thing that can be wrong.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import orjson

from agora.ports.cache import Cache, CacheUnavailable
from agora.services.publications.models import CONNECTED

log = logging.getLogger("agora.publications.cache")

# What "the cache is down" looks like: the port's error, and raw network errors from a
# backend that lets one through.
DOWN = (CacheUnavailable, OSError, TimeoutError)
WARN_EVERY = 10.0
SKIP_AFTER_FAILURE = 2.0
DELETE_CHUNK = 500


def user_key(user_id: str) -> str:
    return f"user:{user_id}"


# (user_id, name, email, last_activity_at): what `user:<id>` says of a connected user.
ConnectedUser = tuple[str, str, str, datetime | None]


@dataclass(frozen=True, slots=True)
class CachedUser:
    """A connected user as the cache holds them; `last_activity_at` None if unreadable."""

    last_activity_at: datetime | None


class UserStatusCache:
    def __init__(self, cache: Cache, ttl: float) -> None:
        self.cache = cache
        self.ttl = ttl
        self._warned_at = -WARN_EVERY
        self._skip_until = 0.0

    def _skipping(self) -> bool:
        return time.monotonic() < self._skip_until

    def _down(self, operation: str, error: BaseException) -> None:
        now = time.monotonic()
        self._skip_until = now + SKIP_AFTER_FAILURE
        if now - self._warned_at >= WARN_EVERY:
            self._warned_at = now
            log.warning("cache unavailable (%s): %r; using the database", operation, error)

    async def get_connected(self, user_id: str) -> CachedUser | None:
        """The cached entry if it says connected; None on a miss, junk, or a cache down.

        Reading it is activity: the entry's TTL is pushed back in the same round trip.
        """
        if self._skipping():
            return None
        try:
            raw = await self.cache.get_and_touch(user_key(user_id), self.ttl)
        except DOWN as error:
            self._down("get", error)
            return None
        return self.parse(raw)

    @property
    def usable(self) -> bool:
        """False for a while after the cache failed (reads go to the database)."""
        return not self._skipping()

    def failed(self, operation: str, error: BaseException) -> None:
        """A read made elsewhere (in one round trip with other keys) failed."""
        self._down(operation, error)

    @staticmethod
    def parse(raw: bytes | None) -> CachedUser | None:
        """What `get_connected` answers for the raw `user:<id>` value."""
        if raw is None:
            return None
        try:
            value = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return None
        if not isinstance(value, dict) or value.get("status") != CONNECTED:
            return None
        return CachedUser(_parse_time(value.get("last_activity_at")))

    async def put_connected_many(self, users: Sequence[ConnectedUser]) -> bool:
        """Store `user:<id>` for each (user_id, name, email, last_activity_at): one round
        trip for the lot. False if the cache was skipped or could not be reached."""
        if self._skipping():
            return False
        items = {
            user_key(user_id): orjson.dumps(
                {
                    "status": CONNECTED,
                    "name": name,
                    "email": email,
                    "last_activity_at": last_activity_at.isoformat() if last_activity_at else None,
                }
            )
            for user_id, name, email, last_activity_at in users
        }
        try:
            await self.cache.set_many(items, self.ttl)
        except DOWN as error:
            self._down("set", error)
            return False
        return True

    async def refresh(self, user_id: str) -> None:
        """Push the entry's expiry back by the full TTL (a no-op if it is gone)."""
        if self._skipping():
            return
        try:
            await self.cache.expire(user_key(user_id), self.ttl)
        except DOWN as error:
            self._down("expire", error)

    async def drop(self, *user_ids: str) -> bool:
        """Delete the entries; False if the cache could not be reached."""
        keys = [user_key(user_id) for user_id in user_ids]
        try:
            for start in range(0, len(keys), DELETE_CHUNK):
                await self.cache.delete(*keys[start : start + DELETE_CHUNK])
        except DOWN as error:
            self._down("delete", error)
            return False
        return True


def _parse_time(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None
