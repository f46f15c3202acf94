"""Messaging's gRPC MessagingService through a real gRPC client (generated stubs, real
channel, ephemeral port) against every service in one process, on SQLite and
PostgreSQL. Users and conversations are made over REST, as clients do; gRPC must then
follow the same rules as REST: idempotent sends, sanitizing, validation, membership,
read cursors, rate limits, and the matching status codes."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from sqlalchemy import select

from agora.adapters.audit_database import AuditEvent
from agora.db.migrate import upgrade
from agora.grpc.server import GrpcBindError
from agora.grpc.stubs import messaging_pb2 as pb
from agora.grpc.stubs import messaging_pb2_grpc, users_pb2, users_pb2_grpc
from agora.runtime.embedded import create_embedded_app
from agora.runtime.process import ProcessApp
from tests.support.grpc_servers import Running, bearer, running_embedded, trailing
from tests.support.net import free_port
from tests.support.settings import make_settings
from tests.support.users import register_and_login

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


@dataclass
class User:
    id: str
    token: str

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        return bearer(self.token)

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@dataclass
class Chat:
    running: Running
    alice: User
    bob: User
    conversation_id: str

    @property
    def stub(self) -> Any:
        return messaging_pb2_grpc.MessagingServiceStub(self.running.channel)


async def new_user(running: Running) -> User:
    user, token = await register_and_login(running.http)
    return User(str(user["id"]), token)


async def direct(running: Running, one: User, other: User) -> str:
    response = await running.http.post(
        "/api/v1/conversations", json={"kind": "direct", "user_id": other.id}, headers=one.headers
    )
    assert response.status_code in (200, 201), response.text
    return str(response.json()["id"])


@pytest.fixture
async def running(tmp_path: Path, database_url: str) -> AsyncIterator[Running]:
    async with running_embedded(make_settings(tmp_path, database_url=database_url)) as serving:
        yield serving


@pytest.fixture
async def chat(running: Running) -> Chat:
    alice, bob = await new_user(running), await new_user(running)
    return Chat(running, alice, bob, await direct(running, alice, bob))


async def failure(call: Any) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    return caught.value


def send(chat: Chat, who: User, client_id: str | None = None, **content: str) -> Any:
    request = pb.SendMessageRequest(
        conversation_id=chat.conversation_id, client_id=client_id or uuid.uuid4().hex, **content
    )
    return chat.stub.SendMessage(request, metadata=who.metadata, timeout=5)


# --- happy paths ---------------------------------------------------------------------


async def test_send_is_idempotent_and_seen_over_rest(chat: Chat) -> None:
    first = await send(chat, chat.alice, "c-1", text="  hello <b>bob</b>  ")
    again = await send(chat, chat.alice, "c-1", text="something else entirely")
    assert first.created and not again.created
    assert again.message == first.message
    message = first.message
    assert (message.seq, message.author_id, message.client_id, message.kind) == (
        1,
        chat.alice.id,
        "c-1",
        "text",
    )
    assert not message.deleted and not message.HasField("media")
    assert not message.HasField("edited_at") and not message.HasField("deleted_at")

    rest = await chat.running.http.get(
        f"/api/v1/conversations/{chat.conversation_id}/messages", headers=chat.bob.headers
    )
    assert rest.status_code == 200, rest.text
    [stored] = rest.json()["messages"]
    assert stored["id"] == message.id and stored["text"] == message.text
    assert stored["created_at"] == message.created_at and stored["version"] == message.version


async def test_text_is_sanitized_as_over_rest(chat: Chat) -> None:
    raw = 'hi <script>alert(1)</script><a href="javascript:x" onclick="y">there</a>'
    over_grpc = (await send(chat, chat.alice, text=raw)).message.text
    response = await chat.running.http.post(
        f"/api/v1/conversations/{chat.conversation_id}/messages",
        json={"client_id": "rest-1", "text": raw},
        headers=chat.alice.headers,
    )
    assert response.status_code == 201, response.text
    assert over_grpc == response.json()["message"]["text"]
    assert "<script" not in over_grpc and "javascript:" not in over_grpc


async def test_list_pages_both_ways_ascending(chat: Chat) -> None:
    sent = [(await send(chat, chat.alice, text=f"m{n}")).message.seq for n in range(5)]
    assert sent == [1, 2, 3, 4, 5]

    async def page(**options: int) -> tuple[list[int], bool]:
        answer = await chat.stub.ListMessages(
            pb.ListMessagesRequest(conversation_id=chat.conversation_id, **options),
            metadata=chat.bob.metadata,
            timeout=5,
        )
        return [m.seq for m in answer.messages], answer.has_more

    assert await page() == ([1, 2, 3, 4, 5], False)
    assert await page(limit=2) == ([4, 5], True)
    assert await page(before=4, limit=2) == ([2, 3], True)
    assert await page(after=3, limit=5) == ([4, 5], False)
    assert await page(after=0, limit=2) == ([1, 2], True)


async def test_tombstones_are_listed_without_text(chat: Chat) -> None:
    message = (await send(chat, chat.alice, text="oops")).message
    deleted = await chat.running.http.delete(
        f"/api/v1/conversations/{chat.conversation_id}/messages/{message.id}",
        headers=chat.alice.headers,
    )
    assert deleted.status_code == 200, deleted.text
    answer = await chat.stub.ListMessages(
        pb.ListMessagesRequest(conversation_id=chat.conversation_id),
        metadata=chat.bob.metadata,
        timeout=5,
    )
    [tombstone] = answer.messages
    assert tombstone.deleted and tombstone.HasField("deleted_at")
    assert not tombstone.HasField("text") and tombstone.version > message.version


async def test_media_message_of_ones_own_upload(chat: Chat) -> None:
    upload = await chat.running.http.post(
        "/api/v1/media",
        files={"file": ("dot.png", PNG, "image/png")},
        headers=chat.alice.headers,
    )
    assert upload.status_code == 201, upload.text
    media_id = upload.json()["id"]
    message = (await send(chat, chat.alice, media_id=media_id)).message
    assert message.kind == "media" and not message.HasField("text")
    assert (message.media.id, message.media.content_type, message.media.size) == (
        media_id,
        "image/png",
        len(PNG),
    )
    assert message.media.url == f"/api/v1/media/{media_id}"

    error = await failure(send(chat, chat.bob, media_id=media_id))  # not bob's upload
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert trailing(error)["field"] == "media_id"


async def test_unread_counts_and_read_cursor(chat: Chat) -> None:
    other = await direct(chat.running, chat.bob, await new_user(chat.running))
    for n in range(3):
        await send(chat, chat.alice, text=f"m{n}")

    async def unread(who: User, conversation_id: str | None = None) -> Any:
        request = pb.GetUnreadCountRequest()
        if conversation_id is not None:
            request.conversation_id = conversation_id
        return await chat.stub.GetUnreadCount(request, metadata=who.metadata, timeout=5)

    everything = await unread(chat.bob)
    assert everything.total == 3
    assert dict(everything.conversations) == {chat.conversation_id: 3, other: 0}
    one = await unread(chat.bob, chat.conversation_id)
    assert (one.total, dict(one.conversations)) == (3, {chat.conversation_id: 3})
    assert (await unread(chat.alice, chat.conversation_id)).total == 0  # one's own

    receipt = await chat.stub.MarkRead(
        pb.MarkReadRequest(conversation_id=chat.conversation_id, seq=2),
        metadata=chat.bob.metadata,
        timeout=5,
    )
    assert (receipt.conversation_id, receipt.user_id, receipt.read_seq, receipt.unread) == (
        chat.conversation_id,
        chat.bob.id,
        2,
        1,
    )
    back = await chat.stub.MarkRead(
        pb.MarkReadRequest(conversation_id=chat.conversation_id, seq=1),
        metadata=chat.bob.metadata,
        timeout=5,
    )
    assert back.read_seq == 2  # a cursor never moves back
    beyond = await chat.stub.MarkRead(
        pb.MarkReadRequest(conversation_id=chat.conversation_id, seq=99),
        metadata=chat.bob.metadata,
        timeout=5,
    )
    assert (beyond.read_seq, beyond.unread) == (3, 0)
    rest = await chat.running.http.get("/api/v1/unread", headers=chat.bob.headers)
    assert rest.json()["total"] == 0


# --- refusals ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "client_id", "field"),
    [
        ({"text": "   "}, "ok", "text"),
        ({"text": "x" * 4001}, "ok", "text"),
        ({}, "ok", "text"),
        ({"text": "hi"}, "", "client_id"),
        ({"text": "hi"}, "bad id!", "client_id"),
        ({"text": "hi"}, "x" * 65, "client_id"),
    ],
)
async def test_invalid_sends(
    chat: Chat, content: dict[str, str], client_id: str, field: str
) -> None:
    request = pb.SendMessageRequest(
        conversation_id=chat.conversation_id, client_id=client_id, **content
    )
    error = await failure(chat.stub.SendMessage(request, metadata=chat.alice.metadata, timeout=5))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert trailing(error)["field"] == field


async def test_invalid_pages_and_cursors(chat: Chat) -> None:
    def listing(**options: int) -> Any:
        request = pb.ListMessagesRequest(conversation_id=chat.conversation_id, **options)
        return chat.stub.ListMessages(request, metadata=chat.alice.metadata, timeout=5)

    for options, field in [
        ({"limit": 101}, "limit"),
        ({"limit": -1}, "limit"),
        ({"before": -1}, "before"),
        ({"before": 3, "after": 1}, "before"),
    ]:
        error = await failure(listing(**options))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, options
        assert trailing(error)["field"] == field
    read = pb.MarkReadRequest(conversation_id=chat.conversation_id, seq=-1)
    error = await failure(chat.stub.MarkRead(read, metadata=chat.alice.metadata, timeout=5))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert trailing(error)["field"] == "seq"


async def test_a_stranger_finds_nothing(chat: Chat) -> None:
    stranger = await new_user(chat.running)
    await send(chat, chat.alice, text="private")
    for conversation_id in (chat.conversation_id, uuid.uuid4().hex, "not-an-id", ""):
        calls = [
            chat.stub.SendMessage(
                pb.SendMessageRequest(conversation_id=conversation_id, client_id="x", text="hi"),
                metadata=stranger.metadata,
                timeout=5,
            ),
            chat.stub.ListMessages(
                pb.ListMessagesRequest(conversation_id=conversation_id),
                metadata=stranger.metadata,
                timeout=5,
            ),
            chat.stub.GetUnreadCount(
                pb.GetUnreadCountRequest(conversation_id=conversation_id),
                metadata=stranger.metadata,
                timeout=5,
            ),
            chat.stub.MarkRead(
                pb.MarkReadRequest(conversation_id=conversation_id, seq=1),
                metadata=stranger.metadata,
                timeout=5,
            ),
        ]
        for call in calls:
            error = await failure(call)
            assert error.code() == grpc.StatusCode.NOT_FOUND, conversation_id
            assert error.details() == "Conversation not found"
    everything = await chat.stub.GetUnreadCount(
        pb.GetUnreadCountRequest(), metadata=stranger.metadata, timeout=5
    )
    assert (everything.total, dict(everything.conversations)) == (0, {})


async def test_no_token_or_a_revoked_one_is_unauthenticated(chat: Chat) -> None:
    request = pb.SendMessageRequest(conversation_id=chat.conversation_id, client_id="a", text="x")
    error = await failure(chat.stub.SendMessage(request, timeout=5))
    assert (error.code(), error.details()) == (grpc.StatusCode.UNAUTHENTICATED, "Token required")
    logout = await chat.running.http.post("/auth/api/logout", headers=chat.alice.headers)
    assert logout.status_code in (200, 204), logout.text
    error = await failure(chat.stub.SendMessage(request, metadata=chat.alice.metadata, timeout=5))
    assert (error.code(), error.details()) == (grpc.StatusCode.UNAUTHENTICATED, "Token revoked")
    listing = pb.ListMessagesRequest(conversation_id=chat.conversation_id)
    error = await failure(chat.stub.ListMessages(listing, metadata=bearer("x.y.z"), timeout=5))
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert not (await chat.stub.ListMessages(listing, metadata=chat.bob.metadata)).messages


async def test_rate_limit_is_resource_exhausted_with_retry_after(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'agora.db'}"
    await asyncio.to_thread(upgrade, url)
    settings = make_settings(tmp_path, database_url=url, messaging_messages_per_hour=3)
    async with running_embedded(settings) as serving:
        alice, bob = await new_user(serving), await new_user(serving)
        chat = Chat(serving, alice, bob, await direct(serving, alice, bob))
        for n in range(3):
            await send(chat, alice, f"c{n}", text="hi")
        error = await failure(send(chat, alice, "c3", text="one too many"))
        assert (error.code(), error.details()) == (
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            "Too many messages",
        )
        assert int(trailing(error)["retry-after"]) >= 1
        # A retry of a stored send is not a new message: still answered.
        assert not (await send(chat, alice, "c1", text="hi")).created
        database = serving.app("messaging").context.backends.database
        async with database.sessions() as session:
            rows = await session.scalars(
                select(AuditEvent).where(AuditEvent.event == "messaging.rate_limited")
            )
            assert rows.all()


# --- the process's own server ------------------------------------------------------


async def test_the_embedded_app_serves_both_services_on_its_grpc_port(
    tmp_path: Path, database_url: str
) -> None:
    port = free_port()
    app = create_embedded_app(make_settings(tmp_path, database_url=database_url, grpc_port=port))
    async with running_embedded_lifespan(app) as http:
        assert app.grpc is not None and app.grpc.port == port
        user, token = await register_and_login(http)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            found = await users_pb2_grpc.UserServiceStub(channel).GetUser(
                users_pb2.GetUserRequest(id=str(user["id"])), metadata=bearer(token), timeout=5
            )
            assert found.login == user["login"]
            unread = await messaging_pb2_grpc.MessagingServiceStub(channel).GetUnreadCount(
                pb.GetUnreadCountRequest(), metadata=bearer(token), timeout=5
            )
            assert unread.total == 0
    assert app.grpc is None or app.grpc.port is None  # stopped with the app


async def test_a_grpc_port_in_use_fails_the_start(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        app = create_embedded_app(make_settings(tmp_path, grpc_port=port))
        with pytest.raises(GrpcBindError, match=f"127.0.0.1:{port}"):
            async with app.running():
                pass


@contextlib.asynccontextmanager
async def running_embedded_lifespan(app: ProcessApp) -> AsyncIterator[httpx.AsyncClient]:
    """The app's own lifespan (with its own gRPC server), and an HTTP client on it."""
    async with app.running():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            yield http
