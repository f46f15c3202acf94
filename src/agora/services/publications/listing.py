"""`GET /api/publications` once the token passed: the active-user check and the page.

The first page (no cursor) is read with ONE cache round trip for the whole request:
the token's revocation keys, `user:<id>` (its TTL pushed back, as every request does),
the user's page version and the cached page (see `page_cache`), all read along with the
token check (`reads`, `TokenGuard.verify_reading`). On a hit the stored JSON is the
answer: no database, no serialization. On a miss, the page comes from the database and
is stored for the next read. A later page (with a cursor), a service without the page
cache, or a cache that just failed takes the plain way: check, then query.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import orjson

from agora.security.guard import Reads
from agora.security.tokens import Identity
from agora.services.publications.page_cache import PublicationPageCache
from agora.services.publications.service import PublicationService
from agora.services.publications.status.cache import user_key
from agora.services.publications.status.service import UserStatusService


def encode(content: Any) -> bytes:
    """The services' JSON: orjson, datetimes in UTC ending in "Z"."""
    return orjson.dumps(content, option=orjson.OPT_UTC_Z)


class PublicationListing:
    def __init__(
        self,
        publications: PublicationService,
        status: UserStatusService,
        pages: PublicationPageCache | None,
    ) -> None:
        self.publications = publications
        self.status = status
        self.pages = pages

    def reads(self, cursor: str | None, limit: int) -> Callable[[Identity], Reads] | None:
        """The cache keys to read along with the token check (`TokenGuard.verify_reading`)
        for this request, in the order `page` takes their values; None: the plain way."""
        pages = self.pages
        if cursor is not None or pages is None or not self.status.cache.usable:
            return None
        ttl = self.status.cache.ttl

        def keys(identity: Identity) -> Reads:
            status_key = user_key(identity.user_id)
            # `user:<id>` is touched: its TTL pushed back, as every accepted request does.
            return (status_key, *pages.keys(identity.user_id, limit)), {status_key: ttl}

        return keys

    async def page(
        self,
        identity: Identity,
        cursor: str | None,
        limit: int,
        values: Sequence[bytes | None] | None = None,
    ) -> bytes | None:
        """The JSON page, or None when the user is not active (the caller answers 403).
        `values`: what the keys of `reads` held, read along with the token check."""
        user_id, issued_at = identity.user_id, identity.claims.get("iat")
        pages = self.pages
        if values is None or pages is None or cursor is not None:
            if not await self.status.check_active(user_id, issued_at):
                return None
            return encode(await self.publications.page(user_id, cursor, limit))
        raw_status, version, entry = values
        cached = self.status.cache.parse(raw_status)
        if not await self.status.check_active_given(user_id, cached, issued_at):
            return None
        found = pages.found(version, entry)
        if found.body is not None:
            return found.body
        body = encode(await self.publications.page(user_id, None, limit))
        await pages.store(user_id, limit, found.version, body)
        return body
