"""Read-through cache of each user's first page of publications, kept right by a version.

`GET /api/publications` without a cursor is the hot read; its answer changes only when
its owner writes (create, update, delete), so it is cached as the serialized JSON,
per (user, limit), in the Cache port (Redis when deployed, the embedded cache alone).

A write visible to the very next read of its owner: every entry is tagged with the
user's version token, read in the same round trip as the entry, and a write sets a new
random token after its commit, before it answers. Whatever the interleaving, a page
read from the database before that commit was stored under the old token and no
longer matches; a read that starts after the write answered sees the new token, so it
misses and reads the committed rows. A random token (not a counter) cannot come back
after the version key has expired and been made again.

The cache is an accelerator: a read that cannot reach it answers from the database; a
write that cannot bump the token logs a warning, and an entry it leaves lives at most
`AGORA_PUBLICATION_PAGE_CACHE_TTL` seconds (the one window where a page may be stale).
Pages are tagged "" while no token exists; the token outlives any entry
(`VERSION_TTL` far above the largest page TTL), so such a page cannot outlive the
token a later write sets.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass

from agora.ports.cache import Cache, CacheUnavailable

log = logging.getLogger("agora.publications.pages")

DOWN = (CacheUnavailable, OSError, TimeoutError)
# A day: settings cap the page TTL at an hour, far below it (see the module rules).
VERSION_TTL = 86_400.0
MAX_PAGE_TTL = 3_600
NO_VERSION = b""
SEPARATOR = b"\n"  # never in a token (hex), so the first one ends the tag


def version_key(user_id: str) -> str:
    return f"pubs:version:{user_id}"


def page_key(user_id: str, limit: int) -> str:
    return f"pubs:page:{user_id}:{limit}"


@dataclass(frozen=True, slots=True)
class CachedPage:
    """What one read found: the user's current version, the page if it is current."""

    version: bytes
    body: bytes | None


class PublicationPageCache:
    def __init__(self, cache: Cache, ttl: float) -> None:
        if not 0 < ttl <= MAX_PAGE_TTL:
            raise ValueError(f"page TTL must be in (0, {MAX_PAGE_TTL}] seconds")
        self.cache = cache
        self.ttl = ttl

    @staticmethod
    def keys(user_id: str, limit: int) -> tuple[str, str]:
        """The keys a read fetches, in `found`'s order: version, then page."""
        return version_key(user_id), page_key(user_id, limit)

    @staticmethod
    def found(version: bytes | None, entry: bytes | None) -> CachedPage:
        """The page of `entry` if it was stored under the current `version`."""
        current = version or NO_VERSION
        if entry is not None:
            tag, separator, body = entry.partition(SEPARATOR)
            if separator and tag == current:
                return CachedPage(current, body)
        return CachedPage(current, None)

    async def store(self, user_id: str, limit: int, version: bytes, body: bytes) -> None:
        """Keep a page read from the database after `version` was read (else a race
        could tag old rows with a new version)."""
        try:
            await self.cache.set(page_key(user_id, limit), version + SEPARATOR + body, self.ttl)
        except DOWN as error:
            log.debug("page not cached: %r", error)

    async def invalidate(self, user_id: str) -> None:
        """After a committed write of `user_id`'s publications: every cached page of
        theirs stops matching."""
        token = secrets.token_hex(8).encode()
        try:
            await self.cache.set(version_key(user_id), token, VERSION_TTL)
        except DOWN as error:
            log.warning(
                "publications of user %s changed but their cached pages could not be "
                "invalidated (%r); they expire within %s s",
                user_id,
                error,
                self.ttl,
            )
