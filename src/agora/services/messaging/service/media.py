"""Uploads: files a message can refer to, checked by type and size while they stream.

Part of `MessagingService` (service.py, see core.py). An upload is counted (rate limit),
its declared content type must be allowed and match the file's first bytes (415), and
the MediaStore stops it past `media_max_bytes` (413) leaving nothing behind. Only then
is it recorded. A file is readable by its owner and by the members of a conversation
with a message referring to it; to anyone else it does not exist (404).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator

from agora.core.errors import Invalid, NotFound, UnsupportedMediaType
from agora.db.engine import utcnow
from agora.services.messaging import validation
from agora.services.messaging.content import clean_name
from agora.services.messaging.domain import Actor, MediaRef
from agora.services.messaging.media_types import SNIFF_BYTES, matches, normalize
from agora.services.messaging.repository import MessagingRepository
from agora.services.messaging.service.base import ServiceCore

log = logging.getLogger("agora.messaging")

MAX_FILENAME_CHARS = 255


class MediaUploads(ServiceCore):
    async def upload_media(
        self, actor: Actor, content_type: str, filename: str, chunks: AsyncIterator[bytes]
    ) -> MediaRef:
        await self.limits.check_media(actor)
        declared = normalize(content_type)
        if declared not in self.settings.media_allowed_types:
            raise UnsupportedMediaType(f"Content type not allowed: {declared or 'none'}")
        checked = await _checked_stream(declared, chunks)
        media_id = uuid.uuid4().hex
        size = await self.media.save(media_id, checked, self.settings.media_max_bytes)
        upload = MediaRef(
            id=media_id,
            owner_id=actor.user_id,
            content_type=declared,
            size=size,
            filename=_filename(filename),
            created_at=utcnow(),
        )
        try:
            async with self.db.transaction() as session:
                await MessagingRepository(session).add_media(upload)
        except BaseException:
            await self.media.delete(media_id)  # not recorded: nothing may refer to it
            raise
        return upload

    async def open_media(
        self, actor: Actor, media_id: str
    ) -> tuple[MediaRef, AsyncIterator[bytes]]:
        if not validation.is_entity_id(media_id):
            raise NotFound(validation.MEDIA_NOT_FOUND)
        async with self.db.sessions() as session:
            repository = MessagingRepository(session)
            upload = await repository.media(media_id)
            visible = upload is not None and (
                upload.owner_id == actor.user_id
                or await repository.media_shared_with(media_id, actor.user_id)
            )
        if upload is None or not visible:
            raise NotFound(validation.MEDIA_NOT_FOUND)
        return upload, await self.media.open(media_id)

    async def _own_media(self, actor: Actor, media_id: object) -> MediaRef:
        """An upload of the actor's, to send in a message (another's is unknown: 422)."""
        if validation.is_entity_id(media_id):
            assert isinstance(media_id, str)
            async with self.db.single_read() as connection:
                upload = await MessagingRepository(connection).media(media_id)
            if upload is not None and upload.owner_id == actor.user_id:
                return upload
        raise Invalid("media_id", "Unknown media: upload the file first")


async def _checked_stream(content_type: str, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """The same bytes as `chunks`, once the first ones were found to match the type:
    the check happens before anything is stored."""
    iterator = aiter(chunks)
    held: list[bytes] = []
    head = b""
    while len(head) < SNIFF_BYTES:
        chunk = await anext(iterator, None)
        if chunk is None:
            break
        held.append(chunk)
        head += chunk[: SNIFF_BYTES - len(head)]
    if not head:
        raise Invalid("file", "The file is empty")
    if not matches(content_type, head):
        raise UnsupportedMediaType(f"The file's content is not {content_type}")

    async def replay() -> AsyncIterator[bytes]:
        for chunk in held:
            yield chunk
        async for chunk in iterator:
            yield chunk

    return replay()


def _filename(raw: object) -> str:
    """The last path component, as safe text (like messages), never empty."""
    name = raw.replace("\\", "/").rsplit("/", 1)[-1] if isinstance(raw, str) else ""
    return clean_name(name[-MAX_FILENAME_CHARS:]) or "upload"
