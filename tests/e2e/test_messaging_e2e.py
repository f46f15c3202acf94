"""Messaging end to end: auth, social (socket tickets) and TWO messaging instances as
separate `agora serve` processes on PostgreSQL, Redis and RabbitMQ, behind nginx
(deploy/nginx/agora.conf); messaging asks auth for users over gRPC.

Every HTTP request goes through nginx. Sockets go through nginx too, except devices
pinned to one instance (connected to its port directly) so that a user's devices are
known to be on both instances: what one instance stores or hears must reach the devices
on the other (Redis pub/sub), and what a killed instance acknowledged must be served by
the other (PostgreSQL).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from tests.e2e.messaging_deployment import (
    INSTANCES,
    TYPING_TTL,
    Messaging,
    Person,
    all_messages,
    call,
    device,
    direct_conversation,
    messaging_deployment,
    person,
    send_rest,
)
from tests.e2e.processes import bearer, wait_until
from tests.support.messaging_client import Device, Frame, diff, presence

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Messaging]:
    with messaging_deployment(tmp_path_factory.mktemp("e2e-messaging")) as messaging:
        yield messaging


@pytest.fixture
async def client(deployed: Messaging) -> AsyncIterator[httpx.AsyncClient]:
    """HTTP through nginx."""
    async with httpx.AsyncClient(base_url=deployed.gateway.url, timeout=10) as http:
        yield http


def typing_of(frames: list[Frame]) -> list[tuple[str, bool]]:
    return [(f["payload"]["user_id"], f["payload"]["typing"]) for f in frames]


def with_id(message_id: str) -> Any:
    return lambda frame: frame["payload"].get("id") == message_id


async def seen_everywhere(
    devices: list[Device], event: str, message_id: str
) -> list[dict[str, Any]]:
    """Each device gets `event` about message `message_id` on its own user topic."""
    frames = await asyncio.gather(
        *(d.expect(event, topic=d.user_topic, where=with_id(message_id)) for d in devices)
    )
    return [frame["payload"] for frame in frames]


async def receipts_everywhere(devices: list[Device], receipt: dict[str, Any]) -> None:
    """Each device gets that receipt (the reader's), on its own user topic."""

    def of_reader(frame: Frame) -> bool:
        return bool(frame["payload"].get("user_id") == receipt["user_id"])

    frames = await asyncio.gather(
        *(d.expect("receipt", topic=d.user_topic, where=of_reader) for d in devices)
    )
    assert [frame["payload"] for frame in frames] == [receipt] * len(devices)


# --- two users, two devices each, on both instances ------------------------------------------


async def test_two_users_two_devices_each_see_everything(
    deployed: Messaging, client: httpx.AsyncClient
) -> None:
    alice, bob = await person(client, "msga"), await person(client, "msgb")
    conversation = await direct_conversation(client, alice, bob)
    # One conversation per pair, whoever asks: bob gets the same one (200).
    again = await call(
        client, bob, "POST", "/api/v1/conversations", json={"kind": "direct", "user_id": alice.id}
    )
    assert again["id"] == conversation
    topic = f"conversation:{conversation}"
    since = len(deployed.access_log())

    async with contextlib.AsyncExitStack() as stack:

        async def opened(who: Person, base_ws: str, name: str) -> Device:
            return await stack.enter_async_context(await device(client, who, base_ws, name))

        # alice's two devices through nginx: least_conn puts the second one on the
        # instance without one. bob's are pinned, one on each instance.
        gateway_ws = deployed.gateway.ws_url
        a1 = await opened(alice, gateway_ws, "alice-1")
        a2 = await opened(alice, gateway_ws, "alice-2")
        for a in (a1, a2):
            joined = await a.join(a.user_topic)
            assert joined == {"conversations": {}, "unread": {conversation: 0}}, joined
            state = await a.expect("presence_state", topic=a.user_topic)
            assert state["payload"] == presence()  # bob has no device yet

        b1 = await opened(bob, deployed.instance_ws(INSTANCES[0]), "bob-1")
        # bob's first device anywhere: alice's devices see him come online.
        for a in (a1, a2):
            changed = await a.expect("presence_diff", topic=a.user_topic)
            assert changed["payload"] == diff(joins=[bob.id])
        b2 = await opened(bob, deployed.instance_ws(INSTANCES[1]), "bob-2")
        for b in (b1, b2):
            await b.join(b.user_topic)
            state = await b.expect("presence_state", topic=b.user_topic)
            assert state["payload"] == presence(alice.id)
        everyone = [a1, a2, b1, b2]

        # Presence in the conversation: per user, whichever device and instance.
        for d, present in ((a1, [alice.id]), (a2, [alice.id])):
            catchup = await d.join(topic)
            assert catchup["recovered"] is True and catchup["messages"] == [], catchup
            assert (await d.expect("presence_state", topic=topic))["payload"] == presence(*present)
        await b1.join(topic)
        both = sorted([alice.id, bob.id])
        assert (await b1.expect("presence_state", topic=topic))["payload"] == presence(*both)
        for a in (a1, a2):
            changed = await a.expect("presence_diff", topic=topic)
            assert changed["payload"] == diff(joins=[bob.id])
        await b2.join(topic)
        assert (await b2.expect("presence_state", topic=topic))["payload"] == presence(*both)

        # A message over the socket (alice, on whichever instance nginx chose).
        sent = await a1.request(
            topic, "message:send", {"client_id": "a-1", "text": "<b>salut</b> & <script>x</script>"}
        )
        first = sent["message"]
        assert sent["created"] is True and first["seq"] == 1, sent
        assert first["text"] == "salut &amp;", first  # sanitized: safe text
        for payload in await seen_everywhere(everyone, "message:new", first["id"]):
            assert payload == first

        # bob reads it over REST: a receipt on every device.
        bob_read = await call(
            client, bob, "POST", f"/api/v1/conversations/{conversation}/read", json={"seq": 1}
        )
        assert bob_read == {
            "conversation_id": conversation,
            "user_id": bob.id,
            "read_seq": 1,
            "unread": 0,
        }
        await receipts_everywhere(everyone, bob_read)

        # A message over REST (bob, through nginx).
        body = await call(
            client,
            bob,
            "POST",
            f"/api/v1/conversations/{conversation}/messages",
            json={"client_id": "b-1", "text": "coucou"},
            expect=201,
        )
        second = body["message"]
        assert (second["seq"], second["author_id"]) == (2, bob.id)
        for payload in await seen_everywhere(everyone, "message:new", second["id"]):
            assert payload == second

        # Unread counts come from server-side cursors: the same for every device.
        unread = await call(client, alice, "GET", "/api/v1/unread")
        assert unread == {"total": 1, "conversations": {conversation: 1}}, unread

        # alice reads on her second device: a receipt on every device, hers included.
        receipt = await a2.request(topic, "read", {"seq": 2})
        assert receipt == {
            "conversation_id": conversation,
            "user_id": alice.id,
            "read_seq": 2,
            "unread": 0,
        }
        await receipts_everywhere(everyone, receipt)
        assert (await call(client, alice, "GET", "/api/v1/unread"))["total"] == 0

        # An edit over REST (alice), a delete over the socket (bob).
        edited = await call(
            client,
            alice,
            "PATCH",
            f"/api/v1/conversations/{conversation}/messages/{first['id']}",
            json={"text": "salut !"},
        )
        assert edited["text"] == "salut !" and edited["version"] > second["version"]
        assert edited["edited_at"] is not None
        updates = await seen_everywhere(everyone, "message:updated", first["id"])
        assert all(payload == edited for payload in updates)
        deleted = (await b2.request(topic, "message:delete", {"message_id": second["id"]}))[
            "message"
        ]
        assert deleted["deleted"] is True and deleted["text"] is None
        assert deleted["version"] > edited["version"]
        tombstones = await seen_everywhere(everyone, "message:deleted", second["id"])
        assert all(payload == deleted for payload in tombstones)
        listed = await all_messages(client, bob, conversation)
        assert [m["id"] for m in listed] == [first["id"], second["id"]]
        assert listed == [edited, deleted]

        # Typing reaches the other member's devices (not the typist's own), and stops
        # by itself after the TTL without a refresh.
        typed_at = time.monotonic()
        assert await b1.request(topic, "typing:start", {}) == {}
        for a in (a1, a2):
            started = await a.expect("typing", topic=topic)
            assert started["payload"] == {
                "conversation_id": conversation,
                "user_id": bob.id,
                "typing": True,
            }
        for a in (a1, a2):
            stopped = await a.expect("typing", topic=topic, timeout=TYPING_TTL + 4)
            assert stopped["payload"]["typing"] is False
        assert time.monotonic() - typed_at >= TYPING_TTL * 0.9  # expired, not stopped at once
        await a2.request(topic, "typing:start", {})
        await a2.request(topic, "typing:stop", {})
        for b in (b1, b2):
            await b.expect("typing", topic=topic, where=lambda f: f["payload"]["typing"] is False)
        for d, other in ((a1, bob), (a2, bob), (b1, alice), (b2, alice)):
            assert typing_of(d.pushes("typing", topic)) == [(other.id, True), (other.id, False)]

        # bob's devices leave one by one: he is gone when the last one is, once.
        await b2.close()
        await asyncio.gather(*(a.expect_none("presence_diff", within=0.5) for a in (a1, a2)))
        await b1.close()
        for a in (a1, a2):
            for where in (topic, a.user_topic):  # the conversation's and the user's
                left = await a.expect("presence_diff", topic=where)
                assert left["payload"] == diff(leaves=[bob.id])
        await asyncio.gather(*(a.expect_none("presence_diff", within=0.3) for a in (a1, a2)))
        await a1.close()
        await a2.close()

    # nginx put alice's two sockets on the two instances.
    async def logged() -> list[str] | None:
        upstreams = deployed.socket_upstreams(since)
        return upstreams if len(upstreams) >= 2 else None

    upstreams = await wait_until(logged, timeout=5, what="alice's sockets in nginx's log")
    assert sorted(upstreams) == sorted(deployed.instance_address(n) for n in INSTANCES)


# --- media, through nginx --------------------------------------------------------------------


async def test_media_message_through_nginx(deployed: Messaging, client: httpx.AsyncClient) -> None:
    """A file over nginx's 1 MiB body limit for the other routes, under the 10 MiB media
    cap, goes up through nginx; a member on the other instance hears of it and gets the
    same bytes back; a file over the cap is refused (413, JSON)."""
    ines, jules = await person(client, "msgi"), await person(client, "msgj")
    conversation = await direct_conversation(client, ines, jules)
    picture = PNG_SIGNATURE + os.urandom(3 * 1024 * 1024)

    async with await device(client, jules, deployed.instance_ws(INSTANCES[1]), "jules") as watcher:
        await watcher.join(watcher.user_topic)
        uploaded = await client.post(
            "/api/v1/media",
            files={"file": ("photo.png", picture, "image/png")},
            headers=bearer(ines.token),
        )
        assert uploaded.status_code == 201, uploaded.text
        media = uploaded.json()
        assert (media["size"], media["content_type"]) == (len(picture), "image/png")

        sent = await call(
            client, ines, "POST", f"/api/v1/conversations/{conversation}/messages",
            json={"client_id": "photo", "media_id": media["id"]}, expect=201,
        )  # fmt: skip
        message = sent["message"]
        assert (message["kind"], message["media"]) == ("media", media)
        heard = await watcher.expect("message:new", topic=watcher.user_topic)
        assert heard["payload"] == message

        fetched = await client.get(media["url"], headers=bearer(jules.token))
        assert fetched.status_code == 200
        assert fetched.headers["content-type"] == "image/png"
        assert fetched.content == picture

    too_big = PNG_SIGNATURE + bytes(10 * 1024 * 1024)
    refused = await client.post(
        "/api/v1/media",
        files={"file": ("big.png", too_big, "image/png")},
        headers=bearer(ines.token),
    )
    assert refused.status_code == 413, refused.text
    assert "error" in refused.json()


# --- a device offline for 100 messages ------------------------------------------------------


async def test_offline_device_catches_up_exactly(
    deployed: Messaging, client: httpx.AsyncClient
) -> None:
    carol, dave = await person(client, "msgc"), await person(client, "msgd")
    conversation = await direct_conversation(client, carol, dave)
    topic = f"conversation:{conversation}"
    dave_topic = f"user:{dave.id}"

    async with contextlib.AsyncExitStack() as stack:
        online = await stack.enter_async_context(
            await device(client, dave, deployed.instance_ws(INSTANCES[0]), "dave-online")
        )
        await online.join(dave_topic)
        away = await stack.enter_async_context(
            await device(client, dave, deployed.gateway.ws_url, "dave-away")
        )
        await away.join(dave_topic)
        first = (await call(
            client, carol, "POST", f"/api/v1/conversations/{conversation}/messages",
            json={"client_id": "c-0", "text": "avant"}, expect=201,
        ))["message"]  # fmt: skip
        known = (await away.expect("message:new", topic=dave_topic))["payload"]
        assert known == first
        await away.close()

        # 100 messages while that device is away, over REST through nginx (both
        # instances), eight at a time.
        gate = asyncio.Semaphore(8)

        async def one(index: int) -> dict[str, Any]:
            async with gate:
                answer = await send_rest(client, carol, conversation, f"c-{index}", f"n°{index}")
            assert answer.status_code == 201, answer.text
            message: dict[str, Any] = answer.json()["message"]
            return message

        sent = await asyncio.gather(*(one(i) for i in range(1, 101)))
        by_seq = sorted(sent, key=lambda m: m["seq"])
        assert [m["seq"] for m in by_seq] == list(range(2, 102))  # no gap, no duplicate
        # The device that stayed saw them all live.
        live = [
            (await online.expect("message:new", topic=dave_topic, where=with_id(m["id"])))[
                "payload"
            ]
            for m in by_seq
        ]
        assert live == by_seq

        # Back, on the other instance: exactly what it missed, in order.
        back = await stack.enter_async_context(
            await device(client, dave, deployed.instance_ws(INSTANCES[1]), "dave-back")
        )
        catchup = await back.join(topic, {"last_seq": known["seq"]})
        assert catchup["recovered"] is True, catchup
        assert catchup["messages"] == by_seq
        assert (catchup["last_seq"], catchup["unread"]) == (101, 101)

        # Through the user topic too, with the version it had: an edit made while it
        # was away comes after the new messages (ascending version).
        edited = await call(
            client, carol, "PATCH",
            f"/api/v1/conversations/{conversation}/messages/{first['id']}",
            json={"text": "après"},
        )  # fmt: skip
        joined = await back.join(
            dave_topic,
            {"conversations": {conversation: {"last_seq": 1, "last_version": known["version"]}}},
        )
        replay = joined["conversations"][conversation]
        assert replay["recovered"] is True
        assert replay["messages"] == [*by_seq, edited]
        assert joined["unread"] == {conversation: 101}
        assert (await call(client, dave, "GET", "/api/v1/unread"))["total"] == 101


# --- the same message sent twice ---------------------------------------------------------------


async def test_duplicate_sends_store_one_message(
    deployed: Messaging, client: httpx.AsyncClient
) -> None:
    erin, frank = await person(client, "msge"), await person(client, "msgf")
    conversation = await direct_conversation(client, erin, frank)
    topic = f"conversation:{conversation}"
    path = f"/api/v1/conversations/{conversation}/messages"

    async with contextlib.AsyncExitStack() as stack:
        sender = await stack.enter_async_context(
            await device(client, erin, deployed.instance_ws(INSTANCES[0]), "erin")
        )
        await sender.join(topic)
        watcher = await stack.enter_async_context(
            await device(client, frank, deployed.gateway.ws_url, "frank")
        )
        await watcher.join(f"user:{frank.id}")

        # Over REST, through nginx: 201 then 200 with the very same message.
        once = await call(client, erin, "POST", path, json={"client_id": "r-1", "text": "x"},
                          expect=201)  # fmt: skip
        twice = await call(client, erin, "POST", path, json={"client_id": "r-1", "text": "x"})
        assert once["created"] is True and twice["created"] is False
        assert twice["message"] == once["message"]

        # Over the socket.
        first = await sender.request(topic, "message:send", {"client_id": "s-1", "text": "y"})
        second = await sender.request(topic, "message:send", {"client_id": "s-1", "text": "y"})
        assert (first["created"], second["created"]) == (True, False)
        assert second["message"] == first["message"]

        # Across the two doors: the client id is the message, whichever way it came.
        crossed = await call(client, erin, "POST", path, json={"client_id": "s-1", "text": "y"})
        assert crossed["message"] == first["message"]
        crossed = await sender.request(topic, "message:send", {"client_id": "r-1", "text": "x"})
        assert crossed == {"message": once["message"], "created": False}

        # At the same moment on both instances (REST on one, the socket on the other)
        # and through nginx: one is stored, every answer is that one.
        other = deployed.instance_url(INSTANCES[1])
        async with httpx.AsyncClient(base_url=other, timeout=10) as direct:
            answers = await asyncio.gather(
                send_rest(direct, erin, conversation, "race", "z"),
                send_rest(client, erin, conversation, "race", "z"),
                sender.request(topic, "message:send", {"client_id": "race", "text": "z"}),
                send_rest(direct, erin, conversation, "race", "z"),
            )
        rest = [a for a in answers if isinstance(a, httpx.Response)]
        for answer in rest:
            assert answer.status_code == (201 if answer.json()["created"] else 200), answer.text
        results = [a.json() for a in rest] + [answers[2]]
        assert len({r["message"]["id"] for r in results}) == 1, results
        assert sum(r["created"] for r in results) == 1, results

        listed = await all_messages(client, frank, conversation)
        assert [(m["seq"], m["client_id"]) for m in listed] == [(1, "r-1"), (2, "s-1"), (3, "race")]
        # frank's device was told of each message once.
        await watcher.expect("message:new", where=with_id(listed[-1]["id"]))
        await asyncio.sleep(0.3)
        told = [f["payload"]["client_id"] for f in watcher.pushes("message:new")]
        assert told == ["r-1", "s-1", "race"]


# --- an instance killed mid-traffic ------------------------------------------------------------


async def test_killed_instance_loses_no_acknowledged_message(
    deployed: Messaging, client: httpx.AsyncClient
) -> None:
    gina, hank = await person(client, "msgg"), await person(client, "msgh")
    conversation = await direct_conversation(client, gina, hank)
    topic = f"conversation:{conversation}"
    victim, survivor = INSTANCES[1], INSTANCES[0]
    acknowledged: dict[str, dict[str, Any]] = {}  # client id -> the message as answered
    counter = itertools.count()
    killed = asyncio.Event()
    served_after_kill: list[str] = []

    def remember(message: dict[str, Any]) -> None:
        acknowledged[message["client_id"]] = message

    async def over_socket(sender: Device) -> None:
        while not sender.closed.is_set():
            client_id = f"sock-{next(counter)}"
            try:
                reply = await sender.request(
                    topic, "message:send", {"client_id": client_id, "text": client_id}, timeout=3
                )
            except ConnectionError:
                if killed.is_set():
                    return
                raise
            remember(reply["message"])

    async def over_rest(http: httpx.AsyncClient, name: str, after_kill: int) -> None:
        sent_after = 0
        while sent_after < after_kill:
            client_id = f"{name}-{next(counter)}"
            try:
                answer = await send_rest(http, gina, conversation, client_id, client_id)
            except httpx.TransportError:
                if killed.is_set():
                    return
                raise
            if answer.status_code in (200, 201):
                remember(answer.json()["message"])
                if killed.is_set():
                    served_after_kill.append(client_id)
            else:  # nginx's 502 for a request cut by the kill: not acknowledged
                assert killed.is_set() and answer.status_code == 502, answer.text
            if killed.is_set():
                sent_after += 1

    async def kill_when_busy() -> None:
        async def busy() -> bool:
            return len(acknowledged) >= 40

        await wait_until(busy, timeout=20, what="40 acknowledged messages")
        deployed.gateway.instances[victim].kill()  # SIGKILL, mid-traffic
        killed.set()

    async with contextlib.AsyncExitStack() as stack:
        sender = await stack.enter_async_context(
            await device(client, gina, deployed.instance_ws(victim), "gina-on-victim")
        )
        await sender.join(topic)
        direct = await stack.enter_async_context(
            httpx.AsyncClient(base_url=deployed.instance_url(victim), timeout=10)
        )
        await asyncio.wait_for(
            asyncio.gather(
                over_socket(sender),
                over_rest(direct, "direct", after_kill=1),
                over_rest(client, "nginx", after_kill=10),
                kill_when_busy(),
            ),
            timeout=40,
        )
    assert sender.closed.is_set()
    assert any(k.startswith("sock-") for k in acknowledged)
    assert any(k.startswith("direct-") for k in acknowledged)
    assert served_after_kill, "nginx served no send after the kill"

    # Everything acknowledged is stored, and served by the instance that lived.
    async with httpx.AsyncClient(base_url=deployed.instance_url(survivor), timeout=10) as alive:
        listed = await all_messages(alive, hank, conversation)
    assert [m["seq"] for m in listed] == list(range(1, len(listed) + 1))
    stored = {m["client_id"]: m for m in listed}
    assert len(stored) == len(listed), "a client id stored twice"
    missing = sorted(set(acknowledged) - set(stored))
    assert not missing, f"acknowledged but lost: {missing}"
    for client_id, message in acknowledged.items():
        assert stored[client_id] == message
    # Through nginx as well (it no longer reaches the dead instance).
    assert await all_messages(client, hank, conversation) == listed

    # The killed instance comes back on its port and serves the same messages.
    deployed.gateway.instances[victim].start()
    async with httpx.AsyncClient(base_url=deployed.instance_url(victim), timeout=10) as again:
        assert await all_messages(again, hank, conversation) == listed
