"""The MediaStore port's contract, run against every backend: the disk store, and the
HTTP store against a real media service (`tests/support/media_service.py` under uvicorn).

Messaging streams uploads into the store and streams downloads out of it; whichever
store a deployment uses must keep bytes exactly, refuse to grow past the cap while
reading (not after buffering everything), leave nothing behind on any failure, never
show a half-written file, and accept only its own id format (no path tricks). A new
backend is one more entry in `STORES`. The disk-only part checks the files themselves.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import pytest

from agora.adapters.media_disk import DiskMediaStore
from agora.adapters.media_http import HttpMediaStore
from agora.ports.media import MediaMissing, MediaStore, MediaTooLarge, MediaUnavailable
from tests.support.http_server import serving
from tests.support.media_service import TOKEN, media_service


@contextlib.asynccontextmanager
async def disk_store(tmp_path: Path) -> AsyncIterator[MediaStore]:
    yield DiskMediaStore(tmp_path / "media")


@contextlib.asynccontextmanager
async def http_store(tmp_path: Path) -> AsyncIterator[MediaStore]:
    async with serving(media_service(tmp_path / "service")) as base_url:
        store = HttpMediaStore(f"{base_url}/media", token=TOKEN)
        try:
            yield store
        finally:
            await store.close()


StoreFactory = Callable[[Path], AbstractAsyncContextManager[MediaStore]]
STORES: dict[str, StoreFactory] = {"disk": disk_store, "http": http_store}

BAD_IDS = [
    "",
    "../../etc/passwd",
    "..",
    "/etc/passwd",
    "0123456789abcdef0123456789abcde",  # 31 digits
    "0123456789abcdef0123456789abcdef0",  # 33 digits
    "0123456789ABCDEF0123456789ABCDEF",  # upper case is not uuid4().hex
    "0123456789abcdef0123456789abcde/",
    "0123456789abcdef0123456789abcdeg",
    "0123456789abcdef0123456789abcdef\n",
    str(uuid.uuid4()),  # dashed form
]


@pytest.fixture(params=[pytest.param("disk", marks=pytest.mark.embedded), "http"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[MediaStore]:
    async with STORES[request.param](tmp_path) as opened:
        yield opened


def new_id() -> str:
    return uuid.uuid4().hex


async def chunks_of(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part
        await asyncio.sleep(0)


async def read_all(store: MediaStore, media_id: str) -> bytes:
    return b"".join([chunk async for chunk in await store.open(media_id)])


async def test_bytes_come_back_exactly(store: MediaStore) -> None:
    media_id = new_id()
    parts = [os.urandom(size) for size in (1, 65536, 3, 200_000, 7)]
    size = await store.save(media_id, chunks_of(*parts), max_bytes=10_000_000)
    assert size == sum(len(part) for part in parts)
    assert await read_all(store, media_id) == b"".join(parts)


async def test_an_empty_file_is_a_file(store: MediaStore) -> None:
    media_id = new_id()
    assert await store.save(media_id, chunks_of(), max_bytes=10) == 0
    assert await read_all(store, media_id) == b""


async def test_exactly_the_cap_is_accepted(store: MediaStore) -> None:
    media_id = new_id()
    assert await store.save(media_id, chunks_of(b"x" * 600, b"y" * 424), max_bytes=1024) == 1024
    assert await read_all(store, media_id) == b"x" * 600 + b"y" * 424


async def test_one_byte_over_the_cap_keeps_nothing(store: MediaStore) -> None:
    media_id = new_id()
    with pytest.raises(MediaTooLarge) as refused:
        await store.save(media_id, chunks_of(b"x" * 1024, b"!"), max_bytes=1024)
    assert refused.value.max_bytes == 1024
    assert refused.value.status_code == 413
    with pytest.raises(MediaMissing):
        await store.open(media_id)


async def test_the_cap_stops_reading_early(store: MediaStore) -> None:
    """An endless upload is refused after the cap, not read (or buffered) to its end."""
    pulled = 0

    async def endless() -> AsyncIterator[bytes]:
        nonlocal pulled
        while True:
            pulled += 1
            yield b"z" * 1000

    with pytest.raises(MediaTooLarge):
        await store.save(new_id(), endless(), max_bytes=10_000)
    assert pulled == 11


async def test_a_failing_upload_keeps_nothing(store: MediaStore) -> None:
    media_id = new_id()

    async def broken() -> AsyncIterator[bytes]:
        yield b"half"
        raise ConnectionResetError("client went away")

    with pytest.raises(ConnectionResetError):
        await store.save(media_id, broken(), max_bytes=1000)
    with pytest.raises(MediaMissing):
        await store.open(media_id)


async def test_a_cancelled_upload_keeps_nothing(store: MediaStore) -> None:
    media_id = new_id()
    gate = asyncio.Event()

    async def stalled() -> AsyncIterator[bytes]:
        yield b"first part"
        await gate.wait()
        yield b"never"

    saving = asyncio.create_task(store.save(media_id, stalled(), max_bytes=1000))
    await asyncio.sleep(0.05)
    saving.cancel()
    with pytest.raises(asyncio.CancelledError):
        await saving
    with pytest.raises(MediaMissing):
        await store.open(media_id)


async def test_a_file_being_written_is_not_visible(store: MediaStore) -> None:
    media_id = new_id()
    gate = asyncio.Event()

    async def slow() -> AsyncIterator[bytes]:
        yield b"a" * 5000
        await gate.wait()
        yield b"b" * 5000

    saving = asyncio.create_task(store.save(media_id, slow(), max_bytes=100_000))
    await asyncio.sleep(0.05)
    with pytest.raises(MediaMissing):
        await store.open(media_id)
    gate.set()
    assert await saving == 10_000
    assert await read_all(store, media_id) == b"a" * 5000 + b"b" * 5000


async def test_saving_again_replaces(store: MediaStore) -> None:
    media_id = new_id()
    await store.save(media_id, chunks_of(b"old content"), max_bytes=100)
    await store.save(media_id, chunks_of(b"new"), max_bytes=100)
    assert await read_all(store, media_id) == b"new"


async def test_unknown_id_is_missing(store: MediaStore) -> None:
    with pytest.raises(MediaMissing) as missing:
        await store.open(new_id())
    assert missing.value.status_code == 404


async def test_delete_removes_and_is_idempotent(store: MediaStore) -> None:
    media_id, other = new_id(), new_id()
    await store.save(media_id, chunks_of(b"bytes"), max_bytes=100)
    await store.save(other, chunks_of(b"kept"), max_bytes=100)
    await store.delete(media_id)
    with pytest.raises(MediaMissing):
        await store.open(media_id)
    await store.delete(media_id)
    await store.delete(new_id())
    assert await read_all(store, other) == b"kept"


async def test_a_reader_started_before_a_delete_gets_the_whole_file(store: MediaStore) -> None:
    media_id = new_id()
    content = os.urandom(300_000)
    await store.save(media_id, chunks_of(content), max_bytes=1_000_000)
    reading = await store.open(media_id)
    await store.delete(media_id)
    assert b"".join([chunk async for chunk in reading]) == content


@pytest.mark.parametrize("bad_id", BAD_IDS)
async def test_ids_other_than_uuid_hex_are_refused(store: MediaStore, bad_id: str) -> None:
    with pytest.raises(ValueError, match="media id must be 32 lowercase hex digits"):
        await store.save(bad_id, chunks_of(b"evil"), max_bytes=100)
    with pytest.raises(MediaMissing):
        await store.open(bad_id)
    await store.delete(bad_id)  # nothing to delete, and no error


# --- the disk store's own files --------------------------------------------------------


def files_under(root: Path) -> list[Path]:
    return sorted(path for path in root.rglob("*") if path.is_file())


@pytest.mark.embedded
async def test_disk_keeps_one_file_per_id_under_its_root(tmp_path: Path) -> None:
    store = DiskMediaStore(tmp_path / "media")
    media_id = new_id()
    await store.save(media_id, chunks_of(b"content"), max_bytes=100)
    assert files_under(tmp_path) == [tmp_path / "media" / media_id[:2] / media_id]
    assert (tmp_path / "media" / media_id[:2] / media_id).read_bytes() == b"content"


@pytest.mark.embedded
async def test_disk_failures_leave_no_part_files(tmp_path: Path) -> None:
    store = DiskMediaStore(tmp_path / "media")
    with pytest.raises(MediaTooLarge):
        await store.save(new_id(), chunks_of(b"x" * 2000), max_bytes=1024)

    async def broken() -> AsyncIterator[bytes]:
        yield b"half"
        raise RuntimeError("upload failed")

    with pytest.raises(RuntimeError):
        await store.save(new_id(), broken(), max_bytes=1024)
    assert files_under(tmp_path) == []


@pytest.mark.embedded
@pytest.mark.parametrize("bad_id", BAD_IDS)
async def test_disk_bad_ids_touch_nothing(tmp_path: Path, bad_id: str) -> None:
    """A traversal attempt reads, writes and deletes nothing, inside the root or out."""
    outside = tmp_path / "secret"
    outside.write_bytes(b"do not touch")
    store = DiskMediaStore(tmp_path / "media" / "deep")
    with pytest.raises(ValueError, match="media id must be 32 lowercase hex digits"):
        await store.save(bad_id, chunks_of(b"evil"), max_bytes=100)
    await store.delete(bad_id)
    assert files_under(tmp_path) == [outside]
    assert outside.read_bytes() == b"do not touch"


@pytest.mark.embedded
async def test_disk_a_file_deleted_behind_the_store_is_missing(tmp_path: Path) -> None:
    store = DiskMediaStore(tmp_path / "media")
    media_id = new_id()
    await store.save(media_id, chunks_of(b"content"), max_bytes=100)
    (tmp_path / "media" / media_id[:2] / media_id).unlink()
    with pytest.raises(MediaMissing):
        await store.open(media_id)


# --- the HTTP store's own failures -------------------------------------------------------


async def test_http_service_down_is_unavailable_not_a_crash() -> None:
    store = HttpMediaStore("http://127.0.0.1:1/media", timeout=2)
    try:
        with pytest.raises(MediaUnavailable) as down:
            await store.save(new_id(), chunks_of(b"bytes"), max_bytes=100)
        assert down.value.status_code == 503
        with pytest.raises(MediaUnavailable):
            await store.open(new_id())
        with pytest.raises(MediaUnavailable):
            await store.delete(new_id())
    finally:
        await store.close()


async def test_http_a_refused_token_is_unavailable(tmp_path: Path) -> None:
    async with serving(media_service(tmp_path / "service")) as base_url:
        store = HttpMediaStore(f"{base_url}/media", token="not-the-token")
        try:
            with pytest.raises(MediaUnavailable, match="401"):
                await store.save(new_id(), chunks_of(b"bytes"), max_bytes=100)
            with pytest.raises(MediaUnavailable, match="401"):
                await store.open(new_id())
        finally:
            await store.close()


def test_http_store_needs_an_http_url() -> None:
    with pytest.raises(ValueError, match="media url must be http:// or https://"):
        HttpMediaStore("ftp://media.example.com/")
