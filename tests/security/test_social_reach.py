"""Social chat and presence, as a stranger would use them (issue 11 §5), on the default
`AGORA_SOCIAL_CHAT_REACH=conversations`: chat reaches only someone who shares a
messaging conversation with the sender, a stranger and an unknown id get the same
refusal and no ack, presence answers only about contacts, and chat content follows the
one user-text policy (controls refused, markup dropped, quotes escaped)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from websockets.asyncio.client import ClientConnection

from tests.service.social_harness import Client, Server, receive, send, social_settings, start

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Server]:
    async with start(social_settings(tmp_path, social_chat_reach="conversations")) as running:
        yield running


async def share_a_conversation(server: Server, one: Client, other: Client) -> None:
    made = await server.http.post(
        server.base_url + "/api/v1/conversations",
        json={"kind": "direct", "user_id": other.user_id},
        headers={"Authorization": f"Bearer {one.token}"},
    )
    assert made.status_code in (200, 201), made.text


async def nothing_arrives(ws: ClientConnection) -> None:
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(ws.recv(), 0.5)


async def test_chat_reaches_only_people_who_share_a_conversation(server: Server) -> None:
    alice, bob, carol = await server.user(), await server.user(), await server.user()
    await share_a_conversation(server, alice, bob)
    sender, bobs, carols = await alice.socket(), await bob.socket(), await carol.socket()
    for to in (carol.user_id, "987654", 987654):  # a stranger, an unknown id, as an int
        await send(sender, {"type": "chat", "to": to, "content": "psst", "id": "c-1"})
        assert await receive(sender) == {"type": "error", "message": "Unknown recipient"}
    await nothing_arrives(carols)

    await send(sender, {"type": "chat", "to": bob.user_id, "content": "salut", "id": "c-2"})
    assert (await receive(sender))["type"] == "ack"
    assert (await receive(bobs))["content"] == "salut"
    # Both ways: bob reaches alice too.
    await send(bobs, {"type": "chat", "to": alice.user_id, "content": "coucou"})
    assert (await receive(bobs))["type"] == "ack"
    for ws in (sender, bobs, carols):
        await ws.close()


async def test_presence_answers_only_about_contacts(server: Server) -> None:
    alice, bob, carol = await server.user(), await server.user(), await server.user()
    await share_a_conversation(server, alice, bob)
    sockets = [await user.socket() for user in (alice, bob, carol)]
    users = [bob.user_id, carol.user_id, alice.user_id]
    await send(sockets[0], {"type": "presence.query", "users": users})
    assert await receive(sockets[0]) == {"type": "presence", "online": [bob.user_id, alice.user_id]}
    await send(sockets[0], {"type": "presence.watch", "users": [carol.user_id]})
    assert await receive(sockets[0]) == {"type": "presence", "online": []}
    for ws in sockets:
        await ws.close()


async def test_chat_content_follows_the_user_text_policy(server: Server) -> None:
    alice, bob = await server.user(), await server.user()
    await share_a_conversation(server, alice, bob)
    sender, bobs = await alice.socket(), await bob.socket()
    for control in ("\x00", "\x1b[2J", "\u202e"):
        await send(sender, {"type": "chat", "to": bob.user_id, "content": f"a{control}b"})
        answer = await receive(sender)
        assert answer["type"] == "error" and answer["message"].startswith("Control character")
    await nothing_arrives(bobs)
    raw = '<img src=x onerror=alert(1)>l\'"ami" & <b>co</b>'
    await send(sender, {"type": "chat", "to": bob.user_id, "content": raw})
    assert (await receive(sender))["type"] == "ack"
    assert (await receive(bobs))["content"] == "l&#x27;&quot;ami&quot; &amp; co"
    await send(sender, {"type": "chat", "content": raw})  # the echo too
    assert (await receive(sender))["content"] == "l&#x27;&quot;ami&quot; &amp; co"
    for ws in (sender, bobs):
        await ws.close()
