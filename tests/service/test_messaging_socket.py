"""The messaging socket on a real uvicorn server with real `websockets` clients (docs/contracts.md
point 6, docs/messaging.md §3): welcome and refusals, replies with their ref,
joins of `user:` and `conversation:` topics, sending like REST, typing, presence,
catch-up on reconnect, removed members."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from websockets.asyncio.client import connect

from agora.realtime.connection import Connection
from agora.services.messaging.service.messages import MessagingService
from tests.service.messaging_sockets import (
    direct,
    error_of,
    group,
    joined_device,
    messaging_settings,
    open_device,
    rest,
    rest_send,
    topic,
    ws_base,
)
from tests.service.social_harness import (
    Server,
    receive,
    send,
    start,
)
from tests.support.messaging_client import Device, diff, handshake_refusal, presence

pytestmark = pytest.mark.timeout(60)

SOCKET_PATH = "/socket/websocket"
WELCOME = "Welcome to Messaging WebSocket!"


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Server]:
    async with start(messaging_settings(tmp_path)) as running:
        yield running


# --- connecting --------------------------------------------------------------------------------


async def test_welcome_is_a_phoenix_push(server: Server) -> None:
    alice = await server.user()
    device = await open_device(alice)
    assert device.welcome == {
        "topic": "phoenix",
        "event": "connected",
        "payload": {"user_id": alice.user_id, "login": alice.login, "message": WELCOME},
        "ref": None,
    }
    await device.close()


async def test_refusals_are_http_answers_to_the_handshake(server: Server) -> None:
    """As a Phoenix server refuses `connect`: no upgrade, a 403 saying why (docs/messaging.md
    §3.1); the ticket refusals are audited as before."""
    alice = await server.user()
    url = ws_base(server.base_url) + SOCKET_PATH
    assert await handshake_refusal(url) == (403, {"error": "Token required", "code": 4400})
    # an access token, not a ticket
    assert await handshake_refusal(f"{url}?token={alice.token}") == (
        403,
        {"error": "Invalid token type", "code": 4403},
    )
    # A vsn this server does not speak: refused before the ticket, which stays good.
    ticket = await alice.ticket()
    assert await handshake_refusal(f"{url}?token={ticket}&vsn=3.0.0") == (
        403,
        {"error": "Unsupported vsn", "code": 4400},
    )
    # One ticket opens one socket, social or messaging.
    social = await connect(ws_base(server.base_url) + f"/social/api/socials/ws?token={ticket}")
    assert (await receive(social))["type"] == "connected"
    assert await handshake_refusal(f"{url}?token={ticket}") == (
        403,
        {"error": "Token already used", "code": 4409},
    )
    await social.close()
    assert await server.audit_events("messaging.ticket_reused")
    refused = await server.audit_events("messaging.ticket_refused")
    assert {e["reason"] for e in refused} >= {"missing", "wrong_type"}
    assert [e["reason"] for e in await server.audit_events("messaging.handshake_refused")] == [
        "unsupported_vsn"
    ]


async def test_refused_handshakes_never_lock_out_the_next_valid_ticket(tmp_path: Path) -> None:
    """Only sockets that open count against the connections per IP: a client retrying
    with its burned ticket is refused each time, and its next good ticket opens."""
    settings = messaging_settings(tmp_path).model_copy(update={"messaging_connections_per_ip": 3})
    async with start(settings) as server:
        alice = await server.user()
        url = ws_base(server.base_url) + SOCKET_PATH
        burned = await alice.ticket()
        await (await Device.open(ws_base(server.base_url), burned, "first")).close()
        for _ in range(10):
            status, body = await handshake_refusal(f"{url}?token={burned}")
            assert (status, body["code"]) == (403, 4409)
        device = await open_device(alice)  # the 2nd socket opened from this address
        await device.close()
        await (await open_device(alice)).close()  # the 3rd
        # The 4th is over the limit: refused (429), and the address is blocked...
        status, body = await handshake_refusal(f"{url}?token={await alice.ticket()}")
        assert (status, body) == (429, {"error": "Too many connections", "code": 4429})
        # ... before its ticket is even looked at: that ticket stays good for later.
        spared = await alice.ticket()
        assert (await handshake_refusal(f"{url}?token={spared}"))[0] == 429
        assert await server.audit_events("messaging.rate_limited")


async def test_an_open_socket_keeps_no_copy_of_its_handshake(server: Server) -> None:
    """Per idle socket (issue 13: memory), the server keeps neither the handshake's
    headers nor its query with the ticket, parsed or not, once the socket is open."""
    alice = await server.user()
    device = await open_device(alice)
    opened = [
        o
        for o in gc.get_objects()
        if issubclass(type(o), Connection) and o.user_id == alice.user_id
    ]
    assert len(opened) == 1
    ws = opened[0].ws
    assert ws.scope["headers"] == [] and ws.scope["query_string"] == b""
    assert "_query_params" not in vars(ws)  # Starlette's cache of `query_params`
    await device.close()


# --- frames and replies ------------------------------------------------------------------------


async def test_vsn_2_0_0_speaks_arrays_with_join_refs(server: Server) -> None:
    """Phoenix's V2 serializer, raw (phoenix.js itself in tests/e2e/test_phoenix_client.py)."""
    alice = await server.user()
    url = ws_base(server.base_url) + f"{SOCKET_PATH}?token={await alice.ticket()}&vsn=2.0.0"
    async with connect(url) as ws:
        welcome = orjson.loads(await ws.recv())
        assert welcome[:4] == [None, None, "phoenix", "connected"]
        await ws.send('{"topic": "phoenix", "event": "heartbeat", "payload": {}, "ref": "1"}')
        refused = orjson.loads(await ws.recv())
        assert refused[:4] == [None, None, "phoenix", "phx_reply"]
        assert refused[4]["response"]["reason"].startswith("A frame is a JSON array")
        await ws.send(orjson.dumps([None, "2", "phoenix", "heartbeat", {}]).decode())
        assert orjson.loads(await ws.recv()) == [
            None,
            "2",
            "phoenix",
            "phx_reply",
            {"status": "ok", "response": {}},
        ]
        user_topic = f"user:{alice.user_id}"
        await ws.send(orjson.dumps(["J1", "3", user_topic, "phx_join", {}]).decode())
        reply = orjson.loads(await ws.recv())
        assert reply[:4] == ["J1", "3", user_topic, "phx_reply"]
        assert reply[4]["status"] == "ok"
        assert orjson.loads(await ws.recv()) == ["J1", None, user_topic, "presence_state", {}]
        # A reply to a request of another join carries that request's join_ref.
        await ws.send(orjson.dumps(["J0", "4", "user:nobody", "phx_join", {}]).decode())
        other = orjson.loads(await ws.recv())
        assert other[:4] == ["J0", "4", "user:nobody", "phx_reply"]
        assert other[4]["response"]["status"] == 403


async def test_every_reply_carries_its_ref(server: Server) -> None:
    alice = await server.user()
    device = await open_device(alice)
    ref = await device.push("phoenix", "heartbeat", {})
    assert await device.reply(ref) == {
        "topic": "phoenix",
        "event": "phx_reply",
        "payload": {"status": "ok", "response": {}},
        "ref": ref,
    }
    ref = await device.push("phoenix", "dance", {})
    assert await device.reply(ref) == {
        "topic": "phoenix",
        "event": "phx_reply",
        "payload": {"status": "error", "response": {"reason": "Unknown event", "status": 400}},
        "ref": ref,
    }
    assert await error_of(device, "lobby:1", "phx_join", {}) == {
        "reason": "Unknown topic",
        "status": 400,
    }
    await device.close()


async def test_bad_frames_get_error_replies_and_the_socket_stays(server: Server) -> None:
    alice = await server.user()
    url = f"{ws_base(server.base_url)}{SOCKET_PATH}?token={await alice.ticket()}"
    async with connect(url) as ws:
        assert (await receive(ws))["event"] == "connected"
        cases = [
            ("not json", None, "Invalid JSON"),
            ("[1, 2]", None, "A frame is a JSON object"),
            ('{"topic": 5, "event": "heartbeat", "ref": "r3"}', "r3", "Invalid topic"),
            ('{"topic": "phoenix", "event": "", "ref": 4}', 4, "Invalid event"),
            (
                '{"topic": "phoenix", "event": "heartbeat", "payload": [], "ref": "r5"}',
                "r5",
                "payload must be an object",
            ),
            (
                '{"topic": "phoenix", "event": "heartbeat", "ref": {"a": 1}}',
                None,
                "ref must be a string of at most 64 characters or a number",
            ),
        ]
        for raw, ref, reason in cases:
            await ws.send(raw)
            assert await receive(ws) == {
                "topic": "phoenix",
                "event": "phx_reply",
                "payload": {"status": "error", "response": {"reason": reason, "status": 400}},
                "ref": ref,
            }, raw
        await send(ws, {"topic": "phoenix", "event": "heartbeat", "payload": {}, "ref": "ok"})
        assert (await receive(ws))["payload"]["status"] == "ok"


# --- topics ------------------------------------------------------------------------------------


async def test_only_ones_own_user_topic_and_members_conversations(server: Server) -> None:
    alice, bob, mallory = await server.user(), await server.user(), await server.user()
    conversation_id = await direct(alice, bob)
    device = await open_device(mallory)
    assert await error_of(device, f"user:{alice.user_id}", "phx_join", {}) == {
        "reason": "Not your topic",
        "status": 403,
    }
    not_found = {"reason": "Conversation not found", "status": 404}
    assert await error_of(device, topic(conversation_id), "phx_join", {}) == not_found
    assert await error_of(device, "conversation:../../etc", "phx_join", {}) == not_found
    assert await error_of(device, topic(conversation_id), "typing:start", {}) == {
        "reason": "Join the topic first",
        "status": 400,
    }
    refused = await server.audit_events("messaging.join_refused")
    assert {(e["reason"], e["user_id"]) for e in refused} == {
        ("not_own_user_topic", mallory.user_id),
        ("not_a_member", mallory.user_id),
    }
    await device.close()


# --- sending, like REST ----------------------------------------------------------------------


async def test_send_edit_delete_read_reach_every_device_and_send_is_idempotent(
    server: Server,
) -> None:
    alice, bob = await server.user(), await server.user()
    conversation_id = await direct(alice, bob)
    alice_phone = await joined_device(alice, conversation_id)
    alice_laptop = await joined_device(alice)  # the user topic only: still gets events
    bob_phone = await joined_device(bob)
    everyone = (alice_phone, alice_laptop, bob_phone)

    sent = await alice_phone.request(
        topic(conversation_id), "message:send", {"client_id": "c-1", "text": "<b>salut</b>"}
    )
    message = sent["message"]
    assert sent["created"] is True and message["seq"] == 1 and "<b>" not in message["text"]
    for device in everyone:
        pushed = await device.expect(
            "message:new", topic=f"user:{device.welcome['payload']['user_id']}"
        )
        assert pushed["payload"] == message and pushed["ref"] is None
    # The same client id again, over the socket then over REST: the same message.
    again = await alice_phone.request(
        topic(conversation_id), "message:send", {"client_id": "c-1", "text": "<b>salut</b>"}
    )
    assert again == {"message": message, "created": False}
    replay = await rest_send(alice, conversation_id, "c-1", "<b>salut</b>")
    assert replay["message"]["id"] == message["id"] and replay["created"] is False
    for device in everyone:
        await device.expect_none("message:new", within=0.3)

    edited = await alice_phone.request(
        topic(conversation_id), "message:edit", {"message_id": message["id"], "text": "hello"}
    )
    assert edited["message"]["text"] == "hello"
    deleted = await alice_phone.request(
        topic(conversation_id), "message:delete", {"message_id": message["id"]}
    )
    assert deleted["message"]["deleted"] is True
    await bob_phone.join(topic(conversation_id))
    receipt = await bob_phone.request(topic(conversation_id), "read", {"seq": 1})
    assert receipt == {
        "conversation_id": conversation_id,
        "user_id": bob.user_id,
        "read_seq": 1,
        "unread": 0,
    }
    for device in everyone:
        assert (await device.expect("message:updated"))["payload"] == edited["message"]
        assert (await device.expect("message:deleted"))["payload"] == deleted["message"]
        assert (await device.expect("receipt"))["payload"] == receipt
    for device in everyone:
        await device.close()


async def test_socket_errors_are_the_rest_errors(server: Server) -> None:
    alice, bob = await server.user(), await server.user()
    conversation_id = await direct(alice, bob)
    device = await joined_device(alice, conversation_id)
    conv = topic(conversation_id)
    assert await error_of(device, conv, "message:send", {"text": "hi"}) == {
        "reason": "Validation failed",
        "status": 422,
        "fields": {"client_id": "client_id must be 1 to 64 characters of A-Z a-z 0-9 _ . : -"},
    }
    assert (await error_of(device, conv, "message:send", {"client_id": "x"}))["status"] == 422
    too_long = {"client_id": "long", "text": "x" * 5000}
    assert (await error_of(device, conv, "message:send", too_long))["fields"].keys() == {"text"}
    assert (await error_of(device, conv, "read", {"seq": -1}))["fields"].keys() == {"seq"}
    assert (await error_of(device, conv, "read", {}))["fields"] == {"seq": "seq is required"}
    missing = {"message_id": "f" * 32, "text": "x"}
    assert (await error_of(device, conv, "message:edit", missing))["status"] == 404
    sent = await rest_send(bob, conversation_id, "b-1", "mine")
    not_yours = {"message_id": sent["message"]["id"], "text": "x"}
    assert (await error_of(device, conv, "message:edit", not_yours))["status"] == 403
    await device.close()


async def test_the_message_limit_answers_429_with_retry_after(tmp_path: Path) -> None:
    async with start(messaging_settings(tmp_path, messaging_messages_per_hour=2)) as server:
        alice, bob = await server.user(), await server.user()
        conversation_id = await direct(alice, bob)
        device = await joined_device(alice, conversation_id)
        for n in range(2):
            await device.request(
                topic(conversation_id), "message:send", {"client_id": f"c{n}", "text": "hi"}
            )
        refused = await error_of(
            device, topic(conversation_id), "message:send", {"client_id": "c9", "text": "hi"}
        )
        assert refused["status"] == 429 and refused["retry_after"] > 0
        await device.close()


# --- typing and presence ---------------------------------------------------------------------


async def test_typing_reaches_the_others_and_stops_by_itself(server: Server) -> None:
    alice, bob = await server.user(), await server.user()
    conversation_id = await direct(alice, bob)
    conv = topic(conversation_id)
    alice_phone = await joined_device(alice, conversation_id)
    alice_laptop = await joined_device(alice, conversation_id)
    bob_phone = await joined_device(bob, conversation_id)
    assert await alice_phone.request(conv, "typing:start", {}) == {}
    typing = await bob_phone.expect("typing", topic=conv)
    payload = {"conversation_id": conversation_id, "user_id": alice.user_id, "typing": True}
    assert typing["payload"] == payload
    # Nothing to the typist's own devices; the stop comes by itself after the TTL (0.5 s).
    stopped = await bob_phone.expect("typing", topic=conv, timeout=2)
    assert stopped["payload"] == {**payload, "typing": False}
    await alice_laptop.expect_none("typing", within=0.1)
    # An explicit stop, once.
    await alice_phone.request(conv, "typing:start", {})
    await alice_phone.request(conv, "typing:stop", {})
    assert [
        f["payload"]["typing"]
        for f in [await bob_phone.expect("typing"), await bob_phone.expect("typing")]
    ] == [True, False]
    await bob_phone.expect_none("typing", within=0.8)
    for device in (alice_phone, alice_laptop, bob_phone):
        await device.close()


async def test_presence_in_a_conversation_and_of_contacts(server: Server) -> None:
    alice, bob = await server.user(), await server.user()
    conversation_id = await direct(alice, bob)
    conv = topic(conversation_id)
    alice_phone = await open_device(alice)
    await alice_phone.join(f"user:{alice.user_id}")
    contacts = await alice_phone.expect("presence_state", topic=f"user:{alice.user_id}")
    assert contacts["payload"] == presence()
    await alice_phone.join(conv)
    state = await alice_phone.expect("presence_state", topic=conv)
    assert state["payload"] == presence(alice.user_id)

    bob_phone = await open_device(bob)  # connected: online for alice's user topic
    joined = await alice_phone.expect("presence_diff", topic=f"user:{alice.user_id}")
    assert joined["payload"] == diff(joins=[bob.user_id])
    await bob_phone.join(conv)
    assert (await bob_phone.expect("presence_state", topic=conv))["payload"] == presence(
        *sorted([alice.user_id, bob.user_id])
    )
    changed = await alice_phone.expect("presence_diff", topic=conv)
    assert changed["payload"] == diff(joins=[bob.user_id])
    bob_laptop = await open_device(bob)
    await bob_laptop.join(conv)  # a second device: no diff
    await bob_phone.leave(conv)
    await alice_phone.expect_none("presence_diff", topic=conv, within=0.3)
    await bob_laptop.close()
    changed = await alice_phone.expect("presence_diff", topic=conv)
    assert changed["payload"] == diff(leaves=[bob.user_id])
    await bob_phone.close()
    left = await alice_phone.expect("presence_diff", topic=f"user:{alice.user_id}")
    assert left["payload"] == diff(leaves=[bob.user_id])
    await alice_phone.close()


async def test_a_new_contact_is_followed_without_joining_again(server: Server) -> None:
    alice, bob, carol = await server.user(), await server.user(), await server.user()
    alice_phone = await open_device(alice)
    await alice_phone.join(f"user:{alice.user_id}")
    contacts = await alice_phone.expect("presence_state", topic=f"user:{alice.user_id}")
    assert contacts["payload"] == presence()  # no conversation yet: no contacts
    bob_phone = await open_device(bob)  # online, but not a contact of alice's yet
    await alice_phone.expect_none("presence_diff", topic=f"user:{alice.user_id}", within=0.3)

    await direct(alice, bob)  # bob becomes a contact: online already, so a join
    await alice_phone.expect("conversation:updated", topic=f"user:{alice.user_id}")
    joined = await alice_phone.expect("presence_diff", topic=f"user:{alice.user_id}")
    assert joined["payload"] == diff(joins=[bob.user_id])
    await bob_phone.close()
    left = await alice_phone.expect("presence_diff", topic=f"user:{alice.user_id}")
    assert left["payload"] == diff(leaves=[bob.user_id])

    await direct(alice, carol)  # offline contact: followed, no join until she connects
    await alice_phone.expect("conversation:updated", topic=f"user:{alice.user_id}")
    carol_phone = await open_device(carol)
    joined = await alice_phone.expect("presence_diff", topic=f"user:{alice.user_id}")
    assert joined["payload"] == diff(joins=[carol.user_id])
    await carol_phone.close()
    await alice_phone.close()


# --- catching up -------------------------------------------------------------------------------


async def test_reconnect_gets_exactly_what_it_missed(server: Server) -> None:
    alice, bob = await server.user(), await server.user()
    conversation_id = await direct(alice, bob)
    first = await rest_send(alice, conversation_id, "m1", "one")
    missed = [
        (await rest_send(alice, conversation_id, f"m{n}", f"#{n}"))["message"] for n in (2, 3, 4)
    ]
    # An edit of an older message, seen by a device that also sends its last version.
    edited = await rest(
        alice,
        "PATCH",
        f"/conversations/{conversation_id}/messages/{first['message']['id']}",
        {"text": "uno"},
    )
    device = await open_device(bob)
    catchup = await device.join(
        topic(conversation_id), {"last_seq": 1, "last_version": first["message"]["version"]}
    )
    assert catchup["recovered"] is True
    assert [m["id"] for m in catchup["messages"]] == [m["id"] for m in missed] + [edited["id"]]
    assert catchup["last_seq"] == 4 and catchup["unread"] == 4
    # On the user topic: several conversations at once, with unread counts.
    other = await group(alice, bob)
    await rest_send(alice, other, "g1", "hey")
    reply = await device.join(
        f"user:{bob.user_id}",
        {
            "conversations": {
                conversation_id: {"last_seq": 4},
                other: {"last_seq": 0},
                "f" * 32: {"last_seq": 0},
            }
        },
    )
    assert reply["conversations"][conversation_id]["messages"] == []
    assert [m["text"] for m in reply["conversations"][other]["messages"]] == ["hey"]
    assert reply["unread"] == {conversation_id: 4, other: 1}
    assert reply["errors"] == {"f" * 32: {"reason": "Conversation not found", "status": 404}}
    await device.close()


async def test_too_large_a_gap_is_not_recovered(server: Server) -> None:
    alice, bob = await server.user(), await server.user()
    conversation_id = await direct(alice, bob)
    for n in range(7):  # messaging_sync_max_messages is 5
        await rest_send(alice, conversation_id, f"m{n}", f"#{n}")
    device = await open_device(bob)
    catchup = await device.join(topic(conversation_id), {"last_seq": 0})
    assert catchup["recovered"] is False and catchup["messages"] == []
    assert catchup["hint"] == f"GET /api/v1/conversations/{conversation_id}/messages"
    assert (await device.join(topic(conversation_id), {"last_seq": 3}))["recovered"] is True
    bad = await error_of(device, topic(conversation_id), "phx_join", {"last_seq": "x"})
    assert bad["fields"].keys() == {"last_seq"}
    await device.close()


async def test_a_removed_member_is_taken_out_of_the_topic(server: Server) -> None:
    alice, bob, carol = await server.user(), await server.user(), await server.user()
    conversation_id = await group(alice, bob, carol)
    bob_phone = await joined_device(bob, conversation_id)
    await rest(alice, "DELETE", f"/conversations/{conversation_id}/members/{bob.user_id}")
    closed = await bob_phone.expect("phx_close", topic=topic(conversation_id))
    assert closed["payload"] == {"reason": "removed"}
    updated = await bob_phone.expect("conversation:updated")
    assert bob.user_id not in updated["payload"]["members"]
    assert (await error_of(bob_phone, topic(conversation_id), "typing:start", {}))["status"] == 400
    assert (await error_of(bob_phone, topic(conversation_id), "phx_join", {}))["status"] == 404
    await bob_phone.close()


async def test_a_burst_of_sends_runs_side_by_side_in_frame_order(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Sends of one socket overlap (their content checks here), yet get their seqs in
    frame order, and a frame after them (a leave) is answered only once they are
    (send_window.py)."""
    alice, bob = await server.user(), await server.user()
    conversation_id = await direct(alice, bob)
    phone = await joined_device(alice, conversation_id)
    burst = 8
    checking, most = 0, 0
    message_text = MessagingService._message_text

    async def slow_text(service: MessagingService, actor: Any, cid: str, text: str) -> Any:
        nonlocal checking, most
        checking += 1
        most = max(most, checking)
        try:
            # The later the frame, the sooner its check ends: order comes from the turns.
            await asyncio.sleep(0.02 * (burst - int(text.removeprefix("n"))))
            return await message_text(service, actor, cid, text)
        finally:
            checking -= 1

    monkeypatch.setattr(MessagingService, "_message_text", slow_text)
    refs = [
        await phone.push(
            topic(conversation_id), "message:send", {"client_id": f"b-{i}", "text": f"n{i}"}
        )
        for i in range(burst)
    ]
    leave = await phone.push(topic(conversation_id), "phx_leave", {})
    await phone.reply(leave)
    assert all(phone.answered(ref) for ref in refs)  # before the leave's reply
    replies = [await phone.reply(ref) for ref in refs]
    seqs = [frame["payload"]["response"]["message"]["seq"] for frame in replies]
    texts = [frame["payload"]["response"]["message"]["text"] for frame in replies]
    assert seqs == list(range(1, burst + 1)) and texts == [f"n{i}" for i in range(burst)]
    assert most == burst  # all checked at once
    pushed = [(await phone.expect("message:new"))["payload"]["seq"] for _ in range(burst)]
    assert pushed == seqs  # pushed in order too
    await phone.close()
