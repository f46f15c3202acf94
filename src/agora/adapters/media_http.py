"""Media kept by a media service of the deployment's own, over HTTP: `AGORA_MEDIA_URL`.

The service answers three calls on `<base>/<id>`: `PUT` (the file as the request body,
streamed: stored whole or not at all, replacing any earlier file), `GET` (the bytes, or
404) and `DELETE` (idempotent). With `AGORA_MEDIA_TOKEN` set, every call carries
`Authorization: Bearer <token>`. An object store's plain HTTP interface, a CDN origin
or a small service of one's own fits.

The upload is streamed through as it arrives: the cap is counted here while the body
goes out, and going past it aborts the request (the service must drop a body cut
short) and deletes the id to be sure. A service that cannot be reached, or answers
5xx, is `MediaUnavailable` (503): the message is not sent, nothing is half-stored.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import httpx

from agora.ports.media import MediaMissing, MediaTooLarge, MediaUnavailable, valid_media_id


class HttpMediaStore:
    def __init__(self, base_url: str, *, token: str | None = None, timeout: float = 30.0) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ValueError("media url must be http:// or https://")
        self.base_url = base_url.rstrip("/")
        headers = {"authorization": f"Bearer {token}"} if token else {}
        self._client = httpx.AsyncClient(timeout=timeout, headers=headers, follow_redirects=False)

    def _url(self, media_id: str) -> str:
        return f"{self.base_url}/{media_id}"

    async def save(self, media_id: str, chunks: AsyncIterator[bytes], max_bytes: int) -> int:
        if not valid_media_id(media_id):
            raise ValueError("media id must be 32 lowercase hex digits")
        size = 0

        async def counted() -> AsyncIterator[bytes]:
            nonlocal size
            async for chunk in chunks:
                size += len(chunk)
                if size > max_bytes:
                    raise MediaTooLarge(max_bytes)
                yield chunk

        try:
            response = await self._client.put(self._url(media_id), content=counted())
        except httpx.HTTPError as exc:
            await self._forget(media_id)
            raise MediaUnavailable(f"media service unreachable: {type(exc).__name__}") from exc
        except BaseException:  # too large, the upload itself failing, cancelled
            await self._forget(media_id)
            raise
        if not response.is_success:
            raise MediaUnavailable(f"media service answered {response.status_code} to a save")
        return size

    async def _forget(self, media_id: str) -> None:
        """Best effort after a failed save: the service should have dropped the body cut
        short already; shielded, so a cancelled save still asks."""
        with contextlib.suppress(httpx.HTTPError, OSError):
            await asyncio.shield(self._client.delete(self._url(media_id)))

    async def open(self, media_id: str) -> AsyncIterator[bytes]:
        if not valid_media_id(media_id):
            raise MediaMissing()
        request = self._client.build_request("GET", self._url(media_id))
        try:
            response = await self._client.send(request, stream=True)
        except (httpx.HTTPError, OSError) as exc:
            raise MediaUnavailable(f"media service unreachable: {type(exc).__name__}") from exc
        if response.status_code == 404:
            await response.aclose()
            raise MediaMissing()
        if not response.is_success:
            await response.aclose()
            raise MediaUnavailable(f"media service answered {response.status_code} to a read")
        return _body(response)

    async def delete(self, media_id: str) -> None:
        if not valid_media_id(media_id):
            return
        try:
            response = await self._client.delete(self._url(media_id))
        except (httpx.HTTPError, OSError) as exc:
            raise MediaUnavailable(f"media service unreachable: {type(exc).__name__}") from exc
        if not response.is_success and response.status_code != 404:
            raise MediaUnavailable(f"media service answered {response.status_code} to a delete")

    async def close(self) -> None:
        await self._client.aclose()


async def _body(response: httpx.Response) -> AsyncIterator[bytes]:
    try:
        async for chunk in response.aiter_bytes():
            yield chunk
    finally:
        await response.aclose()
