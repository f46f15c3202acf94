"""The social service: connect tickets and the social socket, across instances."""

from __future__ import annotations

from agora.core.settings import Settings
from agora.ports.backends import Backends
from agora.realtime.channels import ChannelRouter
from agora.realtime.hub import Hub
from agora.realtime.limits import RateLimiter, realtime_limiter
from agora.realtime.presence import PresenceTracker
from agora.realtime.sessions import SessionWatch
from agora.realtime.tickets import TicketService
from agora.services.social.deps import SocialServices
from agora.services.social.routes import SOCKET, router
from agora.services.social.socket import SocialSocket
from agora.web.app import build_service_app
from agora.web.security import ServiceApp

PATH_PREFIXES = ("/social/",)


def create_app(settings: Settings, backends: Backends) -> ServiceApp:
    # The hooks run at startup, once the objects made below exist.
    async def start() -> None:
        await hub.start()
        await presence.start()
        await sessions.start()
        await channels.start()

    async def stop() -> None:
        await sessions.stop()
        await presence.stop()
        await hub.stop()

    app = build_service_app(
        name="social",
        settings=settings,
        backends=backends,
        routers=[router],
        path_prefixes=PATH_PREFIXES,
        on_start=[start],
        on_stop=[stop],
    )
    resolved: Backends = app.context.backends
    prefix = settings.key_prefix
    channels = ChannelRouter.of(resolved.pubsub)
    hub = Hub(channels, f"{prefix}social:user:")
    presence = PresenceTracker(
        resolved.presence,
        channels,
        hub,
        channel_prefix=f"{prefix}presence:",
        ttl=settings.presence_ttl,
        recheck_interval=settings.presence_recheck_interval,
    )
    sessions = SessionWatch(channels, hub, prefix)
    tickets = TicketService(
        app.context.tokens,
        resolved.cache,
        app.context.revocations,
        prefix=prefix,
        ttl=settings.ws_ticket_ttl,
        leeway=settings.ws_ticket_leeway,
        refresh_keys=app.context.guard.refresh_keys,
    )

    def limiter(name: str, limit: int, window: float) -> RateLimiter:
        return realtime_limiter(resolved.cache, settings, name, limit, window)

    app.provide(SocialServices(tickets=tickets, hub=hub, presence=presence))
    social_socket = SocialSocket(
        name="social",
        audit=app.context.audit,
        tickets=tickets,
        hub=hub,
        presence=presence,
        connect_limiter=limiter(
            "social-connect", settings.social_connections_per_ip, settings.social_connection_window
        ),
        message_limiter=limiter(
            "social-message", settings.social_messages_per_window, settings.social_message_window
        ),
        max_message_bytes=settings.ws_max_message_bytes,
        max_queued_bytes=settings.ws_outbound_queue_bytes,
        close_grace=settings.ws_close_grace,
        max_content_chars=settings.social_max_content_chars,
        max_presence_users=settings.presence_max_users,
    )
    # The endpoint itself, no wrapper: its frame would live as long as each socket.
    app.add_socket_route(SOCKET, social_socket.handle)
    return app
