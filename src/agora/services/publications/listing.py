"""`GET /api/publications` once the token passed: the active-user check and the page.

The first page (no cursor) is read with ONE cache round trip for both the check and
the answer: `user:<id>` (its TTL pushed back, as every request does), the user's page
version and the cached page (see `page_cache`). On a hit the stored JSON is the answer:
no database, no serialization. On a miss, the page comes from the database and is
stored for the next read. A later page (with a cursor), a service without the page
cache, or a cache that just failed takes the plain way: check, then query.
"""

from __future__ import annotations

from typing import Any

import orjson

from agora.services.publications.page_cache import DOWN, PublicationPageCache
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

    async def page(self, user_id: str, cursor: str | None, limit: int) -> bytes | None:
        """The JSON page, or None when the user is not active (the caller answers 403)."""
        pages = self.pages
        if cursor is None and pages is not None and self.status.cache.usable:
            status_key = user_key(user_id)
            keys = (status_key, *pages.keys(user_id, limit))
            try:
                raw_status, version, entry = await pages.cache.get_many_and_touch(
                    keys, {status_key: self.status.cache.ttl}
                )
            except DOWN as error:
                self.status.cache.failed("get", error)
            else:
                cached_user = self.status.cache.parse(raw_status)
                if not await self.status.check_active_given(user_id, cached_user):
                    return None
                found = pages.found(version, entry)
                if found.body is not None:
                    return found.body
                body = encode(await self.publications.page(user_id, None, limit))
                await pages.store(user_id, limit, found.version, body)
                return body
        if not await self.status.check_active(user_id):
            return None
        return encode(await self.publications.page(user_id, cursor, limit))
