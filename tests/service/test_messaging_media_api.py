"""Messaging media over REST, through the embedded app on SQLite and PostgreSQL: uploads
streamed to the store (type checked by magic bytes, 415; capped, 413 before or while
reading, nothing left behind), downloads for the owner and the members of a conversation
that refers to the file only, the upload route's own body limit, and the upload rate
limit (429 + Retry-After)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import unquote

import httpx
import pytest

from agora.core.settings import Settings
from tests.service.messaging_support import (
    PNG,
    Person,
    api_settings,
    direct,
    embedded_client,
    sign_up,
    unknown_id,
    upload,
)
from tests.support.http_server import serving
from tests.support.media_service import TOKEN, media_service

CAP = 100_000  # media_max_bytes in api_settings
MEDIA = "/api/v1/media"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return api_settings(tmp_path)


@pytest.fixture
async def people(embedded: httpx.AsyncClient) -> list[Person]:
    return await sign_up(embedded, 3)


def stored_files(tmp_path: Path) -> list[Path]:
    return sorted(p for p in (tmp_path / "media").rglob("*") if p.is_file())


def png_of(size: int) -> bytes:
    return PNG + b"\x00" * (size - len(PNG))


async def test_upload_send_and_download(
    embedded: httpx.AsyncClient, people: list[Person], tmp_path: Path
) -> None:
    alice, bob, carol = people
    uploaded = await upload(embedded, alice, PNG, filename="../../etc/holiday photo.png")
    assert uploaded.status_code == 201, uploaded.text
    media = uploaded.json()
    assert media["content_type"] == "image/png" and media["size"] == len(PNG)
    assert media["url"] == f"{MEDIA}/{media['id']}"
    assert "/" not in media["filename"] and media["filename"].endswith("photo.png")
    assert len(stored_files(tmp_path)) == 1

    # The owner may read it; nobody else until a message refers to it.
    own = await embedded.get(media["url"], headers=alice.auth)
    assert (own.status_code, own.content) == (200, PNG)
    assert (await embedded.get(media["url"], headers=bob.auth)).status_code == 404

    conversation = (await direct(embedded, alice, bob))["id"]
    path = f"/api/v1/conversations/{conversation}/messages"
    sent = await embedded.post(
        path, json={"client_id": "pic-1", "media_id": media["id"]}, headers=alice.auth
    )
    assert sent.status_code == 201, sent.text
    message = sent.json()["message"]
    assert (message["kind"], message["text"]) == ("media", None)
    assert message["media"] == media

    downloaded = await embedded.get(media["url"], headers=bob.auth)
    assert downloaded.status_code == 200, downloaded.text
    assert downloaded.content == PNG
    assert downloaded.headers["content-type"] == "image/png"
    assert downloaded.headers["content-length"] == str(len(PNG))
    disposition = downloaded.headers["content-disposition"]
    assert disposition.startswith("attachment;")
    assert unquote(disposition.split("''", 1)[1]) == media["filename"]
    assert downloaded.headers["x-content-type-options"] == "nosniff"
    assert (await embedded.get(media["url"], headers=carol.auth)).status_code == 404

    # Someone else's upload cannot be sent; a deleted message stops sharing the file.
    stolen = await embedded.post(
        path, json={"client_id": "pic-2", "media_id": media["id"]}, headers=bob.auth
    )
    assert stolen.status_code == 422 and "media_id" in stolen.json()["fields"]
    deleted = await embedded.delete(f"{path}/{message['id']}", headers=alice.auth)
    assert deleted.status_code == 200 and deleted.json()["media"] is None
    assert (await embedded.get(media["url"], headers=bob.auth)).status_code == 404


async def test_unknown_media_is_404(embedded: httpx.AsyncClient, people: list[Person]) -> None:
    alice = people[0]
    assert (await embedded.get(f"{MEDIA}/{unknown_id()}", headers=alice.auth)).status_code == 404
    assert (await embedded.get(f"{MEDIA}/..%2F..%2Fetc", headers=alice.auth)).status_code == 404


@pytest.mark.parametrize(
    ("content", "content_type"),
    [
        (b"<html><script>alert(1)</script></html>", "image/png"),  # wrong magic
        (b"GIF89a" + b"\x00" * 40, "image/png"),  # a real type, but not the declared one
        (PNG, "text/html"),  # not allowed, whatever the bytes
        (PNG, "application/x-msdownload"),
        (PNG, ""),
    ],
)
async def test_content_type_must_be_allowed_and_match_the_bytes(
    embedded: httpx.AsyncClient,
    people: list[Person],
    tmp_path: Path,
    content: bytes,
    content_type: str,
) -> None:
    response = await upload(embedded, people[0], content, content_type=content_type)
    assert response.status_code == 415, response.text
    assert "error" in response.json()
    assert stored_files(tmp_path) == []


async def test_malformed_uploads_are_refused(
    embedded: httpx.AsyncClient, people: list[Person], tmp_path: Path
) -> None:
    alice = people[0]
    as_json = await embedded.post(MEDIA, json={"file": "aGVsbG8="}, headers=alice.auth)
    assert as_json.status_code == 415, as_json.text
    no_file = await embedded.post(MEDIA, data={"other": "field"}, files={}, headers=alice.auth)
    assert no_file.status_code == 415, no_file.text
    only_field = await embedded.post(
        MEDIA,
        content=b'--XyZ\r\nContent-Disposition: form-data; name="note"\r\n\r\nhi\r\n--XyZ--\r\n',
        headers={**alice.auth, "content-type": "multipart/form-data; boundary=XyZ"},
    )
    assert only_field.status_code == 422 and "file" in only_field.json()["fields"]
    truncated = await embedded.post(
        MEDIA,
        content=b'--XyZ\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n'
        b"Content-Type: image/png\r\n\r\n" + PNG,
        headers={**alice.auth, "content-type": "multipart/form-data; boundary=XyZ"},
    )
    assert truncated.status_code == 422 and "file" in truncated.json()["fields"]
    empty = await upload(embedded, alice, b"")
    assert empty.status_code == 422 and "file" in empty.json()["fields"]
    assert stored_files(tmp_path) == []


async def test_the_cap_exactly_passes_one_byte_more_is_413(
    embedded: httpx.AsyncClient, people: list[Person], tmp_path: Path
) -> None:
    alice = people[0]
    exactly = await upload(embedded, alice, png_of(CAP))
    assert exactly.status_code == 201, exactly.text
    assert exactly.json()["size"] == CAP
    over = await upload(embedded, alice, png_of(CAP + 1))
    assert over.status_code == 413, over.text
    assert "error" in over.json()
    assert stored_files(tmp_path) == [
        tmp_path / "media" / exactly.json()["id"][:2] / exactly.json()["id"]
    ]


async def test_a_declared_length_over_the_cap_is_refused_before_reading(
    embedded: httpx.AsyncClient, people: list[Person], tmp_path: Path
) -> None:
    pulled = 0

    async def body() -> AsyncIterator[bytes]:
        nonlocal pulled
        for _ in range(64):
            pulled += 1
            yield b"\x00" * 16_384

    response = await embedded.post(
        MEDIA,
        content=body(),
        headers={
            **people[0].auth,
            "content-type": "multipart/form-data; boundary=XyZ",
            "content-length": str(64 * 16_384),
        },
    )
    assert response.status_code == 413, response.text
    assert pulled == 0
    assert stored_files(tmp_path) == []


async def test_an_undeclared_length_is_counted_while_streaming(
    embedded: httpx.AsyncClient, people: list[Person], tmp_path: Path
) -> None:
    pulled = 0

    async def body() -> AsyncIterator[bytes]:
        nonlocal pulled
        yield (
            b'--XyZ\r\nContent-Disposition: form-data; name="file"; filename="big.png"\r\n'
            b"Content-Type: image/png\r\n\r\n" + PNG
        )
        for _ in range(200):  # 3.2 MB if it were all read
            pulled += 1
            yield b"\x00" * 16_384

    response = await embedded.post(
        MEDIA,
        content=body(),  # no length: sent chunked
        headers={**people[0].auth, "content-type": "multipart/form-data; boundary=XyZ"},
    )
    assert response.status_code == 413, response.text
    assert pulled <= CAP // 16_384 + 2  # stopped at the cap, not at the end
    assert stored_files(tmp_path) == []


async def test_other_routes_keep_the_general_body_limit(
    embedded: httpx.AsyncClient, people: list[Person]
) -> None:
    alice, bob, _ = people
    conversation = (await direct(embedded, alice, bob))["id"]
    large = await embedded.post(
        f"/api/v1/conversations/{conversation}/messages",
        json={"client_id": "big", "text": "x" * 20_000},  # over max_body_bytes (16 KiB)
        headers=alice.auth,
    )
    assert large.status_code == 413, large.text
    # ... while an upload several times that size passes.
    assert (await upload(embedded, alice, png_of(60_000))).status_code == 201


async def test_upload_rate_limit_answers_429_with_retry_after(
    tmp_path: Path, database_url: str
) -> None:
    settings = api_settings(tmp_path, messaging_media_per_hour=2)
    async with embedded_client(settings, database_url) as client:
        alice, bob = await sign_up(client, 2)
        for _ in range(2):
            assert (await upload(client, alice, PNG)).status_code == 201
        blocked = await upload(client, alice, PNG)
        assert blocked.status_code == 429, blocked.text
        assert int(blocked.headers["retry-after"]) > 0
        assert len(stored_files(tmp_path)) == 2
        assert (await upload(client, bob, PNG)).status_code == 201


async def test_a_file_after_other_fields_in_tiny_chunks_is_read_whole(
    embedded: httpx.AsyncClient, people: list[Person]
) -> None:
    alice = people[0]
    content = png_of(5000)
    body = (
        b'--XyZ\r\nContent-Disposition: form-data; name="caption"\r\n\r\nhello\r\n'
        b'--XyZ\r\nContent-Disposition: form-data; name="file"; filename="tiny.png"\r\n'
        b"Content-Type: image/png\r\n\r\n" + content + b"\r\n--XyZ--\r\n"
    )

    async def in_tiny_chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(body), 7):  # boundaries split everywhere
            yield body[start : start + 7]

    response = await embedded.post(
        MEDIA,
        content=in_tiny_chunks(),
        headers={**alice.auth, "content-type": "multipart/form-data; boundary=XyZ"},
    )
    assert response.status_code == 201, response.text
    media = response.json()
    assert (media["size"], media["filename"]) == (len(content), "tiny.png")
    downloaded = await embedded.get(media["url"], headers=alice.auth)
    assert downloaded.content == content


async def test_media_kept_by_the_deployments_own_service(tmp_path: Path, database_url: str) -> None:
    """`AGORA_MEDIA_URL`: uploads go to a media service over HTTP, nothing to the disk;
    the service down is a 503, never a 500."""
    async with serving(media_service(tmp_path / "service")) as base_url:
        settings = api_settings(
            tmp_path / "agora", media_url=f"{base_url}/media", media_token=TOKEN
        )
        async with embedded_client(settings, database_url) as client:
            alice, bob = await sign_up(client, 2)
            uploaded = await upload(client, alice, PNG)
            assert uploaded.status_code == 201, uploaded.text
            media = uploaded.json()
            assert stored_files(tmp_path / "agora") == []
            kept = sorted(p for p in (tmp_path / "service").rglob("*") if p.is_file())
            assert [p.name for p in kept] == [media["id"]]
            conversation = (await direct(client, alice, bob))["id"]
            sent = await client.post(
                f"/api/v1/conversations/{conversation}/messages",
                json={"client_id": "pic-1", "media_id": media["id"]},
                headers=alice.auth,
            )
            assert sent.status_code == 201, sent.text
            downloaded = await client.get(media["url"], headers=bob.auth)
            assert (downloaded.status_code, downloaded.content) == (200, PNG)

    # The service is gone now (its server stopped): the same app answers 503 JSON.
    settings = api_settings(tmp_path / "agora2", media_url=f"{base_url}/media")
    async with embedded_client(settings, database_url) as client:
        (carol,) = await sign_up(client, 1)
        refused = await upload(client, carol, PNG)
        assert refused.status_code == 503, refused.text
        assert "error" in refused.json()
