"""The messaging socket and its fan-out, built from settings (the lead's `app.py` calls it).

Built like the social socket (`services/social/app.py`) from the same `realtime`
pieces, on channels of their own under `<key_prefix>messaging:`:

- `messaging:user:<id>`: a user's pushes (`MessagingFanout` over a `Hub` holding every
  messaging socket of the instance, delivered to those that joined `user:<id>`);
- `messaging:room:<topic>`: a conversation topic's typing and presence (`Rooms`);
- `messaging:presence:<id>`: per-user presence transitions (`PresenceTracker`), on
  presence entries scoped `messaging:` so that a social socket is not a messaging one;
- `sessions`: session-ended notices, shared with social (`SessionWatch`).

`MessagingService` needs the fan-out and the socket needs the service, so the socket
reaches the service through `service_getter`, called per request.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from agora.core.audit import Audit
from agora.core.settings import Settings
from agora.ports.backends import Backends
from agora.realtime.channels import ChannelRouter
from agora.realtime.hub import Hub
from agora.realtime.limits import RateLimiter, realtime_limiter
from agora.realtime.presence import PresenceTracker
from agora.realtime.rooms import Rooms
from agora.realtime.scoped_presence import ScopedPresence
from agora.realtime.sessions import SessionWatch
from agora.realtime.tickets import TicketService
from agora.security.guard import RevocationCheck
from agora.security.tokens import TokenService
from agora.services.messaging.service.messages import MessagingService
from agora.services.messaging.socket.endpoint import MessagingSocket
from agora.services.messaging.socket.fanout import MessagingFanout, user_topic
from agora.services.messaging.socket.protocol import push
from agora.services.messaging.socket.room_presence import RoomPresence
from agora.services.messaging.socket.typing_indicators import TypingIndicators

# Most conversations one `user:<id>` join catches up on, and conversation topics one
# socket may join at once (each joined topic is a subscription and presence entry).
MAX_SYNC_CONVERSATIONS = 100
MAX_TOPICS_PER_SOCKET = 100


@dataclass
class MessagingRealtime:
    fanout: MessagingFanout
    socket: MessagingSocket
    start: Callable[[], Awaitable[None]]
    stop: Callable[[], Awaitable[None]]


def user_presence_frame(kind: str, user_id: str, watcher_id: str) -> str:
    """Per-user presence on the watcher's `user:<id>` topic, shaped as conversation diffs."""
    change = [user_id]
    return push(
        user_topic(watcher_id),
        "presence_diff",
        {"joins": change if kind == "join" else [], "leaves": change if kind == "leave" else []},
    )


def build_messaging_realtime(
    settings: Settings,
    backends: Backends,
    *,
    tokens: TokenService,
    revocations: RevocationCheck | None,
    audit: Audit,
    refresh_keys: Callable[[], Awaitable[bool]] | None,
    service_getter: Callable[[], MessagingService],
) -> MessagingRealtime:
    prefix = settings.key_prefix
    channels = ChannelRouter.of(backends.pubsub)
    hub = Hub(channels, f"{prefix}messaging:user:")
    presence = PresenceTracker(
        ScopedPresence(backends.presence, "messaging:"),
        channels,
        hub,
        channel_prefix=f"{prefix}messaging:presence:",
        ttl=settings.presence_ttl,
        recheck_interval=settings.presence_recheck_interval,
        watcher_frame=user_presence_frame,
    )
    rooms = Rooms(channels, f"{prefix}messaging:")
    typing = TypingIndicators(rooms, settings.messaging_typing_ttl)
    room_presence = RoomPresence(
        ScopedPresence(backends.presence, "messaging:room:"),
        rooms,
        ttl=settings.presence_ttl,
        recheck_interval=settings.presence_recheck_interval,
    )
    fanout = MessagingFanout(hub, presence, rooms, max_contacts=settings.presence_max_users)
    sessions = SessionWatch(channels, hub, prefix)
    tickets = TicketService(
        tokens,
        backends.cache,
        revocations,
        prefix=prefix,
        ttl=settings.ws_ticket_ttl,
        leeway=settings.ws_ticket_leeway,
        refresh_keys=refresh_keys,
    )

    def limiter(name: str, limit: int, window: float) -> RateLimiter:
        return realtime_limiter(backends.cache, settings, name, limit, window)

    socket = MessagingSocket(
        name="messaging",
        audit=audit,
        tickets=tickets,
        hub=hub,
        presence=presence,
        # The same window as social's connection limit: a burst of reconnects is normal.
        connect_limiter=limiter(
            "messaging-connect",
            settings.messaging_connections_per_ip,
            settings.social_connection_window,
        ),
        message_limiter=limiter("messaging-frame", settings.messaging_frames_per_minute, 60.0),
        max_message_bytes=settings.ws_max_message_bytes,
        max_queued_bytes=settings.ws_outbound_queue_bytes,
        close_grace=settings.ws_close_grace,
        fanout=fanout,
        rooms=rooms,
        typing=typing,
        room_presence=room_presence,
        service_getter=service_getter,
        max_topics=MAX_TOPICS_PER_SOCKET,
        max_sync_conversations=MAX_SYNC_CONVERSATIONS,
        max_presence_users=settings.presence_max_users,
    )

    async def start() -> None:
        # Not `hub.start()`: the fan-out takes the hub's channels (joined sockets only).
        await fanout.start()
        await rooms.start()
        await typing.start()
        await presence.start()
        await room_presence.start()
        await sessions.start()
        await channels.start()

    async def stop() -> None:
        await socket.sync.stop()
        await sessions.stop()
        await room_presence.stop()
        await presence.stop()
        await typing.stop()
        await rooms.stop()
        await fanout.stop()

    return MessagingRealtime(fanout=fanout, socket=socket, start=start, stop=stop)
