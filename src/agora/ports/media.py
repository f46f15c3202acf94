"""Media port: where uploaded files (message attachments) are kept.

Backends: `adapters.disk_media.DiskMediaStore` (files under `settings.resolved_media_dir`,
the embedded default and fine for one host or a shared volume) and
`adapters.http_media.HttpMediaStore` (a media service of the deployment's own, at
`AGORA_MEDIA_URL`). `tests/contract/test_media_contract.py` is the contract every
backend passes.

Ids are chosen by the caller (the messaging service: `uuid4().hex`, 32 lowercase hex
digits); a backend refuses anything else, so an id can never name a path outside the
store. The store knows bytes only: content type, owner and file name live in the
database, next to the id.

The errors are domain errors too (413, 404), so an upload that is too large or a file
that is gone is never a 500 even where a caller does not translate them.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Protocol

from agora.core.errors import NotFound, PayloadTooLarge, ServiceUnavailable

MEDIA_ID = re.compile(r"[0-9a-f]{32}")


def valid_media_id(media_id: str) -> bool:
    """True for the ids stores accept: `uuid4().hex` (32 lowercase hex digits)."""
    return MEDIA_ID.fullmatch(media_id) is not None


class MediaTooLarge(PayloadTooLarge):
    """The file went past `max_bytes` while it was being saved; nothing was kept."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(f"File larger than {max_bytes} bytes")
        self.max_bytes = max_bytes


class MediaMissing(NotFound):
    """No file with that id (never saved, deleted, or not a valid id)."""

    def __init__(self) -> None:
        super().__init__("Media not found")


class MediaUnavailable(ServiceUnavailable):
    """A store behind the network could not be reached (or failed); nothing was kept."""


class MediaStore(Protocol):
    async def save(self, media_id: str, chunks: AsyncIterator[bytes], max_bytes: int) -> int:
        """Store the bytes `chunks` yields under `media_id`; returns the size.

        Reads `chunks` as it writes (a 10 MB upload is never held whole in memory). Raises
        `MediaTooLarge` as soon as more than `max_bytes` arrived, and `ValueError` for an
        id that is not valid; on any failure (those, or `chunks` raising) nothing is left
        behind. Readers never see a half-written file: it appears whole or not at all.
        Saving an id that exists replaces it."""

    async def open(self, media_id: str) -> AsyncIterator[bytes]:
        """The file's bytes, in chunks: `async for chunk in await store.open(id)`.

        Awaiting it checks the file is there (raises `MediaMissing` otherwise, an invalid
        id included), so a caller can answer 404 before it starts a response."""

    async def delete(self, media_id: str) -> None:
        """Remove the file; nothing happens if there is none (idempotent)."""

    async def close(self) -> None: ...
