"""The messaging socket and its fan-out, built from settings (the lead's `app.py` calls it).

Built like the social socket (`services/social/app.py`) by `agora.realtime.kit`, plus
messaging's own pieces, on channels of their own under `<key_prefix>messaging:`:

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
from agora.realtime.kit import build_realtime
from agora.realtime.rooms import Rooms
from agora.realtime.scoped_presence import ScopedPresence
from agora.security.guard import RevocationCheck
from agora.security.tokens import TokenService
from agora.services.messaging.service.messages import MessagingService
from agora.services.messaging.socket.endpoint import MessagingSocket
from agora.services.messaging.socket.fanout import MessagingFanout, user_topic
from agora.services.messaging.socket.protocol import presence_diff
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
    # Background workers by name, each saying whether it runs (readiness).
    workers: dict[str, Callable[[], bool]]


def user_presence_frame(kind: str, user_id: str, watcher_id: str) -> str:
    """Per-user presence on the watcher's `user:<id>` topic, shaped as conversation diffs."""
    change = (user_id,)
    return presence_diff(
        user_topic(watcher_id), change if kind == "join" else (), change if kind == "leave" else ()
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
    kit = build_realtime(
        settings,
        backends,
        tokens=tokens,
        revocations=revocations,
        refresh_keys=refresh_keys,
        hub_channels="messaging:user:",
        presence_channels="messaging:presence:",
        presence_scope="messaging:",
        watcher_frame=user_presence_frame,
    )
    rooms = Rooms(kit.channels, f"{settings.key_prefix}messaging:")
    typing = TypingIndicators(rooms, settings.messaging_typing_ttl)
    room_presence = RoomPresence(
        ScopedPresence(backends.presence, "messaging:room:"),
        rooms,
        ttl=settings.presence_ttl,
        recheck_interval=settings.presence_recheck_interval,
    )
    fanout = MessagingFanout(kit.hub, kit.presence, rooms, max_contacts=settings.presence_max_users)
    socket = MessagingSocket(
        **kit.endpoint_args(
            name="messaging",
            audit=audit,
            # The same window as social's connection limit: a burst of reconnects is normal.
            connect_limiter=kit.limiter(
                "messaging-connect",
                settings.messaging_connections_per_ip,
                settings.social_connection_window,
            ),
            message_limiter=kit.limiter(
                "messaging-frame", settings.messaging_frames_per_minute, 60.0
            ),
        ),
        fanout=fanout,
        rooms=rooms,
        typing=typing,
        room_presence=room_presence,
        service_getter=service_getter,
        max_topics=MAX_TOPICS_PER_SOCKET,
        max_sync_conversations=MAX_SYNC_CONVERSATIONS,
    )
    # Not the hub: the fan-out takes the hub's channels (joined sockets only).
    kit.deliver_through(fanout, rooms, typing)
    kit.track_presence_with(room_presence)
    kit.stop_first(socket.sync.stop)
    workers = {"presence": lambda: kit.presence.alive, "room presence": lambda: room_presence.alive}
    return MessagingRealtime(
        fanout=fanout, socket=socket, start=kit.start, stop=kit.stop, workers=workers
    )
