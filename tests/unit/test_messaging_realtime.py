"""The messaging socket's real-time pieces, each on its own over the embedded pub/sub and
presence: rooms, typing that stops by itself, presence per conversation, the fan-out of
events to joined devices, presence scopes and per-watcher presence frames."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest

from agora.adapters.presence_memory import MemoryPresence
from agora.adapters.pubsub_memory import MemoryPubSub
from agora.realtime.channels import ChannelRouter
from agora.realtime.codes import SLOW_CONSUMER
from agora.realtime.connection import Connection
from agora.realtime.hub import Hub
from agora.realtime.presence import PresenceTracker
from agora.realtime.rooms import Rooms
from agora.realtime.scoped_presence import ScopedPresence
from agora.services.messaging.socket.fanout import MessagingFanout
from agora.services.messaging.socket.room_presence import RoomPresence
from agora.services.messaging.socket.typing_indicators import TypingIndicators
from agora.services.messaging.socket.wiring import user_presence_frame
from tests.unit.realtime_fakes import Clock, Socket, connection, sent

TOPIC = "conversation:" + "a" * 32


def frames(conn: Connection) -> list[Any]:
    """What `conn` has sent since the last call, taken (let its writer run first)."""
    return sent(conn)


async def settle() -> None:
    await asyncio.sleep(0.02)  # the memory pub/sub delivers on its own task


@pytest.fixture
async def router() -> AsyncIterator[ChannelRouter]:
    pubsub = MemoryPubSub()
    router = ChannelRouter(pubsub)
    yield router
    await pubsub.close()


async def started_rooms(router: ChannelRouter) -> Rooms:
    rooms = Rooms(router, "t:")
    await rooms.start()
    await router.start()
    return rooms


# --- rooms -------------------------------------------------------------------------------


async def test_room_broadcast_reaches_joined_sockets_except_the_user(router: ChannelRouter) -> None:
    rooms = await started_rooms(router)
    alice, bob, bob2, carol = [
        await connection(Socket(), user_id) for user_id in ("a", "b", "b", "c")
    ]
    for conn in (alice, bob, bob2):
        assert await rooms.join(TOPIC, conn)
    assert not await rooms.join(TOPIC, alice)  # twice: nothing changes
    assert router.subscribers(rooms.channel(TOPIC)) == 3
    await rooms.broadcast(TOPIC, '{"n":1}')
    await rooms.broadcast(TOPIC, '{"n":2}', except_user="b")
    await settle()
    assert frames(alice) == [{"n": 1}, {"n": 2}]
    assert frames(bob) == frames(bob2) == [{"n": 1}]
    assert frames(carol) == []

    assert await rooms.leave(TOPIC, bob) and not await rooms.leave(TOPIC, bob)
    assert await rooms.leave_all(alice) == [TOPIC]
    await rooms.broadcast(TOPIC, '{"n":3}')
    await settle()
    assert frames(alice) == frames(bob) == [] and frames(bob2) == [{"n": 3}]
    await rooms.leave_all(bob2)
    assert router.subscribers(rooms.channel(TOPIC)) == 0
    assert rooms.members == {} and rooms.joined == {}


async def test_a_held_join_gets_its_frames_after_release(router: ChannelRouter) -> None:
    rooms = await started_rooms(router)
    conn = await connection(Socket(), "a")
    await rooms.join(TOPIC, conn, hold=True)
    await rooms.broadcast(TOPIC, '{"n":1}')
    await settle()
    assert frames(conn) == []
    conn.send('{"reply":true}')
    rooms.release(TOPIC, conn)
    await rooms.broadcast(TOPIC, '{"n":2}')
    await settle()
    assert frames(conn) == [{"reply": True}, {"n": 1}, {"n": 2}]


async def test_held_frames_are_bounded_like_the_queue(router: ChannelRouter) -> None:
    rooms = await started_rooms(router)
    conn = await connection(Socket(), "a", limit=100)
    await rooms.join(TOPIC, conn, hold=True)
    await rooms.broadcast(TOPIC, '"' + "x" * 60 + '"')
    await settle()
    assert conn.closing is None
    await rooms.broadcast(TOPIC, '"' + "y" * 60 + '"')
    await settle()
    assert conn.closing is SLOW_CONSUMER
    rooms.release(TOPIC, conn)
    assert frames(conn) == []


async def test_room_events_go_to_their_handlers_on_topics_with_sockets(
    router: ChannelRouter,
) -> None:
    rooms = await started_rooms(router)
    seen: list[tuple[str, dict[str, Any]]] = []
    rooms.on("ping", lambda topic, event: seen.append((topic, event)))
    rooms.on("boom", lambda topic, event: 1 / 0)  # a broken handler harms nobody
    rooms.on("boom", lambda topic, event: seen.append((topic, event)))
    await rooms.emit(TOPIC, {"kind": "ping"})  # no socket here: not even subscribed
    conn = await connection(Socket(), "a")
    await rooms.join(TOPIC, conn)
    await rooms.emit(TOPIC, {"kind": "ping", "x": 1})
    await rooms.emit(TOPIC, {"kind": "boom"})
    await router.pubsub.publish(rooms.channel(TOPIC), b"Enot json")
    await router.pubsub.publish(rooms.channel(TOPIC), b"?what")
    await settle()
    assert seen == [(TOPIC, {"kind": "ping", "x": 1}), (TOPIC, {"kind": "boom"})]
    with pytest.raises(ValueError, match="an event has a kind"):
        await rooms.emit(TOPIC, {"no": "kind"})
    with pytest.raises(ValueError, match="a user id cannot hold a newline"):
        await rooms.broadcast(TOPIC, "{}", except_user="a\nb")


# --- typing ------------------------------------------------------------------------------


async def test_typing_reaches_the_others_and_stops_by_itself(router: ChannelRouter) -> None:
    rooms = await started_rooms(router)
    typing = TypingIndicators(rooms, ttl=0.15)
    await typing.start()
    typist, typist_laptop, reader = [
        await connection(Socket(), user_id) for user_id in ("a", "a", "b")
    ]
    for conn in (typist, typist_laptop, reader):
        await rooms.join(TOPIC, conn)
    await typing.started(TOPIC, typist)
    await settle()
    start = {"conversation_id": "a" * 32, "user_id": "a", "typing": True}
    assert [f["payload"] for f in frames(reader)] == [start]
    assert frames(typist) == frames(typist_laptop) == []  # not to the typist's devices
    await asyncio.sleep(0.1)
    await typing.started(TOPIC, typist)  # a refresh pushes the stop back
    await asyncio.sleep(0.1)
    assert [f["payload"]["typing"] for f in frames(reader)] == [True]
    await asyncio.sleep(0.15)
    stop = frames(reader)
    assert stop == [
        {"topic": TOPIC, "event": "typing", "payload": {**start, "typing": False}, "ref": None}
    ]
    assert typing.timers == {}


async def test_typing_stop_is_sent_once(router: ChannelRouter) -> None:
    rooms = await started_rooms(router)
    typing = TypingIndicators(rooms, ttl=0.1)
    await typing.start()
    typist, reader = await connection(Socket(), "a"), await connection(Socket(), "b")
    await rooms.join(TOPIC, typist)
    await rooms.join(TOPIC, reader)
    await typing.started(TOPIC, typist)
    await typing.stopped(TOPIC, typist)
    await typing.stopped(TOPIC, typist)  # not typing any more: nothing to say
    await asyncio.sleep(0.2)  # and no expiry after an explicit stop
    assert [f["payload"]["typing"] for f in frames(reader)] == [True, False]
    await typing.started(TOPIC, typist)
    await typing.gone(typist)  # the typist's socket closes
    await settle()
    assert [f["payload"]["typing"] for f in frames(reader)] == [True, False]
    assert typing.typing == {}
    await typing.stop()


# --- presence in a conversation ---------------------------------------------------------------


async def room_presence(router: ChannelRouter, presence: MemoryPresence) -> RoomPresence:
    rooms = await started_rooms(router)
    tracker = RoomPresence(ScopedPresence(presence, "room:"), rooms, ttl=5, recheck_interval=60)
    await tracker.start()
    return tracker


async def enter(tracker: RoomPresence, conn: Connection) -> set[str]:
    await tracker.rooms.join(TOPIC, conn, hold=True)
    online = await tracker.join(TOPIC, conn, ["a", "b", "c"])
    tracker.rooms.release(TOPIC, conn)
    await settle()
    return online


async def exit_(tracker: RoomPresence, conn: Connection) -> None:
    await tracker.leave(TOPIC, conn)
    await tracker.rooms.leave(TOPIC, conn)
    tracker.forget(TOPIC)
    await settle()


def diffs(conn: Connection) -> list[tuple[list[str], list[str]]]:
    """Who each presence_diff says joined and left (its entries' keys, in Phoenix's shape)."""
    return [
        (sorted(f["payload"]["joins"]), sorted(f["payload"]["leaves"]))
        for f in frames(conn)
        if f["event"] == "presence_diff"
    ]


async def test_conversation_presence_is_per_user_across_devices(router: ChannelRouter) -> None:
    tracker = await room_presence(router, MemoryPresence())
    alice, bob_phone, bob_laptop = [
        await connection(Socket(), user_id) for user_id in ("a", "b", "b")
    ]
    assert await enter(tracker, alice) == {"a"}
    assert diffs(alice) == []
    assert await enter(tracker, bob_phone) == {"a", "b"}
    assert diffs(alice) == [(["b"], [])]
    assert await enter(tracker, bob_laptop) == {"a", "b"}  # a second device: no join
    await exit_(tracker, bob_phone)  # one device left: no leave
    assert diffs(alice) == [] and diffs(bob_laptop) == []
    await exit_(tracker, bob_laptop)
    assert diffs(alice) == [([], ["b"])]
    await exit_(tracker, alice)
    assert tracker.known == {} and tracker.members == {}
    await tracker.stop()


async def test_conversation_presence_recheck_finds_expired_entries(router: ChannelRouter) -> None:
    clock = Clock()
    presence = MemoryPresence(clock)
    tracker = await room_presence(router, presence)
    # A device of "c" on an instance that died: its entry only expires.
    await presence.join(f"room:{TOPIC}:c", "dead-device", 5)
    alice = await connection(Socket(), "a")
    assert await enter(tracker, alice) == {"a", "c"}
    clock.now += 4
    await tracker.refresh()  # alice's instance is alive: her entry is pushed back
    clock.now += 2
    await tracker.recheck()
    assert diffs(alice) == [([], ["c"])]
    await tracker.recheck()
    assert diffs(alice) == []
    await tracker.stop()


async def test_removed_members_are_not_asked_about(router: ChannelRouter) -> None:
    tracker = await room_presence(router, MemoryPresence())
    alice = await connection(Socket(), "a")
    await enter(tracker, alice)
    await tracker.rooms.emit(TOPIC, {"kind": "members", "members": ["a", "b"]})
    await settle()
    assert tracker.members[TOPIC] == ("a", "b")
    await tracker.stop()


# --- fan-out of messaging events ----------------------------------------------------------


async def test_fanout_reaches_devices_that_joined_their_user_topic(
    router: ChannelRouter,
) -> None:
    presence = MemoryPresence()
    hub = Hub(router, "t:messaging:user:")
    tracker = PresenceTracker(
        ScopedPresence(presence, "messaging:"),
        router,
        hub,
        channel_prefix="t:messaging:presence:",
        ttl=5,
        recheck_interval=60,
    )
    fanout = MessagingFanout(hub, tracker)
    await fanout.start()
    await router.start()
    joined, not_joined, held = [await connection(Socket(), "7") for _ in range(3)]
    for conn in (joined, not_joined, held):
        await hub.add(conn)
        await tracker.join(conn)
    fanout.join(joined)
    fanout.join(held, hold=True)
    await fanout.publish(["7", "7", "8"], "message:new", {"id": "m1", "text": "é <b>"})
    await settle()
    expected = {
        "topic": "user:7",
        "event": "message:new",
        "payload": {"id": "m1", "text": "é <b>"},
        "ref": None,
    }
    assert frames(joined) == [expected]  # once, though the user was named twice
    assert frames(not_joined) == [] and frames(held) == []
    fanout.release(held)
    assert frames(held) == [expected]
    assert await fanout.online(["7", "8"]) == {"7"}
    # A social socket of user 8 does not make them online in messaging.
    await presence.join("8", "social-device", 5)
    assert await fanout.online(["8"]) == set()
    fanout.leave(joined)
    await fanout.publish(["7"], "receipt", {})
    await settle()
    assert frames(joined) == []


async def test_events_published_together_reach_a_device_in_one_write(
    router: ChannelRouter,
) -> None:
    """A batch of sends queues its pushes together: one pub/sub call, read in one turn,
    and each device gets them in one write (`Connection.send(soon=True)`), in order."""
    hub = Hub(router, "t:messaging:user:")
    tracker = PresenceTracker(
        ScopedPresence(MemoryPresence(), "messaging:"), router, hub,
        channel_prefix="t:messaging:presence:", ttl=5, recheck_interval=60,
    )  # fmt: skip
    fanout = MessagingFanout(hub, tracker)
    await fanout.start()
    await router.start()
    sockets = [Socket(direct=True) for _ in range(2)]
    for socket, user in zip(sockets, ("7", "8"), strict=True):
        conn = await connection(socket, user)
        await hub.add(conn)
        fanout.join(conn)
    for n in range(3):  # queued in one turn, as `MessagingService._store_and_push` does
        await fanout.publish(["7", "8"], "message:new", {"seq": n + 1})
    await settle()
    for socket in sockets:
        assert len(socket.batches) == 1  # one write for the three
        assert [text["payload"]["seq"] for text in socket.texts()] == [1, 2, 3]


async def test_user_presence_frames_are_built_per_watching_user(router: ChannelRouter) -> None:
    hub = Hub(router, "t:user:")
    tracker = PresenceTracker(
        MemoryPresence(),
        router,
        hub,
        channel_prefix="t:presence:",
        ttl=5,
        recheck_interval=60,
        watcher_frame=user_presence_frame,
    )
    await tracker.start()
    await router.start()
    watchers = [await connection(Socket(), user_id) for user_id in ("w", "w", "v")]
    for watcher in watchers:
        await tracker.watch(watcher, ["b"])
    await tracker.join(await connection(Socket(), "b"))
    await settle()
    assert [frames(w) for w in watchers] == [
        [
            {
                "topic": f"user:{who}",
                "event": "presence_diff",
                "payload": {"joins": {"b": {"metas": [{"phx_ref": "b"}]}}, "leaves": {}},
                "ref": None,
            }
        ]
        for who in ("w", "w", "v")
    ]
    await tracker.stop()


class RecordingPubSub(MemoryPubSub):
    """The embedded pub/sub, keeping the channel of every message published on it."""

    def __init__(self) -> None:
        super().__init__()
        self.published: list[str] = []

    async def publish(self, channel: str, message: bytes) -> None:
        self.published.append(channel)
        await super().publish(channel, message)

    async def publish_many(self, messages: Sequence[tuple[str, bytes]]) -> None:
        self.published.extend(channel for channel, _ in messages)
        await super().publish_many(messages)


async def started_fanout(pubsub: RecordingPubSub) -> tuple[Hub, MessagingFanout]:
    """A started fan-out on `pubsub`, with its hub (memory presence)."""
    router = ChannelRouter(pubsub)
    hub = Hub(router, "t:messaging:user:")
    tracker = PresenceTracker(
        MemoryPresence(), router, hub, channel_prefix="t:presence:", ttl=5, recheck_interval=60
    )
    fanout = MessagingFanout(hub, tracker)
    await fanout.start()
    await router.start()
    return hub, fanout


async def test_a_publish_is_one_pubsub_message_whatever_the_members() -> None:
    """Each instance reads the one message and builds each local member's frame."""
    pubsub = RecordingPubSub()
    hub, fanout = await started_fanout(pubsub)
    members = [await connection(Socket(), user_id) for user_id in ("a", "b", "c", "c")]
    for conn in members:
        await hub.add(conn)
        fanout.join(conn)
    await fanout.publish(["a", "b", "c", "elsewhere"], "message:new", {"seq": 1})
    await settle()
    assert pubsub.published == ["t:messaging:user:*"]
    assert [frames(conn) for conn in members] == [
        [{"topic": f"user:{user}", "event": "message:new", "payload": {"seq": 1}, "ref": None}]
        for user in ("a", "b", "c", "c")
    ]
    # A frame published on one user's channel (as earlier versions do) still reaches them.
    frame = b'{"topic":"user:b","event":"e","payload":{},"ref":null}'
    await pubsub.publish(hub.channel("b"), frame)
    await settle()
    assert [len(frames(conn)) for conn in members] == [0, 1, 0, 0]
    await fanout.stop()
    await pubsub.close()


class SlowPubSub(RecordingPubSub):
    """Each call waits for `gate`, counting the calls: a Redis round trip in flight."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.calls = 0

    async def publish(self, channel: str, message: bytes) -> None:
        self.calls += 1
        await self.gate.wait()
        await super().publish(channel, message)

    async def publish_many(self, messages: Sequence[tuple[str, bytes]]) -> None:
        self.calls += 1
        await self.gate.wait()
        await super().publish_many(messages)


async def test_publishes_are_queued_in_order_and_sent_together() -> None:
    """A publish returns once queued; what queues while one is sent goes out in one call,
    in order; a conversation:updated waits for its own send; stop sends what is left."""
    pubsub = SlowPubSub()
    hub, fanout = await started_fanout(pubsub)
    device = await connection(Socket(), "a")
    await hub.add(device)
    fanout.join(device)
    for seq in range(1, 6):  # none of them waits for the pub/sub
        await asyncio.wait_for(fanout.publish(["a"], "message:new", {"seq": seq}), 1)
    updated = asyncio.create_task(fanout.publish(["a"], "conversation:updated", {"id": "c"}))
    await asyncio.sleep(0.02)
    assert not updated.done()  # waits until it is sent
    assert pubsub.calls == 1  # the first event alone; the others wait behind it
    pubsub.gate.set()
    await asyncio.wait_for(updated, 1)
    await settle()
    assert pubsub.calls == 2  # the five others in one publish_many
    pushed = frames(device)
    assert [f["payload"].get("seq") for f in pushed] == [1, 2, 3, 4, 5, None]
    assert pushed[-1]["event"] == "conversation:updated"
    pubsub.gate.clear()
    await fanout.publish(["a"], "message:new", {"seq": 6})
    stopping = asyncio.create_task(fanout.stop())
    await asyncio.sleep(0.02)
    assert not stopping.done()  # the stop sends what is queued first
    pubsub.gate.set()
    await asyncio.wait_for(stopping, 1)
    await settle()
    assert [f["payload"]["seq"] for f in frames(device)] == [6]
    await pubsub.close()
