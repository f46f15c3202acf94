"""The real-time kit: the pieces it builds for a service, and the one order it starts and
stops them in, with the parts a service adds (messaging's fan-out, rooms, typing, room
presence, catch-ups)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agora.adapters.bus_memory import MemoryBus
from agora.adapters.cache_memory import MemoryCache
from agora.adapters.presence_memory import MemoryPresence
from agora.adapters.pubsub_memory import MemoryPubSub
from agora.core.audit import Audit
from agora.core.settings import Settings
from agora.db.engine import Database
from agora.ports.backends import Backends
from agora.realtime.kit import RealtimeKit, build_realtime
from agora.realtime.presence import WatcherFrame
from agora.realtime.scoped_presence import ScopedPresence
from agora.realtime.sessions import sessions_channel
from agora.security.tokens import TokenService
from tests.support.settings import TEST_SECRET, make_settings


def frame_of(kind: str, user_id: str, watcher_id: str) -> str:
    return f"{kind}:{user_id}:{watcher_id}"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path, key_prefix="t1:")


@pytest.fixture
async def backends(settings: Settings) -> AsyncIterator[Backends]:
    backends = Backends(
        database=Database(settings.resolved_database_url),
        cache=MemoryCache(),
        bus=MemoryBus(),
        pubsub=MemoryPubSub(),
        presence=MemoryPresence(),
    )
    yield backends
    await backends.close()


def kit_of(
    settings: Settings,
    backends: Backends,
    presence_scope: str | None = None,
    watcher_frame: WatcherFrame | None = None,
) -> RealtimeKit:
    return build_realtime(
        settings,
        backends,
        tokens=TokenService(TEST_SECRET, issuer="agora-auth", audience="agora", leeway=30),
        revocations=None,
        refresh_keys=None,
        hub_channels="chat:user:",
        presence_channels="chat:presence:",
        presence_scope=presence_scope,
        watcher_frame=watcher_frame,
    )


class Part:
    """A service's own piece, saying when it starts and stops."""

    def __init__(self, name: str, log: list[str]) -> None:
        self.name = name
        self.log = log

    async def start(self) -> None:
        self.log.append(f"start {self.name}")

    async def stop(self) -> None:
        self.log.append(f"stop {self.name}")


def record(kit: RealtimeKit, log: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """The kit's own pieces say when they start and stop, then do it."""
    pieces = {"hub": kit.hub, "presence": kit.presence, "sessions": kit.sessions}
    for name, piece in [*pieces.items(), ("channels", kit.channels)]:
        start = piece.start

        async def started(name: str = name, start: object = start) -> None:
            log.append(f"start {name}")
            await start()  # type: ignore[operator]

        monkeypatch.setattr(piece, "start", started)
    for name, piece in pieces.items():
        stop = piece.stop

        async def stopped(name: str = name, stop: object = stop) -> None:
            log.append(f"stop {name}")
            await stop()  # type: ignore[operator]

        monkeypatch.setattr(piece, "stop", stopped)


async def test_the_pieces_start_in_order_the_channels_last_and_stop_in_reverse(
    settings: Settings, backends: Backends, monkeypatch: pytest.MonkeyPatch
) -> None:
    kit = kit_of(settings, backends)
    log: list[str] = []
    record(kit, log, monkeypatch)

    await kit.start()
    assert log == ["start hub", "start presence", "start sessions", "start channels"]
    routes = set(kit.channels._routes)
    assert routes >= {"t1:chat:user:", "t1:chat:presence:", sessions_channel("t1:")}

    log.clear()
    await kit.stop()
    # No stop for the channels: the router and its pubsub are the process's.
    assert log == ["stop sessions", "stop presence", "stop hub"]
    assert not set(kit.channels._routes) & routes


async def test_a_service_s_parts_take_their_places_and_the_hub_gives_way(
    settings: Settings, backends: Backends, monkeypatch: pytest.MonkeyPatch
) -> None:
    kit = kit_of(settings, backends)
    log: list[str] = []
    record(kit, log, monkeypatch)
    fanout, rooms, room_presence = (Part(name, log) for name in ("fanout", "rooms", "room"))

    async def drain() -> None:
        log.append("drain")

    kit.deliver_through(fanout, rooms)
    kit.track_presence_with(room_presence)
    kit.stop_first(drain)

    await kit.start()
    assert log == [
        "start fanout",
        "start rooms",
        "start presence",
        "start room",
        "start sessions",
        "start channels",
    ]
    assert "t1:chat:user:" not in kit.channels._routes  # the hub never routed its channels

    log.clear()
    await kit.stop()
    assert log == [
        "drain",
        "stop sessions",
        "stop room",
        "stop presence",
        "stop rooms",
        "stop fanout",
    ]


async def test_the_pieces_sit_on_the_service_s_channels_keys_and_settings(
    settings: Settings, backends: Backends
) -> None:
    plain = kit_of(settings, backends)
    assert plain.presence.presence is backends.presence
    assert plain.presence.watcher_frame is None

    kit = kit_of(settings, backends, presence_scope="chat:", watcher_frame=frame_of)
    assert kit.hub.prefix == "t1:chat:user:"
    assert kit.presence.prefix == "t1:chat:presence:"
    assert kit.presence.watcher_frame is frame_of
    scoped = kit.presence.presence
    assert isinstance(scoped, ScopedPresence)
    assert (scoped.presence, scoped.scope) == (backends.presence, "chat:")
    assert kit.channels is plain.channels  # one router per pubsub
    assert kit.tickets.prefix == "t1:"
    assert (kit.tickets.ttl, kit.tickets.leeway) == (settings.ws_ticket_ttl, 2.0)

    limiter = kit.limiter("chat-connect", 7, 30.0)
    assert limiter.key("count", "1.2.3.4") == "t1:ratelimit:chat-connect:count:1.2.3.4"
    assert (limiter.limit, limiter.window) == (7, 30.0)
    assert limiter.block_seconds(1) == settings.realtime_block_seconds

    audit = Audit("chat")
    message = kit.limiter("chat-message", 5, 1.0)
    args = kit.endpoint_args(
        name="chat", audit=audit, connect_limiter=limiter, message_limiter=message
    )
    assert args == {
        "name": "chat",
        "audit": audit,
        "tickets": kit.tickets,
        "hub": kit.hub,
        "presence": kit.presence,
        "connect_limiter": limiter,
        "message_limiter": message,
        "max_message_bytes": settings.ws_max_message_bytes,
        "max_queued_bytes": settings.ws_outbound_queue_bytes,
        "close_grace": settings.ws_close_grace,
        "max_presence_users": settings.presence_max_users,
    }
