"""The publications service: the resource API, the user-events consumer, the idle sweeper."""

from __future__ import annotations

from agora.core.settings import Settings
from agora.ports.backends import Backends
from agora.services.publications.routes import router
from agora.services.publications.service import PublicationService
from agora.services.publications.status.cache import UserStatusCache
from agora.services.publications.status.consumer import UserEventConsumer
from agora.services.publications.status.service import UserStatusService
from agora.services.publications.status.sweeper import IdleSweeper
from agora.web.app import build_service_app
from agora.web.security import ServiceApp

PATH_PREFIXES = ("/api/publications",)


def create_app(settings: Settings, backends: Backends) -> ServiceApp:
    # The hooks run at startup, once the objects set on `app.state` below exist.
    async def start() -> None:
        consumer: UserEventConsumer = app.state.user_events
        await app.state.backends.bus.consume(consumer.handle, prefetch=settings.amqp_prefetch)
        app.state.idle_sweeper.start()

    async def stop() -> None:
        # The consumer stops with the bus, which its owner closes after this.
        await app.state.idle_sweeper.stop()

    app = build_service_app(
        name="publications",
        settings=settings,
        backends=backends,
        routers=[router],
        path_prefixes=PATH_PREFIXES,
        on_start=[start],
        on_stop=[stop],
    )
    resolved: Backends = app.state.backends
    status = UserStatusService(
        resolved.database,
        UserStatusCache(resolved.cache, settings.user_cache_ttl),
        app.state.audit,
        idle_timeout=settings.idle_timeout,
        activity_write_interval=settings.activity_write_interval,
    )
    app.state.user_status = status
    app.state.user_events = UserEventConsumer(status)
    app.state.idle_sweeper = IdleSweeper(
        status, settings.idle_sweep_interval, resolved.pubsub, settings.key_prefix
    )
    app.state.publications = PublicationService(resolved.database)
    return app
