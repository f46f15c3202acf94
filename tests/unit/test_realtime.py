"""The protocol-agnostic parts of agora.realtime, each on its own: the rate limiter, the
channel router, a connection's bounded queue, presence transitions, tickets and
session notices."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from typing import Any

import jwt
import orjson
import pytest

from agora.adapters.cache_memory import MemoryCache
from agora.adapters.presence_memory import MemoryPresence
from agora.adapters.pubsub_memory import MemoryPubSub
from agora.ports.cache import CacheUnavailable
from agora.realtime.channels import ChannelRouter
from agora.realtime.codes import SESSION_ENDED, SLOW_CONSUMER
from agora.realtime.connection import Connection, frame_cost
from agora.realtime.hub import Hub
from agora.realtime.limits import RateLimiter
from agora.realtime.presence import PresenceTracker
from agora.realtime.sessions import SessionWatch, disconnected_notice, revoked_notice
from agora.realtime.tickets import TicketRefused, TicketService
from agora.security.tokens import Identity, TokenService
from tests.support.settings import TEST_SECRET
from tests.unit.realtime_fakes import Clock, Socket, connection, sent

# --- rate limiter ---------------------------------------------------------------------


async def test_limiter_counts_then_blocks_with_growing_blocks() -> None:
    clock = Clock()
    limiter = RateLimiter(
        MemoryCache(clock),
        prefix="t:",
        name="msg",
        limit=3,
        window=60,
        block=10,
        growth=3,
        max_block=50,
    )
    for _ in range(3):
        assert (await limiter.hit("u")).allowed
    first = await limiter.hit("u")
    assert (first.allowed, first.retry_after, first.new_block_level) == (False, 10, 1)
    during = await limiter.hit("u")
    assert not during.allowed and during.new_block_level is None  # same block, not a new one
    assert await limiter.blocked_for("u") == pytest.approx(10)
    assert (await limiter.hit("other")).allowed  # per subject
    clock.now += 10.5
    for _ in range(3):
        assert (await limiter.hit("u")).allowed  # a fresh window after the block
    second = await limiter.hit("u")
    assert (second.retry_after, second.new_block_level) == (30, 2)
    clock.now += 31
    for _ in range(4):
        third = await limiter.hit("u")
    assert (third.retry_after, third.new_block_level) == (50, 3)  # capped


async def test_limiter_window_resets_the_count() -> None:
    clock = Clock()
    limiter = RateLimiter(MemoryCache(clock), prefix="t:", name="c", limit=2, window=60, block=5)
    for _ in range(2):
        assert (await limiter.hit("ip")).allowed
    clock.now += 61
    assert (await limiter.hit("ip")).allowed


async def test_limiter_counts_in_the_process_without_a_cache() -> None:
    """Issue 11: with the shared cache down the limit still holds (per process)."""

    class Down(MemoryCache):
        async def incr(self, key: str, ttl: float) -> int:
            raise CacheUnavailable("down")

    limiter = RateLimiter(Down(), prefix="t:", name="c", limit=1, window=60, block=5)
    assert [(await limiter.hit("ip")).allowed for _ in range(3)] == [True, False, False]


async def test_limiter_simultaneous_overflow_starts_one_block() -> None:
    limiter = RateLimiter(MemoryCache(), prefix="t:", name="c", limit=1, window=60, block=5)
    await limiter.hit("u")
    verdicts = await asyncio.gather(*(limiter.hit("u") for _ in range(10)))
    assert [v.new_block_level for v in verdicts if v.new_block_level] == [1]
    assert not any(v.allowed for v in verdicts)


# --- channel router -------------------------------------------------------------------


class RecordingPubSub(MemoryPubSub):
    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, tuple[str, ...]]] = []

    async def subscribe(self, *channels: str) -> None:
        self.calls.append(("subscribe", channels))
        await super().subscribe(*channels)

    async def unsubscribe(self, *channels: str) -> None:
        self.calls.append(("unsubscribe", channels))
        await super().unsubscribe(*channels)


async def test_router_counts_subscriptions_and_routes_by_prefix() -> None:
    pubsub = RecordingPubSub()
    router = ChannelRouter.of(pubsub)
    assert ChannelRouter.of(pubsub) is router
    got: list[tuple[str, bytes]] = []
    router.route("a:user:", lambda channel, message: got.append((channel, message)))
    with pytest.raises(ValueError, match="overlaps"):
        router.route("a:", lambda channel, message: None)
    await router.start()
    await router.subscribe("a:user:1")
    await router.subscribe("a:user:1")
    await router.unsubscribe("a:user:1")
    assert pubsub.calls == [("subscribe", ("a:user:1",))]  # one device left
    await pubsub.publish("a:user:1", b"hi")
    await asyncio.sleep(0.01)
    assert got == [("a:user:1", b"hi")]
    await router.unsubscribe("a:user:1")
    assert pubsub.calls[-1] == ("unsubscribe", ("a:user:1",))
    await pubsub.publish("a:user:1", b"lost")
    await asyncio.sleep(0.01)
    assert len(got) == 1
    await pubsub.close()


# --- a connection's queue ---------------------------------------------------------------


async def test_queue_over_its_byte_limit_closes_as_slow_consumer() -> None:
    channel = Socket(stalled=True)
    conn = await connection(channel, limit=100, grace=0.05)
    assert conn.send("x" * 60)
    await asyncio.sleep(0.01)  # the writer took it and is stuck sending it
    assert conn.send("y" * 60) and conn.send("z" * 40)
    assert conn.queued_bytes == 100
    assert not conn.send("w")  # one byte over
    assert conn.closing is SLOW_CONSUMER and conn.queued_bytes == 0
    assert not conn.send("after")
    # The stuck writer is cut after the grace: the socket ends, nothing more is held.
    started = time.monotonic()
    await asyncio.wait_for(conn.finish(), 1)
    assert time.monotonic() - started >= 0.04
    await conn.stop_writer()
    assert channel.close_code() is None


async def test_an_idle_connection_holds_no_writer_task() -> None:
    channel = Socket()
    conn = await connection(channel)
    assert conn.send('{"type": "a"}') and conn.send('{"type": "b"}')
    writer = conn._writer
    assert writer is not None
    await asyncio.wait_for(writer, 1)
    assert conn._writer is None and conn.queued_bytes == 0
    assert channel.texts() == [{"type": "a"}, {"type": "b"}]
    assert conn.send('{"type": "c"}')  # a new burst, a new writer
    await asyncio.sleep(0.01)
    assert channel.texts()[-1] == {"type": "c"} and conn._writer is None


async def test_close_stops_the_reader_and_only_the_reader() -> None:
    async def reader(conn: Connection) -> str:
        conn.start_reading()
        try:
            await asyncio.Event().wait()  # a client that says nothing
            return "received"
        except asyncio.CancelledError as cancelled:
            conn.stop_reading(cancelled)
            return "interrupted"
        finally:
            conn.stop_reading()

    conn = await connection(Socket())
    task = asyncio.create_task(reader(conn))
    await asyncio.sleep(0.01)
    conn.close(SESSION_ENDED)
    assert await asyncio.wait_for(task, 1) == "interrupted"
    # A cancel from elsewhere (a server shutdown) is still a cancel, ours or not.
    other = await connection(Socket())
    cancelled = asyncio.create_task(reader(other))
    await asyncio.sleep(0.01)
    cancelled.cancel()
    other.close(SESSION_ENDED)
    with pytest.raises(asyncio.CancelledError):
        await cancelled


async def test_non_ascii_frames_are_counted_at_their_utf8_ceiling() -> None:
    assert frame_cost("abc") == 3
    assert frame_cost("é") == 4 >= len("é".encode())
    assert frame_cost("😀") == 4 == len("😀".encode())


async def test_close_sends_error_frame_then_close_code() -> None:
    channel = Socket()
    conn = await connection(channel)
    conn.send('{"type": "x"}')
    await asyncio.sleep(0.01)
    conn.close(SESSION_ENDED)
    conn.close(SLOW_CONSUMER)  # the first reason wins
    await asyncio.wait_for(conn.finish(), 1)
    assert channel.texts() == [{"type": "x"}, {"type": "error", "message": "Session ended"}]
    assert channel.close_code() == 4410


async def test_reader_waits_while_the_queue_is_backlogged() -> None:
    channel = Socket(stalled=True)
    conn = await connection(channel, limit=100)
    conn.send("x" * 40)  # taken by the writer, which is stuck sending it
    await asyncio.sleep(0.01)
    conn.send("y" * 60)  # over half queued behind it: the reader must wait
    waiting = asyncio.create_task(conn.drained())
    await asyncio.sleep(0.02)
    assert not waiting.done()
    conn.close(SESSION_ENDED)  # closing releases it
    await asyncio.wait_for(waiting, 1)


# --- hub and presence ---------------------------------------------------------------------


async def test_presence_transitions_are_per_user_and_deduplicated() -> None:
    pubsub = MemoryPubSub()
    router = ChannelRouter(pubsub)
    hub = Hub(router, "t:user:")
    presence = MemoryPresence()
    tracker = PresenceTracker(
        presence, router, hub, channel_prefix="t:presence:", ttl=5, recheck_interval=60
    )
    await hub.start()
    await tracker.start()
    await router.start()
    watcher_channel = Socket()
    watcher = await connection(watcher_channel, user_id="w")
    assert await tracker.watch(watcher, ["b"]) == set()
    phone, laptop = await connection(Socket(), "b"), await connection(Socket(), "b")
    for device in (phone, laptop):
        await hub.add(device)
        await tracker.join(device)
    # The same "leave" twice (two instances' last devices at once) is forwarded once.
    await tracker.leave(phone)
    await tracker.leave(laptop)
    await pubsub.publish(tracker.channel("b"), orjson.dumps({"kind": "leave"}))
    await asyncio.sleep(0.02)
    assert sent(watcher) == [
        {"type": "presence.join", "userId": "b"},
        {"type": "presence.leave", "userId": "b"},
    ]
    await tracker.unwatch(watcher, ["b"])
    assert tracker.watchers == {} and tracker.known == {}
    await tracker.stop()
    await pubsub.close()


async def test_recheck_finds_users_whose_entries_expired() -> None:
    clock = Clock()
    presence = MemoryPresence(clock)
    router = ChannelRouter(MemoryPubSub())
    hub = Hub(router, "t:user:")
    tracker = PresenceTracker(
        presence, router, hub, channel_prefix="t:presence:", ttl=5, recheck_interval=60
    )
    watcher = await connection(Socket(), user_id="w")
    await presence.join("gone", "device-of-a-dead-instance", 5)
    assert await tracker.watch(watcher, ["gone"]) == {"gone"}
    clock.now += 6
    await tracker.recheck()
    await asyncio.sleep(0.01)
    assert sent(watcher) == [{"type": "presence.leave", "userId": "gone"}]


async def test_online_asks_the_store_only_about_users_with_no_device_here() -> None:
    """A message's offline check asks about every member: those with a device on this
    instance are online without a round trip to the store."""
    presence = MemoryPresence()
    router = ChannelRouter(MemoryPubSub())
    hub = Hub(router, "t:user:")
    tracker = PresenceTracker(
        presence, router, hub, channel_prefix="t:presence:", ttl=5, recheck_interval=60
    )
    await presence.join("elsewhere", "device-on-another-instance", 5)
    await hub.add(await connection(Socket(), "here"))
    asked: list[list[str]] = []
    store_online = presence.online

    async def counted(user_ids: Iterable[str]) -> set[str]:
        asked.append(list(user_ids))
        return await store_online(asked[-1])

    presence.online = counted  # type: ignore[method-assign]
    assert await tracker.online(["here", "elsewhere", "offline"]) == {"here", "elsewhere"}
    assert asked == [["elsewhere", "offline"]]
    assert await tracker.online(["here"]) == {"here"}
    assert len(asked) == 1  # nobody to ask about


# --- tickets ----------------------------------------------------------------------------


def ticket_service(cache: MemoryCache | None = None, **kw: Any) -> TicketService:
    tokens = TokenService(TEST_SECRET, issuer="agora-auth", audience="agora", leeway=30)
    return TicketService(
        tokens,
        cache or MemoryCache(),
        None,
        prefix="t:",
        ttl=kw.get("ttl", 10),
        leeway=kw.get("leeway", 2),
    )


def session(exp_in: int = 3600) -> Identity:
    now = int(time.time())
    return Identity("7", "alice", "access-jti", now + exp_in, {"iat": now})


async def test_ticket_round_trip_and_single_use() -> None:
    tickets = ticket_service()
    issued = tickets.issue(session())
    ticket = await tickets.redeem(issued.token)
    assert (ticket.user_id, ticket.login, ticket.session_jti) == ("7", "alice", "access-jti")
    with pytest.raises(TicketRefused) as refused:
        await tickets.redeem(issued.token)
    assert (refused.value.close.code, refused.value.reason) == (4409, "reused")
    assert refused.value.user_id == "7"


async def test_ticket_leeway_is_its_own_not_the_access_tokens() -> None:
    tickets = ticket_service(leeway=1)
    claims = jwt.decode(
        tickets.issue(session()).token, TEST_SECRET, algorithms=["HS256"], audience="agora"
    )
    claims["exp"] = int(time.time()) - 5  # within the 30 s access leeway, past the ticket's
    stale = jwt.encode(claims, TEST_SECRET, algorithm="HS256")
    with pytest.raises(TicketRefused) as refused:
        await tickets.redeem(stale)
    assert (refused.value.close.code, refused.value.reason) == (4401, "expired")


async def test_ticket_of_an_expired_session_and_without_a_cache() -> None:
    tickets = ticket_service()
    with pytest.raises(TicketRefused) as refused:
        await tickets.redeem(tickets.issue(session(exp_in=-1)).token)
    assert refused.value.close.code == 4410

    class Down(MemoryCache):
        async def set_if_absent(self, key: str, value: bytes, ttl: float) -> bool:
            raise CacheUnavailable("down")

    tickets = ticket_service(Down())
    with pytest.raises(TicketRefused) as refused:
        await tickets.redeem(tickets.issue(session()).token)
    assert refused.value.close.code == 1013  # fail closed: replay cannot be ruled out


# --- session notices ------------------------------------------------------------------------


async def test_session_notices_close_the_matching_sockets() -> None:
    router = ChannelRouter(MemoryPubSub())
    hub = Hub(router, "t:user:")
    watch = SessionWatch(router, hub, "t:")
    old = await connection(Socket(), "7", jti="a", iat=int(time.time()) - 100)
    other = await connection(Socket(), "7", jti="b", iat=int(time.time()) + 100)
    stranger = await connection(Socket(), "8", jti="a")
    for conn in (old, other, stranger):
        await hub.add(conn)
    identity = Identity("7", "alice", "a", 0, {})
    watch._on_notice("t:sessions", orjson.dumps(revoked_notice(identity, everywhere=False)))
    assert (old.closing, other.closing, stranger.closing) == (SESSION_ENDED, None, None)
    # "Everywhere" spares sessions issued after it (a login right after).
    old.closing = None
    watch._on_notice("t:sessions", orjson.dumps(revoked_notice(identity, everywhere=True)))
    assert (old.closing, other.closing) == (SESSION_ENDED, None)
    watch._on_notice("t:sessions", orjson.dumps(disconnected_notice("7")))
    assert other.closing is SESSION_ENDED and stranger.closing is None
    watch._on_notice("t:sessions", b"not json")  # ignored, logged
