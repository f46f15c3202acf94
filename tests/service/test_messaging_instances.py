"""Two messaging instances on the local PostgreSQL and Redis (pub/sub, presence, cache),
each under its own real uvicorn server: A runs every service, B messaging alone. Two
users with two devices each, one device of each on each instance: messages, edits,
deletes, receipts, typing and presence reach every device whichever instance it is on;
a device that reconnects on the other instance catches up exactly."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.service.messaging_sockets import (
    direct,
    error_of,
    joined_device,
    messaging_settings,
    open_device,
    rest,
    rest_send,
    topic,
)
from tests.service.social_harness import Client, two_instances
from tests.support.messaging_client import Device, diff, presence

pytestmark = [pytest.mark.redis, pytest.mark.postgres, pytest.mark.timeout(90)]


@dataclass
class Pair:
    a: str  # every service (auth, social for tickets, messaging)
    b: str  # the messaging service alone
    http: httpx.AsyncClient

    async def user(self) -> Client:
        return await Client.register(self.a, self.http)


@pytest.fixture
async def pair(
    tmp_path: Path, postgres_url: str, redis_url: str, redis_namespace: str
) -> AsyncIterator[Pair]:
    settings = messaging_settings(tmp_path, database_url=postgres_url)
    async with two_instances(settings, redis_url, redis_namespace, "messaging") as (
        a,
        b,
        http,
    ):
        yield Pair(a, b, http)


@dataclass
class Devices:
    alice_a: Device
    alice_b: Device
    bob_a: Device
    bob_b: Device

    @property
    def all(self) -> tuple[Device, ...]:
        return (self.alice_a, self.alice_b, self.bob_a, self.bob_b)

    async def close(self) -> None:
        for device in self.all:
            await device.close()


async def two_by_two(pair: Pair, alice: Client, bob: Client, conversation_id: str) -> Devices:
    """Each user on each instance, every device in its user topic and the conversation."""
    return Devices(
        await joined_device(alice, conversation_id, base_url=pair.a),
        await joined_device(alice, conversation_id, base_url=pair.b),
        await joined_device(bob, conversation_id, base_url=pair.a),
        await joined_device(bob, conversation_id, base_url=pair.b),
    )


async def test_every_event_reaches_every_device_on_both_instances(pair: Pair) -> None:
    alice, bob = await pair.user(), await pair.user()
    conversation_id = await direct(alice, bob)
    conv = topic(conversation_id)
    devices = await two_by_two(pair, alice, bob, conversation_id)

    sent = await devices.alice_b.request(conv, "message:send", {"client_id": "x-1", "text": "hi"})
    # The same client id on the other instance: the stored message, pushed once.
    again = await devices.alice_a.request(conv, "message:send", {"client_id": "x-1", "text": "hi"})
    assert again == {"message": sent["message"], "created": False}
    message_id = sent["message"]["id"]
    edited = await devices.alice_a.request(
        conv, "message:edit", {"message_id": message_id, "text": "hello"}
    )
    deleted = await devices.alice_b.request(conv, "message:delete", {"message_id": message_id})
    receipt = await devices.bob_a.request(conv, "read", {"seq": 1})
    for device in devices.all:
        assert (await device.expect("message:new"))["payload"] == sent["message"]
        assert (await device.expect("message:updated"))["payload"] == edited["message"]
        assert (await device.expect("message:deleted"))["payload"] == deleted["message"]
        assert (await device.expect("receipt"))["payload"] == receipt
        await device.expect_none("message:new", within=0.05)
    await devices.close()


async def test_typing_and_presence_cross_instances(pair: Pair) -> None:
    alice, bob = await pair.user(), await pair.user()
    conversation_id = await direct(alice, bob)
    conv = topic(conversation_id)
    alice_a = await joined_device(alice, conversation_id, base_url=pair.a)
    bob_b = await open_device(bob, pair.b)
    await bob_b.join(conv)
    state = await bob_b.expect("presence_state", topic=conv)
    assert state["payload"] == presence(alice.user_id, bob.user_id)
    changed = await alice_a.expect("presence_diff", topic=conv)
    assert changed["payload"] == diff(joins=[bob.user_id])
    contacts = await alice_a.expect("presence_diff", topic=f"user:{alice.user_id}")
    assert contacts["payload"] == diff(joins=[bob.user_id])
    bob_a = await joined_device(bob, conversation_id, base_url=pair.a)  # no new join
    alice_b = await joined_device(alice, conversation_id, base_url=pair.b)

    await alice_a.request(conv, "typing:start", {})
    for device in (bob_a, bob_b):
        typing = await device.expect("typing", topic=conv)
        assert typing["payload"]["user_id"] == alice.user_id and typing["payload"]["typing"]
    # Stopped by itself after messaging_typing_ttl (0.5 s), on each instance.
    for device in (bob_a, bob_b):
        stopped = await device.expect("typing", topic=conv, timeout=2)
        assert stopped["payload"]["typing"] is False
    await alice_b.expect_none("typing", within=0.1)

    await bob_b.close()
    await alice_a.expect_none("presence_diff", topic=conv, within=0.3)  # bob_a is still in
    await bob_a.close()
    left = await alice_b.expect("presence_diff", topic=conv)
    assert left["payload"] == diff(leaves=[bob.user_id])
    assert (await alice_a.expect("presence_diff", topic=conv))["payload"] == left["payload"]
    await alice_a.close()
    await alice_b.close()


async def test_reconnect_on_the_other_instance_catches_up_exactly(pair: Pair) -> None:
    alice, bob = await pair.user(), await pair.user()
    mallory = await pair.user()
    conversation_id = await direct(alice, bob)
    bob_a = await joined_device(bob, conversation_id, base_url=pair.a)
    first = await rest_send(alice, conversation_id, "m0", "seen")
    await bob_a.expect("message:new")
    await bob_a.close()  # offline from here
    missed = [await rest_send(alice, conversation_id, f"m{n}", f"#{n}") for n in range(1, 4)]
    bob_b = await open_device(bob, pair.b)
    reply = await bob_b.join(
        f"user:{bob.user_id}",
        {"conversations": {conversation_id: {"last_seq": first["message"]["seq"]}}},
    )
    catchup = reply["conversations"][conversation_id]
    assert catchup["recovered"] is True
    assert [m["seq"] for m in catchup["messages"]] == [2, 3, 4]
    assert [m["id"] for m in catchup["messages"]] == [m["message"]["id"] for m in missed]
    assert reply["unread"] == {conversation_id: 4}
    # Past messaging_sync_max_messages (5): recovered false and a hint, no messages.
    for n in range(4, 8):
        await rest_send(alice, conversation_id, f"m{n}", f"#{n}")
    gap = await bob_b.join(topic(conversation_id), {"last_seq": 1})
    assert gap["recovered"] is False and gap["messages"] == [] and "hint" in gap
    listed = await rest(bob, "GET", f"/conversations/{conversation_id}/messages?after=1&limit=100")
    assert [m["seq"] for m in listed["messages"]] == list(range(2, 9))

    outsider = await open_device(mallory, pair.b)
    assert (await error_of(outsider, topic(conversation_id), "phx_join", {}))["status"] == 404
    await outsider.close()
    await bob_b.close()
