"""The social service: connect tickets and the social socket, across instances."""

from __future__ import annotations

from agora.core.settings import Settings
from agora.ports.backends import Backends
from agora.ports.contacts import EVERYONE, NOBODY
from agora.realtime.kit import build_realtime
from agora.services.social.deps import SocialServices
from agora.services.social.routes import SOCKET, router
from agora.services.social.socket import SocialSocket
from agora.web.app import build_service_app
from agora.web.service_app import ServiceApp

PATH_PREFIXES = ("/social/",)


def create_app(settings: Settings, backends: Backends) -> ServiceApp:
    # The hooks run at startup, once the kit below exists.
    async def start() -> None:
        await kit.start()

    async def stop() -> None:
        await kit.stop()

    app = build_service_app(
        name="social",
        settings=settings,
        backends=backends,
        routers=[router],
        path_prefixes=PATH_PREFIXES,
        on_start=[start],
        on_stop=[stop],
    )
    kit = build_realtime(
        settings,
        backends,
        tokens=app.context.tokens,
        revocations=app.context.revocations,
        refresh_keys=app.context.guard.refresh_keys,
        hub_channels="social:user:",
        presence_channels="presence:",
    )
    app.workers["presence"] = lambda: kit.presence.alive
    app.provide(SocialServices(tickets=kit.tickets, hub=kit.hub, presence=kit.presence))
    social_socket = SocialSocket(
        **kit.endpoint_args(
            name="social",
            audit=app.context.audit,
            connect_limiter=kit.limiter(
                "social-connect",
                settings.social_connections_per_ip,
                settings.social_connection_window,
            ),
            message_limiter=kit.limiter(
                "social-message",
                settings.social_messages_per_window,
                settings.social_message_window,
            ),
        ),
        max_content_chars=settings.social_max_content_chars,
        contacts=(
            EVERYONE
            if settings.social_chat_reach == "anyone"
            else backends.contacts or NOBODY  # closed when no answer can be had
        ),
    )
    # The endpoint itself, no wrapper: its frame would live as long as each socket.
    app.add_socket_route(SOCKET, social_socket.handle)
    return app
