"""Publications: each user's own posts, stored already safe against XSS.

Markup is cleaned on the way in by the one text policy (`agora.core.text`: nh3, a
binding of the Rust `ammonia` sanitizer), so whatever reads the table later (this API,
a template, an export) gets safe HTML: a title is safe text (`&`, `<`, `>` and quotes
escaped); a body keeps only `BODY_TAGS`, links only to absolute http(s)/mailto targets
with `rel="noopener noreferrer"`. Scripts, styles, event handler attributes and
`javascript:` URLs never survive; control characters are a 422.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm.exc import StaleDataError

from agora.core.errors import AgoraError, NotFound
from agora.core.text import safe_html, safe_text
from agora.db.engine import Database, utcnow
from agora.services.publications.models import Publication
from agora.services.publications.page_cache import PublicationPageCache
from agora.services.publications.repository import PublicationPages, PublicationRepository
from agora.services.publications.schemas import (
    PublicationCreate,
    PublicationUpdate,
    decode_cursor,
    encode_cursor,
    item,
    parse_id,
)

NOT_FOUND = "Not found"


class InvalidInput(AgoraError):
    """A value no field rule catches: a cursor not one of ours, a title only markup."""

    status_code = 422


def clean_title(title: str) -> str:
    cleaned = safe_text("title", title)
    if not cleaned:
        raise InvalidInput("title is empty once markup is removed")
    return cleaned


def clean_body(body: str) -> str:
    return safe_html("body", body)


class PublicationService:
    """`pages`: the first-page cache, told after each committed write (see `page_cache`)."""

    def __init__(self, db: Database, pages: PublicationPageCache | None = None) -> None:
        self.db = db
        self.pages = pages

    async def _changed(self, user_id: str) -> None:
        if self.pages is not None:
            await self.pages.invalidate(user_id)

    async def page(self, user_id: str, cursor: str | None, limit: int) -> dict[str, Any]:
        """The user's publications, newest first, `limit` per page."""
        before_id = None
        if cursor is not None:
            before_id = decode_cursor(cursor)
            if before_id is None:
                raise InvalidInput("Invalid cursor")
        async with self.db.single_read() as connection:
            # One row more than asked says whether a next page exists.
            rows = await PublicationPages(connection).page(user_id, before_id, limit + 1)
        shown = rows[:limit]
        next_cursor = encode_cursor(shown[-1].id) if len(rows) > limit else None
        return {"publications": [item(row) for row in shown], "next_cursor": next_cursor}

    async def create(self, user_id: str, data: PublicationCreate) -> dict[str, Any]:
        now = utcnow()
        publication = Publication(
            user_id=user_id,
            title=clean_title(data.title),
            body=clean_body(data.body),
            created_at=now,
            updated_at=now,
        )
        async with self.db.transaction() as session:
            await PublicationRepository(session).add(publication)
        await self._changed(user_id)
        return item(publication)

    async def get(self, user_id: str, raw_id: str) -> dict[str, Any]:
        async with self.db.sessions() as session:
            publication = await self._owned(PublicationRepository(session), user_id, raw_id)
            return item(publication)

    async def update(self, user_id: str, raw_id: str, data: PublicationUpdate) -> dict[str, Any]:
        title = clean_title(data.title) if data.title is not None else None
        body = clean_body(data.body) if data.body is not None else None
        # Read-modify-write racing a DELETE (issue 15 §4): the row is locked as it is read,
        # so the DELETE waits or has won (404); where there are no row locks (SQLite), an
        # update that finds its row gone at commit is the same 404, never a 500.
        try:
            async with self.db.transaction() as session:
                repository = PublicationRepository(session)
                publication = await self._owned(repository, user_id, raw_id, for_update=True)
                if title is not None:
                    publication.title = title
                if body is not None:
                    publication.body = body
                publication.updated_at = utcnow()
        except StaleDataError:
            raise NotFound(NOT_FOUND) from None
        await self._changed(user_id)
        return item(publication)

    async def delete(self, user_id: str, raw_id: str) -> None:
        publication_id = parse_id(raw_id)
        if publication_id is None:
            raise NotFound(NOT_FOUND)
        async with self.db.transaction() as session:
            if not await PublicationRepository(session).delete_owned(publication_id, user_id):
                raise NotFound(NOT_FOUND)
        await self._changed(user_id)

    @staticmethod
    async def _owned(
        repository: PublicationRepository, user_id: str, raw_id: str, *, for_update: bool = False
    ) -> Publication:
        """The caller's publication; another user's answers exactly like a missing one."""
        publication_id = parse_id(raw_id)
        publication = (
            await repository.get_owned(publication_id, user_id, for_update=for_update)
            if publication_id is not None
            else None
        )
        if publication is None:
            raise NotFound(NOT_FOUND)
        return publication
