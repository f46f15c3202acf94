"""One builder for what every socket service needs: social's and messaging's.

`build_realtime` makes, on channels of the service's own under `<key_prefix>`:
the process's `ChannelRouter` of the pubsub, a `Hub` of the service's sockets, a
`PresenceTracker` (on presence entries scoped to the service, if it asks), the
`SessionWatch` that closes the sockets of an ended session, the `TicketService` of
connect tickets, and rate limiters (`limiter`). `endpoint_args` are the arguments every
`SocketEndpoint` takes from them and from the settings.

The kit runs what it built, and what a service adds, in one order:

    start: delivery (the hub) -> presence tracker -> service presence -> sessions -> channels
    stop:  service drains -> sessions -> service presence -> presence tracker -> delivery

The channels start last, once every route is in place, and have no stop: the router
and its pubsub are shared by the process's services, and the `Backends` close the pubsub.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol, TypedDict

from agora.core.audit import Audit
from agora.core.settings import Settings
from agora.ports.backends import Backends
from agora.ports.presence import Presence
from agora.realtime.channels import ChannelRouter
from agora.realtime.hub import Hub
from agora.realtime.limits import RateLimiter, realtime_limiter
from agora.realtime.presence import PresenceTracker, WatcherFrame
from agora.realtime.scoped_presence import ScopedPresence
from agora.realtime.sessions import SessionWatch
from agora.realtime.tickets import TicketService
from agora.security.guard import RevocationCheck
from agora.security.tokens import TokenService


class Part(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class EndpointArgs(TypedDict):
    """The keyword arguments every socket endpoint takes (`SocketEndpoint`, and the
    presence bound of its subclasses)."""

    name: str
    audit: Audit
    tickets: TicketService
    hub: Hub
    presence: PresenceTracker
    connect_limiter: RateLimiter
    message_limiter: RateLimiter
    max_message_bytes: int
    max_queued_bytes: int
    close_grace: float
    max_presence_users: int


class RealtimeKit:
    def __init__(
        self,
        settings: Settings,
        backends: Backends,
        *,
        channels: ChannelRouter,
        hub: Hub,
        presence: PresenceTracker,
        sessions: SessionWatch,
        tickets: TicketService,
    ) -> None:
        self.settings = settings
        self.backends = backends
        self.channels = channels
        self.hub = hub
        self.presence = presence
        self.sessions = sessions
        self.tickets = tickets
        self._delivery: list[Part] = [hub]
        self._service_presence: list[Part] = []
        self._drains: list[Callable[[], Awaitable[None]]] = []

    # --- what a service adds ---------------------------------------------------------------

    def deliver_through(self, *parts: Part) -> None:
        """`parts` take the hub's place in the order, first to start and last to stop.
        Messaging's fan-out routes the hub's channels itself (to the sockets that joined
        `user:<id>`): started beside it, the hub would deliver every frame a second time."""
        self._delivery = list(parts)

    def track_presence_with(self, *parts: Part) -> None:
        """The service's own presence (messaging's rooms): after the tracker, before it stops."""
        self._service_presence.extend(parts)

    def stop_first(self, stop: Callable[[], Awaitable[None]]) -> None:
        """Work in flight that still uses the pieces (messaging's catch-ups), ended first."""
        self._drains.append(stop)

    # --- what the endpoint takes ------------------------------------------------------------

    def limiter(self, name: str, limit: int, window: float) -> RateLimiter:
        # Counted on the backends' Counters: on Redis, in batches (ports/counters.py).
        backends = self.backends
        return realtime_limiter(
            backends.cache, self.settings, name, limit, window, counters=backends.counters
        )

    def endpoint_args(
        self,
        *,
        name: str,
        audit: Audit,
        connect_limiter: RateLimiter,
        message_limiter: RateLimiter,
    ) -> EndpointArgs:
        settings = self.settings
        return EndpointArgs(
            name=name,
            audit=audit,
            tickets=self.tickets,
            hub=self.hub,
            presence=self.presence,
            connect_limiter=connect_limiter,
            message_limiter=message_limiter,
            max_message_bytes=settings.ws_max_message_bytes,
            max_queued_bytes=settings.ws_outbound_queue_bytes,
            close_grace=settings.ws_close_grace,
            max_presence_users=settings.presence_max_users,
        )

    # --- the order --------------------------------------------------------------------------

    def _parts(self) -> list[Part]:
        return [*self._delivery, self.presence, *self._service_presence, self.sessions]

    async def start(self) -> None:
        for part in self._parts():
            await part.start()
        await self.channels.start()

    async def stop(self) -> None:
        for drain in self._drains:
            await drain()
        for part in reversed(self._parts()):
            await part.stop()


def build_realtime(
    settings: Settings,
    backends: Backends,
    *,
    tokens: TokenService,
    revocations: RevocationCheck | None,
    refresh_keys: Callable[[], Awaitable[bool]] | None,
    hub_channels: str,
    presence_channels: str,
    presence_scope: str | None = None,
    watcher_frame: WatcherFrame | None = None,
) -> RealtimeKit:
    """`hub_channels` and `presence_channels` follow the key prefix (`social:user:` is
    `<key_prefix>social:user:<id>`); `presence_scope` keeps the service's presence entries
    apart from another service's; `watcher_frame` is `PresenceTracker`'s."""
    prefix = settings.key_prefix
    channels = ChannelRouter.of(backends.pubsub)
    hub = Hub(channels, f"{prefix}{hub_channels}")
    store: Presence = backends.presence
    if presence_scope is not None:
        store = ScopedPresence(store, presence_scope)
    presence = PresenceTracker(
        store,
        channels,
        hub,
        channel_prefix=f"{prefix}{presence_channels}",
        ttl=settings.presence_ttl,
        recheck_interval=settings.presence_recheck_interval,
        watcher_frame=watcher_frame,
    )
    tickets = TicketService(
        tokens,
        backends.cache,
        revocations,
        prefix=prefix,
        ttl=settings.ws_ticket_ttl,
        leeway=settings.ws_ticket_leeway,
        refresh_keys=refresh_keys,
    )
    return RealtimeKit(
        settings,
        backends,
        channels=channels,
        hub=hub,
        presence=presence,
        sessions=SessionWatch(channels, hub, prefix),
        tickets=tickets,
    )
