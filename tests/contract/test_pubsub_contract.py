"""The PubSub port's contract, run against both backends: MemoryPubSub and RedisPubSub.

The sockets fan chat messages and presence out through this port; whether a deployment
runs one embedded process or several instances on Redis, a subscriber must see the same
thing. Negative checks ("not delivered") use a fence: a message published afterwards on
another subscribed channel; once it arrives, anything published before it would have.
The Redis-only part covers what one process cannot show: other instances, the exact
channel names, and the subscription surviving a lost connection.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import redis.asyncio as aioredis

from agora.adapters import pubsub_redis as redis_pubsub
from agora.adapters.pubsub_memory import MemoryPubSub
from agora.adapters.pubsub_redis import RedisPubSub
from agora.core.settings import Settings
from agora.ports.pubsub import MessageHandler, PubSub, PubSubUnavailable
from agora.runtime.backends import build_pubsub
from tests.contract.redis_proxy import forwarding_to, tcp_server

DEADLINE = 3.0  # seconds to wait for a delivery that must come


class Inbox:
    """A handler that records every delivery; `boom` makes it raise after recording."""

    def __init__(self) -> None:
        self.received: list[tuple[str, bytes]] = []

    async def __call__(self, channel: str, message: bytes) -> None:
        self.received.append((channel, message))
        if message == b"boom":
            raise RuntimeError("a handler bug")

    def on(self, channel: str) -> list[bytes]:
        return [message for name, message in self.received if name == channel]

    async def wait_for(self, channel: str, message: bytes, timeout: float = DEADLINE) -> None:
        deadline = time.monotonic() + timeout
        while (channel, message) not in self.received:
            if time.monotonic() > deadline:
                raise AssertionError(f"{message!r} never arrived on {channel}: {self.received}")
            await asyncio.sleep(0.005)


async def fence(pubsub: PubSub, inbox: Inbox) -> None:
    """Returns once everything published before it has been handed to `inbox`."""
    token = uuid.uuid4().hex.encode()
    await pubsub.subscribe("fence")
    await pubsub.publish("fence", token)
    await inbox.wait_for("fence", token)


Opener = Callable[[MessageHandler], Awaitable[PubSub]]


@pytest.fixture
async def open_pubsub(backend: tuple[str, str, str]) -> AsyncIterator[Opener]:
    """Opens a started instance of the backend under test, closed at the end."""
    kind, url, namespace = backend
    opened: list[PubSub] = []

    async def open_started(handler: MessageHandler) -> PubSub:
        pubsub: PubSub = (
            MemoryPubSub() if kind == "memory" else RedisPubSub(url, namespace=namespace)
        )
        opened.append(pubsub)
        await pubsub.start(handler)
        return pubsub

    yield open_started
    for pubsub in opened:
        await pubsub.close()


# --- both backends -----------------------------------------------------------------


async def test_delivered_on_subscribed_channels_only(open_pubsub: Opener) -> None:
    inbox = Inbox()
    pubsub = await open_pubsub(inbox)
    await pubsub.subscribe("user:1", "user:2")
    await pubsub.publish("user:1", b"\x00one\xff")  # bytes, not text
    await pubsub.publish("user:3", b"nobody listens")
    await pubsub.publish("user:2", b"two")
    await fence(pubsub, inbox)
    assert inbox.on("user:1") == [b"\x00one\xff"]
    assert inbox.on("user:2") == [b"two"]
    assert inbox.on("user:3") == []


async def test_a_started_instance_is_listening(open_pubsub: Opener) -> None:
    pubsub = await open_pubsub(Inbox())
    assert pubsub.listening()


async def test_channel_names_come_back_exactly(open_pubsub: Opener) -> None:
    inbox = Inbox()
    pubsub = await open_pubsub(inbox)
    names = ["user:42", "room:café ☕", "a b", "presence:*"]  # no pattern semantics
    await pubsub.subscribe(*names)
    for name in names:
        await pubsub.publish(name, name.encode())
    await pubsub.publish("presence:7", b"not matched by the star")
    await fence(pubsub, inbox)
    assert inbox.received[: len(names)] == [(name, name.encode()) for name in names]
    assert inbox.on("presence:7") == []


async def test_subscribe_before_start_is_honoured(backend: tuple[str, str, str]) -> None:
    kind, url, namespace = backend
    pubsub: PubSub = MemoryPubSub() if kind == "memory" else RedisPubSub(url, namespace=namespace)
    inbox = Inbox()
    try:
        await pubsub.subscribe("early")
        await pubsub.start(inbox)
        await pubsub.publish("early", b"heard")
        await inbox.wait_for("early", b"heard")
        with pytest.raises(RuntimeError):
            await pubsub.start(inbox)
    finally:
        await pubsub.close()


async def test_not_delivered_after_unsubscribe(open_pubsub: Opener) -> None:
    inbox = Inbox()
    pubsub = await open_pubsub(inbox)
    await pubsub.subscribe("a", "b")
    await pubsub.publish("a", b"before")
    await inbox.wait_for("a", b"before")
    await pubsub.unsubscribe("a", "never-subscribed")
    await pubsub.publish("a", b"after")
    await pubsub.publish("b", b"still here")
    await fence(pubsub, inbox)
    assert inbox.on("a") == [b"before"]
    assert inbox.on("b") == [b"still here"]
    await pubsub.subscribe("a")  # and back again
    await pubsub.publish("a", b"again")
    await inbox.wait_for("a", b"again")


async def test_subscribing_twice_delivers_once_and_one_unsubscribe_ends_it(
    open_pubsub: Opener,
) -> None:
    inbox = Inbox()
    pubsub = await open_pubsub(inbox)
    await pubsub.subscribe("a")
    await pubsub.subscribe("a", "a")
    await pubsub.publish("a", b"once")
    await fence(pubsub, inbox)
    assert inbox.on("a") == [b"once"]
    await pubsub.unsubscribe("a")  # not counted
    await pubsub.publish("a", b"gone")
    await fence(pubsub, inbox)
    assert inbox.on("a") == [b"once"]


async def test_publish_order_is_kept_per_channel(open_pubsub: Opener) -> None:
    inbox = Inbox()
    pubsub = await open_pubsub(inbox)
    await pubsub.subscribe("a", "b")
    expected = [str(i).encode() for i in range(200)]
    for message in expected:
        await pubsub.publish("a", message)
        await pubsub.publish("b", message)
    await fence(pubsub, inbox)
    assert inbox.on("a") == expected
    assert inbox.on("b") == expected


async def test_publish_many_delivers_each_in_order(open_pubsub: Opener) -> None:
    inbox = Inbox()
    pubsub = await open_pubsub(inbox)
    await pubsub.subscribe("a", "b")
    await pubsub.publish_many([])
    batch = [(channel, f"{channel}{i}".encode()) for i in range(50) for channel in ("a", "b", "c")]
    await pubsub.publish_many(batch)
    await fence(pubsub, inbox)
    assert inbox.on("a") == [f"a{i}".encode() for i in range(50)]
    assert inbox.on("b") == [f"b{i}".encode() for i in range(50)]
    assert inbox.on("c") == []


async def test_a_failing_handler_does_not_stop_later_messages(open_pubsub: Opener) -> None:
    inbox = Inbox()
    pubsub = await open_pubsub(inbox)
    await pubsub.subscribe("a")
    for message in (b"first", b"boom", b"boom", b"after"):
        await pubsub.publish("a", message)
    await inbox.wait_for("a", b"after")
    assert inbox.on("a") == [b"first", b"boom", b"boom", b"after"]


async def test_the_handler_runs_one_message_at_a_time(open_pubsub: Opener) -> None:
    running = 0
    most = 0
    done: list[bytes] = []

    async def slow(channel: str, message: bytes) -> None:
        nonlocal running, most
        running += 1
        most = max(most, running)
        await asyncio.sleep(0.01)
        running -= 1
        done.append(message)

    pubsub = await open_pubsub(slow)
    await pubsub.subscribe("a", "b")
    await asyncio.gather(*(pubsub.publish("ab"[i % 2], b"%d" % i) for i in range(10)))
    deadline = time.monotonic() + DEADLINE
    while len(done) < 10 and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    assert len(done) == 10
    assert most == 1


async def test_a_handler_may_subscribe_from_inside_a_delivery(open_pubsub: Opener) -> None:
    inbox = Inbox()
    pubsub: PubSub

    async def follow(channel: str, message: bytes) -> None:
        await inbox(channel, message)
        if channel == "invite":
            await pubsub.subscribe(message.decode())

    pubsub = await open_pubsub(follow)
    await pubsub.subscribe("invite")
    started = time.monotonic()
    await pubsub.publish("invite", b"room")
    await inbox.wait_for("invite", b"room")
    await fence(pubsub, inbox)  # the subscription is on once the handler has returned
    await pubsub.publish("room", b"hello")
    await inbox.wait_for("room", b"hello")
    assert time.monotonic() - started < 1.0  # the reader did not wait on itself


# --- Redis: other instances, names, namespaces ------------------------------------------


@pytest.fixture
async def redis_pair(
    redis_url: str, redis_namespace: str
) -> AsyncIterator[tuple[RedisPubSub, Inbox, RedisPubSub, Inbox]]:
    """Two instances of a deployment: same Redis, same namespace."""
    one, two = (RedisPubSub(redis_url, namespace=redis_namespace) for _ in range(2))
    inbox_one, inbox_two = Inbox(), Inbox()
    await one.start(inbox_one)
    await two.start(inbox_two)
    yield one, inbox_one, two, inbox_two
    await one.close()
    await two.close()


@pytest.mark.redis
async def test_every_subscribed_instance_receives_once(
    redis_pair: tuple[RedisPubSub, Inbox, RedisPubSub, Inbox],
) -> None:
    one, inbox_one, two, inbox_two = redis_pair
    await one.subscribe("room", "only-one")
    await two.subscribe("room", "only-two")
    await one.publish("room", b"from one")
    await two.publish("room", b"from two")
    await one.publish("only-two", b"for two")
    await two.publish("only-one", b"for one")
    await fence(one, inbox_one)
    await fence(two, inbox_two)
    assert inbox_one.on("room") == [b"from one", b"from two"]
    assert inbox_two.on("room") == [b"from one", b"from two"]
    assert inbox_one.on("only-one") == [b"for one"] and inbox_one.on("only-two") == []
    assert inbox_two.on("only-two") == [b"for two"] and inbox_two.on("only-one") == []


@pytest.mark.redis
async def test_redis_channel_is_namespace_plus_name(redis_url: str, redis_namespace: str) -> None:
    raw = aioredis.Redis.from_url(redis_url)
    mine = RedisPubSub(redis_url, namespace=f"{redis_namespace}mine:")
    other = RedisPubSub(redis_url, namespace=f"{redis_namespace}other:")
    inbox, other_inbox = Inbox(), Inbox()
    try:
        await mine.start(inbox)
        await other.start(other_inbox)
        await mine.subscribe("user:7")
        await other.subscribe("user:7")
        numsub = await raw.pubsub_numsub(f"{redis_namespace}mine:user:7")
        assert numsub == [(f"{redis_namespace}mine:user:7".encode(), 1)]
        # Another program publishing on the full name reaches us under the short one.
        await raw.publish(f"{redis_namespace}mine:user:7", b"from outside")
        await mine.publish("user:7", b"from mine")
        await inbox.wait_for("user:7", b"from mine")
        assert inbox.on("user:7") == [b"from outside", b"from mine"]
        await fence(other, other_inbox)
        assert other_inbox.on("user:7") == []
    finally:
        await mine.close()
        await other.close()
        await raw.aclose()


async def subscription_connection_ids(raw: aioredis.Redis, pubsub: RedisPubSub) -> list[int]:
    clients = await raw.client_list(_type="pubsub")
    return [int(client["id"]) for client in clients if client["name"] == pubsub.client_name]


@pytest.mark.redis
async def test_one_subscription_connection_closed_by_close(
    redis_url: str, redis_namespace: str
) -> None:
    raw = aioredis.Redis.from_url(redis_url)
    pubsub = RedisPubSub(redis_url, namespace=redis_namespace)
    try:
        await pubsub.start(Inbox())
        await pubsub.subscribe(*(f"user:{i}" for i in range(50)))
        assert len(await subscription_connection_ids(raw, pubsub)) == 1
        await pubsub.close()
        await asyncio.sleep(0.05)
        assert await subscription_connection_ids(raw, pubsub) == []
    finally:
        await pubsub.close()
        await raw.aclose()


# --- Redis: the subscription survives a lost connection ------------------------------


async def wait_until_heard(pubsub: RedisPubSub, inbox: Inbox, channel: str) -> float:
    """Publishes probes on `channel` until one arrives; returns the seconds it took."""
    started = time.monotonic()
    for attempt in range(1000):
        probe = b"probe-%d" % attempt
        await pubsub.publish(channel, probe)
        try:
            await inbox.wait_for(channel, probe, timeout=0.05)
            return time.monotonic() - started
        except AssertionError:
            if time.monotonic() - started > 2 * redis_pubsub.RECONNECT_CAP + DEADLINE:
                raise
    raise AssertionError("unreachable")


@pytest.mark.redis
async def test_resubscribes_after_redis_kills_the_connection(
    redis_url: str, redis_pair: tuple[RedisPubSub, Inbox, RedisPubSub, Inbox]
) -> None:
    listener, inbox, publisher, _ = redis_pair
    await listener.subscribe("a", "b")
    raw = aioredis.Redis.from_url(redis_url)
    try:
        [connection_id] = await subscription_connection_ids(raw, listener)
        assert await raw.client_kill_filter(_id=str(connection_id)) == 1
        took = await wait_until_heard(publisher, inbox, "a")
        assert took < redis_pubsub.RECONNECT_CAP + 1.0
        await publisher.publish("b", b"b is back too")
        await inbox.wait_for("b", b"b is back too")
        [new_id] = await subscription_connection_ids(raw, listener)
        assert new_id != connection_id
    finally:
        await raw.aclose()


@pytest.mark.redis
async def test_redis_gone_then_back_resubscribes_every_wanted_channel(
    redis_url: str, redis_namespace: str
) -> None:
    # The listener reaches Redis through a proxy we stop (Redis gone, reconnects refused)
    # and start again; the publisher is another instance that never lost Redis.
    publisher = RedisPubSub(redis_url, namespace=redis_namespace)
    inbox = Inbox()
    async with tcp_server(forwarding_to(redis_url)) as port:
        listener = RedisPubSub(f"redis://127.0.0.1:{port}", namespace=redis_namespace)
        await listener.start(inbox)
        await listener.subscribe("kept", "dropped")
        await publisher.publish("kept", b"before")
        await inbox.wait_for("kept", b"before")
    try:
        # Down: not listening (issue 15 §3: no ack for a chat this instance would miss),
        # publishing fails fast and clearly, the wanted set still changes.
        assert not listener.listening()
        started = time.monotonic()
        with pytest.raises(PubSubUnavailable):
            await listener.publish("kept", b"lost")
        assert time.monotonic() - started < 1.0
        await listener.subscribe("added while down")
        await listener.unsubscribe("dropped")
        await publisher.publish("kept", b"while down")  # nobody subscribed: gone
        await asyncio.sleep(0.3)  # let the reader fail a few reconnects

        async with tcp_server(forwarding_to(redis_url), port=port):
            await wait_until_heard(publisher, inbox, "kept")
            assert listener.listening()
            await publisher.publish("added while down", b"new")
            await publisher.publish("dropped", b"unwanted")
            await publisher.publish("kept", b"after")
            await inbox.wait_for("kept", b"after")
            assert inbox.on("added while down") == [b"new"]
            assert inbox.on("dropped") == []
            assert b"while down" not in inbox.on("kept")
            await listener.publish("kept", b"publishing works again")
            await inbox.wait_for("kept", b"publishing works again")
    finally:
        await listener.close()
        await publisher.close()


def freezing_proxy_to(url: str, frozen: asyncio.Event) -> Callable[..., Awaitable[None]]:
    """Like forwarding_to, but connections opened before `frozen` is set then carry
    nothing either way while staying open: a half-open TCP connection or a stuck Redis."""
    from urllib.parse import urlsplit

    target = urlsplit(url)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        born_frozen = frozen.is_set()
        up_reader, up_writer = await asyncio.open_connection(target.hostname, target.port)

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            try:
                while data := await source.read(65536):
                    if frozen.is_set() and not born_frozen:
                        continue  # swallowed
                    sink.write(data)
                    await sink.drain()
            finally:
                sink.close()  # one side gone: close the other, ending its pipe too

        await asyncio.gather(
            pipe(reader, up_writer), pipe(up_reader, writer), return_exceptions=True
        )

    return handle


@pytest.mark.redis
async def test_a_silent_connection_is_detected_and_replaced(
    redis_url: str, redis_namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(redis_pubsub, "PING_AFTER", 0.2)
    frozen = asyncio.Event()
    publisher = RedisPubSub(redis_url, namespace=redis_namespace)
    inbox = Inbox()
    async with tcp_server(freezing_proxy_to(redis_url, frozen)) as port:
        listener = RedisPubSub(f"redis://127.0.0.1:{port}", namespace=redis_namespace)
        try:
            await listener.start(inbox)
            await listener.subscribe("a")
            await publisher.publish("a", b"before")
            await inbox.wait_for("a", b"before")
            frozen.set()  # no error, no close: only silence
            took = await wait_until_heard(publisher, inbox, "a")
            # Silence for PING_AFTER, then PING_AFTER to answer, then the reconnect.
            assert took < 2 * 0.2 + redis_pubsub.RECONNECT_CAP + 1.0
        finally:
            await listener.close()
            await publisher.close()


def delaying_proxy_to(url: str, latency: float) -> Callable[..., Awaitable[None]]:
    """Like forwarding_to, with `latency` seconds on the way to Redis: a remote Redis."""
    from urllib.parse import urlsplit

    target = urlsplit(url)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(target.hostname, target.port)

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter, delay: float):
            try:
                while data := await source.read(65536):
                    await asyncio.sleep(delay)
                    sink.write(data)
                    await sink.drain()
            finally:
                sink.close()

        await asyncio.gather(
            pipe(reader, up_writer, latency), pipe(up_reader, writer, 0), return_exceptions=True
        )

    return handle


@pytest.mark.redis
async def test_subscribed_means_confirmed_even_with_a_slow_link(
    redis_url: str, redis_namespace: str
) -> None:
    # The listener's commands take 50 ms to reach Redis; the publisher's do not. Were
    # start() or subscribe() to return once the SUBSCRIBE is merely sent, the PUBLISH
    # would overtake it and the message would reach nobody.
    publisher = RedisPubSub(redis_url, namespace=redis_namespace)
    inbox = Inbox()
    async with tcp_server(delaying_proxy_to(redis_url, latency=0.05)) as port:
        listener = RedisPubSub(f"redis://127.0.0.1:{port}", namespace=redis_namespace)
        try:
            await listener.subscribe("at start")
            await listener.start(inbox)
            await publisher.publish("at start", b"heard")
            await listener.subscribe("later")
            await publisher.publish("later", b"heard too")
            # A second socket of the same user subscribes while the first one's SUBSCRIBE
            # is still on its way: it too returns only once Redis has confirmed.
            first = asyncio.create_task(listener.subscribe("user:1"))
            await asyncio.sleep(0.01)
            await listener.subscribe("user:1")
            await publisher.publish("user:1", b"for both sockets")
            await first
            await inbox.wait_for("user:1", b"for both sockets")
            assert inbox.on("at start") == [b"heard"]
            assert inbox.on("later") == [b"heard too"]
        finally:
            await listener.close()
            await publisher.close()


async def test_unreachable_redis_fails_publish_fast_and_start_does_not_hang() -> None:
    pubsub = RedisPubSub("redis://127.0.0.1:1")
    try:
        started = time.monotonic()
        await pubsub.start(Inbox())  # keeps retrying in the background
        await pubsub.subscribe("a")  # wanted, subscribed when Redis comes
        with pytest.raises(PubSubUnavailable):
            await pubsub.publish("a", b"x")
        with pytest.raises(PubSubUnavailable):
            await pubsub.publish_many([("a", b"x"), ("b", b"y")])
        assert time.monotonic() - started < 2 * redis_pubsub.CALL_BUDGET + 1.0
    finally:
        await pubsub.close()


async def test_settings_choose_the_backend(settings: Settings) -> None:
    assert isinstance(build_pubsub(settings), MemoryPubSub)  # nothing opened: no close
    shared = settings.model_copy(
        update={"redis_url": "redis://127.0.0.1:1/0", "redis_namespace": "deploy:"}
    )
    pubsub = build_pubsub(shared)
    try:
        assert isinstance(pubsub, RedisPubSub)
        assert pubsub._name("user:1") == b"deploy:user:1"
    finally:
        await pubsub.close()
