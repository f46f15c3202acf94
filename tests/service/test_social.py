"""The social socket on a real uvicorn server, with real `websockets` clients (docs/contracts.md
flow 5, docs/social.md): tickets, refusals, echo, chat between devices, presence,
session end."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import jwt
import pytest

from tests.service.social_harness import (
    TICKET_PATH,
    Client,
    Server,
    closed_with,
    open_socket,
    receive,
    refusal,
    send,
    social_settings,
    start,
)
from tests.support.settings import TEST_SECRET

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Server]:
    async with start(social_settings(tmp_path)) as running:
        yield running


# --- tickets -----------------------------------------------------------------------------


async def test_connect_token_needs_an_access_token(server: Server) -> None:
    for method in ("GET", "POST"):
        response = await server.http.request(method, server.base_url + TICKET_PATH)
        assert response.status_code == 401
        assert response.json() == {"error": "Token required"}


async def test_ticket_claims(server: Server) -> None:
    alice = await server.user()
    for method in ("GET", "POST"):
        ticket = await alice.ticket(method=method)
        claims = jwt.decode(ticket, TEST_SECRET, algorithms=["HS256"], audience="agora")
        access = jwt.decode(alice.token, TEST_SECRET, algorithms=["HS256"], audience="agora")
        assert claims["type"] == claims["typ"] == "ws-connect"
        assert claims["user_id"] == claims["sub"] == alice.user_id
        assert claims["login"] == alice.login
        assert claims["exp"] - claims["iat"] == 10
        assert claims["sid"] == access["jti"] and claims["sexp"] == access["exp"]
        assert claims["jti"]
    assert len(await server.audit_events("social.ticket_issued")) == 2


async def test_welcome_and_echo(server: Server) -> None:
    alice = await server.user()
    ws = await alice.socket()
    await send(ws, {"type": "chat", "content": "Bonjour !", "timestamp": "2024-01-01T00:00:00Z"})
    echo = await receive(ws)
    assert echo["type"] == "echo"
    assert echo["content"] == "Bonjour !"
    assert echo["timestamp"] == "2024-01-01T00:00:00Z"
    await ws.close()


async def test_welcome_frame_is_exactly_the_contract(server: Server) -> None:
    alice = await server.user()
    ws = await open_socket(server.base_url, await alice.ticket())
    assert await receive(ws) == {
        "type": "connected",
        "userId": alice.user_id,
        "login": alice.login,
        "message": "Welcome to Social WebSocket!",
    }
    await ws.close()


async def test_refusals_have_a_message_and_a_close_code(server: Server) -> None:
    alice = await server.user()
    assert await refusal(server.base_url, None) == (
        {"type": "error", "message": "Token required"},
        4400,
    )
    assert await refusal(server.base_url, "not-a-jwt") == (
        {"type": "error", "message": "Invalid or expired token"},
        4401,
    )
    forged = jwt.encode(
        jwt.decode(await alice.ticket(), TEST_SECRET, algorithms=["HS256"], audience="agora"),
        "another-secret-that-is-long-enough-0123456789",
        algorithm="HS256",
    )
    assert (await refusal(server.base_url, forged))[1] == 4401
    # The access token itself is a valid token of the wrong type.
    assert await refusal(server.base_url, alice.token) == (
        {"type": "error", "message": "Invalid token type"},
        4403,
    )
    refused = await server.audit_events("social.ticket_refused")
    assert {event["reason"] for event in refused} >= {"missing", "malformed", "wrong_type"}


async def test_a_ticket_opens_one_socket_only(server: Server) -> None:
    alice = await server.user()
    ticket = await alice.ticket()
    first = await open_socket(server.base_url, ticket)
    assert (await receive(first))["type"] == "connected"
    assert await refusal(server.base_url, ticket) == (
        {"type": "error", "message": "Token already used"},
        4409,
    )
    reused = await server.audit_events("social.ticket_reused")
    assert [(e["user_id"], e["reason"]) for e in reused] == [(alice.user_id, "reused")]
    # Simultaneous redemptions: exactly one wins.
    ticket = await alice.ticket()
    sockets = await asyncio.gather(*(open_socket(server.base_url, ticket) for _ in range(5)))
    kinds = sorted([(await receive(ws))["type"] for ws in sockets])
    assert kinds == ["connected"] + ["error"] * 4
    for ws in [first, *sockets]:
        await ws.close()


async def test_expired_ticket(tmp_path: Path) -> None:
    settings = social_settings(tmp_path, ws_ticket_ttl=1, ws_ticket_leeway=0)
    async with start(settings) as server:
        alice = await server.user()
        ticket = await alice.ticket()
        await asyncio.sleep(2.1)
        assert await refusal(server.base_url, ticket) == (
            {"type": "error", "message": "Invalid or expired token"},
            4401,
        )


# --- chat and presence ---------------------------------------------------------------


async def test_bad_frames_get_errors_and_the_socket_stays_open(server: Server) -> None:
    alice = await server.user()
    ws = await alice.socket()
    cases = [
        ("{not json", "Invalid JSON"),
        ("[1, 2]", "A frame is a JSON object"),
        ('{"type": "dance"}', "Unknown frame type"),
        ('{"type": "chat"}', "Missing content"),
        ('{"type": "chat", "content": 42}', "Content must be a string"),
        ('{"type": "chat", "content": "' + "x" * 4001 + '"}', "Content too long"),
        ('{"type": "chat", "content": "hi", "to": ""}', "Invalid recipient"),
        ('{"type": "presence.query", "users": "42"}', "users must be a list of user ids"),
    ]
    for text, message in cases:
        await ws.send(text)
        assert await receive(ws) == {"type": "error", "message": message}, text
    await ws.send(b"binary")
    assert await receive(ws) == {"type": "error", "message": "Text frames only"}
    await send(ws, {"type": "chat", "content": "still here"})
    assert (await receive(ws))["type"] == "echo"
    await ws.close()


async def test_chat_reaches_every_device_of_the_recipient(server: Server) -> None:
    alice, bob = await server.user(), await server.user()
    sender = await alice.socket()
    phone, laptop = await bob.socket(), await bob.socket()
    await send(sender, {"type": "chat", "to": bob.user_id, "content": "salut", "id": "c-1"})
    ack = await receive(sender)
    assert ack["type"] == "ack" and ack["clientId"] == "c-1" and ack["to"] == bob.user_id
    for device in (phone, laptop):
        message = await receive(device)
        assert message == {
            "type": "chat",
            "from": alice.user_id,
            "fromLogin": alice.login,
            "content": "salut",
            "id": ack["id"],
            "sentAt": ack["sentAt"],
        }
    # An integer id is accepted as the seed's clients send it.
    await send(sender, {"type": "chat", "to": int(bob.user_id), "content": "encore"})
    assert (await receive(sender))["type"] == "ack"
    assert (await receive(phone))["content"] == "encore"
    for ws in (sender, phone, laptop):
        await ws.close()


async def test_presence_is_per_user_not_per_device(server: Server) -> None:
    alice, bob = await server.user(), await server.user()
    watcher = await alice.socket()
    await send(watcher, {"type": "presence.query", "users": [bob.user_id, alice.user_id]})
    assert await receive(watcher) == {"type": "presence", "online": [alice.user_id]}
    await send(watcher, {"type": "presence.watch", "users": [bob.user_id]})
    assert await receive(watcher) == {"type": "presence", "online": []}

    phone = await bob.socket()
    assert await receive(watcher) == {"type": "presence.join", "userId": bob.user_id}
    laptop = await bob.socket()  # a second device: no second join
    await phone.close()  # one device left: no leave
    await send(watcher, {"type": "presence.query", "users": [bob.user_id]})
    assert await receive(watcher) == {"type": "presence", "online": [bob.user_id]}
    await laptop.close()  # the last device: leave
    assert await receive(watcher) == {"type": "presence.leave", "userId": bob.user_id}
    await send(watcher, {"type": "presence.query", "users": [bob.user_id]})
    assert await receive(watcher) == {"type": "presence", "online": []}

    await send(watcher, {"type": "presence.unwatch", "users": [bob.user_id]})
    again = await bob.socket()
    await send(watcher, {"type": "chat", "content": "no join before me"})
    assert (await receive(watcher))["type"] == "echo"
    await again.close()
    await watcher.close()


# --- the end of a session ------------------------------------------------------------


async def test_logout_closes_the_sockets_of_that_session(server: Server) -> None:
    alice = await server.user()
    other_session = Client(server.base_url, server.http, alice.user_id, alice.login, "")
    response = await server.http.post(
        server.base_url + "/auth/api/login",
        json={"login": alice.login, "password": "correct horse battery"},
    )
    server.http.cookies.clear()
    other_session.token = response.json()["token"]
    ws = await alice.socket()
    kept = await other_session.socket()
    logout = await server.http.post(
        server.base_url + "/auth/api/logout", headers={"Authorization": f"Bearer {alice.token}"}
    )
    assert logout.status_code == 200
    assert await receive(ws) == {"type": "error", "message": "Session ended"}
    assert await closed_with(ws) == (4410, "Session ended")
    # The other session's socket is untouched; logging out everywhere ends it.
    await send(kept, {"type": "chat", "content": "still"})
    assert (await receive(kept))["type"] == "echo"
    await server.http.post(
        server.base_url + "/auth/api/logout/all",
        headers={"Authorization": f"Bearer {other_session.token}"},
    )
    assert await closed_with(kept) == (4410, "Session ended")


async def test_a_ticket_of_a_revoked_session_is_refused(server: Server) -> None:
    alice = await server.user()
    ticket = await alice.ticket()
    await server.http.post(
        server.base_url + "/auth/api/logout", headers={"Authorization": f"Bearer {alice.token}"}
    )
    assert await refusal(server.base_url, ticket) == (
        {"type": "error", "message": "Session ended"},
        4410,
    )


async def test_socket_ends_when_the_access_token_expires(server: Server) -> None:
    alice = await server.user()
    short = server.social.context.tokens.issue(alice.user_id, "access", 2, login=alice.login)
    alice.token = short.token
    ws = await alice.socket()
    assert await receive(ws, timeout=6) == {"type": "error", "message": "Session ended"}
    # Measured against the token's own exp: how long the socket took to open under load
    # does not matter, only that it ends at the expiry and not long after.
    ended = time.time()
    assert await closed_with(ws) == (4410, "Session ended")
    assert short.expires_at - 0.1 <= ended < short.expires_at + 3.0


async def test_idle_disconnect_by_publications_closes_the_sockets(tmp_path: Path) -> None:
    """The idle sweeper marks the user disconnected and announces it; sockets close."""
    settings = social_settings(tmp_path, idle_timeout=1, idle_sweep_interval=0.3)
    async with start(settings) as server:
        alice = await server.user()
        # The `connected` event makes alice active; then she stays quiet past the timeout.
        for _ in range(50):
            listed = await server.http.get(
                server.base_url + "/api/publications",
                headers={"Authorization": f"Bearer {alice.token}"},
            )
            if listed.status_code == 200:
                break
            await asyncio.sleep(0.1)
        assert listed.status_code == 200, listed.text
        ws = await alice.socket()
        assert await receive(ws, timeout=10) == {"type": "error", "message": "Session ended"}
        assert await closed_with(ws) == (4410, "Session ended")
