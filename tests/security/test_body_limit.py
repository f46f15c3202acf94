"""Request bodies over AGORA_MAX_BODY_BYTES get a JSON 413, declared or streamed."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import APIRouter, FastAPI, Request
from pydantic import BaseModel
from starlette.responses import JSONResponse
from starlette.types import Message, Receive, Scope, Send

from agora.core.settings import Settings
from agora.runtime.backends import build_backends
from agora.web.app import build_service_app
from agora.web.security import BodyLimitMiddleware
from tests.support.settings import make_settings

LIMIT = 1024
router = APIRouter()
calls: list[str] = []


class Note(BaseModel):
    text: str


@router.post("/t/notes")
async def create_note(note: Note) -> dict[str, int]:
    calls.append("notes")
    return {"length": len(note.text)}


@router.post("/t/raw")
async def raw(request: Request) -> dict[str, int]:
    calls.append("raw")
    return {"length": len(await request.body())}


@router.post("/t/forgiving")
async def forgiving(request: Request) -> Any:
    """Like the login route: any unreadable body becomes the route's own 400."""
    try:
        await request.body()
    except Exception:
        return JSONResponse({"error": "Malformed request body"}, status_code=400)
    return {"ok": True}


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    calls.clear()
    settings = make_settings(tmp_path, max_body_bytes=LIMIT)
    app: FastAPI = build_service_app(
        name="limit-test",
        settings=settings,
        backends=build_backends(settings),
        routers=[router],
        path_prefixes=("/t/",),
    )
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c


class Chunks:
    """A body sent chunked (no Content-Length), counting what the app pulled."""

    def __init__(self, count: int, size: int = 256) -> None:
        self.count, self.size, self.sent = count, size, 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for _ in range(self.count):
            self.sent += 1
            yield b"x" * self.size


def assert_too_large(response: httpx.Response) -> None:
    assert response.status_code == 413
    assert response.json() == {"error": "Request body too large"}
    assert response.headers["x-content-type-options"] == "nosniff"


async def test_declared_length_over_the_limit_is_refused_before_the_route_runs(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post("/t/notes", json={"text": "x" * LIMIT})
    assert int(response.request.headers["content-length"]) > LIMIT
    assert_too_large(response)
    assert response.headers["connection"] == "close"
    assert calls == []


async def test_a_streamed_body_is_cut_off_once_past_the_limit(client: httpx.AsyncClient) -> None:
    body = Chunks(count=400)  # 100 KiB offered
    response = await client.post("/t/raw", content=body)
    assert "content-length" not in response.request.headers
    assert_too_large(response)
    # The app stopped pulling right after the chunk that crossed 1 KiB.
    assert body.sent == LIMIT // body.size + 1


async def test_a_route_catching_every_error_still_answers_413(client: httpx.AsyncClient) -> None:
    assert_too_large(await client.post("/t/forgiving", content=Chunks(count=10)))


async def test_a_streamed_json_body_past_the_limit_is_413_not_400(
    client: httpx.AsyncClient,
) -> None:
    async def note() -> AsyncIterator[bytes]:
        yield b'{"text": "'
        for _ in range(10):
            yield b"x" * 256
        yield b'"}'

    assert_too_large(await client.post("/t/notes", content=note()))


@pytest.mark.parametrize("size", [0, 100, LIMIT])
async def test_bodies_up_to_the_limit_are_read(client: httpx.AsyncClient, size: int) -> None:
    declared = await client.post("/t/raw", content=b"y" * size)
    assert declared.status_code == 200 and declared.json() == {"length": size}
    streamed = await client.post("/t/raw", content=Chunks(count=size // 256, size=256))
    assert streamed.status_code == 200 and streamed.json() == {"length": size - size % 256}


async def test_json_under_the_limit_still_works(client: httpx.AsyncClient) -> None:
    response = await client.post("/t/notes", json={"text": "hello"})
    assert response.status_code == 200 and response.json() == {"length": 5}


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """For the `embedded` fixture: every service with the test's limit."""
    return make_settings(tmp_path, max_body_bytes=LIMIT)


async def test_the_real_login_route_gets_413(embedded: httpx.AsyncClient) -> None:
    """The login route turns any unreadable body into its 400; a huge body is still 413."""
    streamed = await embedded.post(
        "/auth/api/login", content=Chunks(count=10), headers={"Content-Type": "application/json"}
    )
    assert_too_large(streamed)
    declared = await embedded.post("/auth/api/login", json={"login": "a", "password": "x" * LIMIT})
    assert_too_large(declared)
    small = await embedded.post("/auth/api/login", json={"login": "nobody", "password": "x" * 20})
    assert small.status_code == 401


async def test_an_http2_body_without_a_declared_length_is_counted() -> None:
    """HTTP/2 needs no Content-Length nor Transfer-Encoding: such a body is counted too."""
    read: list[int] = []

    async def reader(scope: Scope, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            read.append(len(message.get("body", b"")))
            if not message.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    chunks = [{"type": "http.request", "body": b"z" * 600, "more_body": True}] * 5
    sent: list[Message] = []

    async def receive() -> Message:
        return chunks.pop()

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {"type": "http", "http_version": "2", "method": "POST", "path": "/", "headers": []}
    await BodyLimitMiddleware(reader, max_bytes=LIMIT)(scope, receive, send)
    assert sent[0]["status"] == 413
    assert read == [600] and len(chunks) == 3  # the second chunk passed 1 KiB: no more reads
