"""The embedded media store: one file per id under a directory.

Layout: `<root>/<id[:2]>/<id>` (256 subdirectories, so no directory grows huge). A save
writes `<root>/<id[:2]>/.<id>.<random>.part` and renames it over the final name when
complete: a rename within one directory is atomic, so a reader sees the whole file or
none. Writes are not fsynced: a crash may lose a just-saved file, and its message then
answers 404 for the media, never broken bytes. Blocking file calls run in a worker
thread so a slow disk does not stall the event loop.

One host, or several sharing the directory (a network volume): the store keeps no
state besides the files.

A process killed mid-upload leaves its `.part` file (issue 15 §6). The store removes
those at start: the `.part` files not written to for `STALE_PART_SECONDS`. Not all of
them: another instance sharing the directory may be receiving one right now.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import BinaryIO

from agora.ports.media import MediaMissing, MediaTooLarge, valid_media_id

READ_CHUNK = 64 * 1024
# A live upload writes its part with every chunk; one silent this long is an orphan.
STALE_PART_SECONDS = 300.0

log = logging.getLogger("agora.media")


class DiskMediaStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        removed = remove_stale_parts(root, STALE_PART_SECONDS)
        if removed:
            log.warning("removed %d unfinished upload(s) left by a stopped process", removed)

    def _path(self, media_id: str) -> Path:
        return self.root / media_id[:2] / media_id

    async def save(self, media_id: str, chunks: AsyncIterator[bytes], max_bytes: int) -> int:
        if not valid_media_id(media_id):
            raise ValueError("media id must be 32 lowercase hex digits")
        final = self._path(media_id)
        part = final.with_name(f".{media_id}.{secrets.token_hex(4)}.part")
        await asyncio.to_thread(final.parent.mkdir, parents=True, exist_ok=True)
        handle: BinaryIO = await asyncio.to_thread(part.open, "xb")
        size = 0
        try:
            try:
                async for chunk in chunks:
                    size += len(chunk)
                    if size > max_bytes:
                        raise MediaTooLarge(max_bytes)
                    await asyncio.to_thread(handle.write, chunk)
            finally:
                await asyncio.to_thread(handle.close)
            await asyncio.to_thread(part.replace, final)
        except BaseException:  # cancelled too: never leave a part file behind
            with contextlib.suppress(OSError):
                await asyncio.shield(asyncio.to_thread(part.unlink, missing_ok=True))
            raise
        return size

    async def open(self, media_id: str) -> AsyncIterator[bytes]:
        if not valid_media_id(media_id):
            raise MediaMissing()
        try:
            handle: BinaryIO = await asyncio.to_thread(self._path(media_id).open, "rb")
        except (FileNotFoundError, NotADirectoryError):
            raise MediaMissing() from None
        return _read(handle)

    async def delete(self, media_id: str) -> None:
        if not valid_media_id(media_id):
            return
        await asyncio.to_thread(self._path(media_id).unlink, missing_ok=True)

    async def close(self) -> None:
        """Nothing held open between calls."""


def remove_stale_parts(root: Path, older_than: float) -> int:
    """Delete the `.part` files under `root` not modified for `older_than` seconds."""
    removed = 0
    now = time.time()
    for part in root.glob("*/.*.part"):
        with contextlib.suppress(OSError):  # gone meanwhile, or not ours to remove
            if now - part.stat().st_mtime > older_than:
                part.unlink()
                removed += 1
    return removed


async def _read(handle: BinaryIO) -> AsyncIterator[bytes]:
    # The handle was opened before the first chunk is asked for: a file deleted meanwhile
    # is still read whole (POSIX keeps it until closed).
    try:
        while chunk := await asyncio.to_thread(handle.read, READ_CHUNK):
            yield chunk
    finally:
        await asyncio.to_thread(handle.close)
