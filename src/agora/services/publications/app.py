"""The publications service: the resource API, the user-events consumer, the idle sweeper."""

from __future__ import annotations

from agora.core.settings import Settings
from agora.ports.backends import Backends
from agora.services.publications.deps import PublicationsServices
from agora.services.publications.listing import PublicationListing
from agora.services.publications.page_cache import PublicationPageCache
from agora.services.publications.routes import router
from agora.services.publications.service import PublicationService
from agora.services.publications.status.cache import UserStatusCache
from agora.services.publications.status.consumer import UserEventConsumer
from agora.services.publications.status.service import UserStatusService
from agora.services.publications.status.sweeper import IdleSweeper
from agora.web.app import build_service_app
from agora.web.service_app import ServiceApp

PATH_PREFIXES = ("/api/publications",)


def create_app(settings: Settings, backends: Backends) -> ServiceApp:
    # The hooks run at startup, and take the objects the app holds then (a benchmark
    # may provide other ones before it starts the app).
    async def start() -> None:
        services = app.provided(PublicationsServices)
        await backends.bus.consume(services.user_events.handle, prefetch=settings.amqp_prefetch)
        services.idle_sweeper.start()

    async def stop() -> None:
        # The consumer stops with the bus, which its owner closes after this.
        await app.provided(PublicationsServices).idle_sweeper.stop()

    app = build_service_app(
        name="publications",
        settings=settings,
        backends=backends,
        routers=[router],
        path_prefixes=PATH_PREFIXES,
        on_start=[start],
        on_stop=[stop],
    )
    status = UserStatusService(
        backends.database,
        UserStatusCache(backends.cache, settings.user_cache_ttl),
        app.context.audit,
        idle_timeout=settings.idle_timeout,
        activity_write_interval=settings.activity_write_interval,
    )
    sweeper = IdleSweeper(
        status, settings.idle_sweep_interval, backends.pubsub, settings.key_prefix
    )
    app.workers["event consumer"] = lambda: backends.bus.consuming
    app.workers["idle sweeper"] = lambda: app.provided(PublicationsServices).idle_sweeper.alive
    ttl = settings.publication_page_cache_ttl
    pages = PublicationPageCache(backends.cache, ttl) if ttl > 0 else None
    publications = PublicationService(backends.database, pages)
    app.provide(
        PublicationsServices(
            publications=publications,
            listing=PublicationListing(publications, status, pages),
            user_status=status,
            user_events=UserEventConsumer(status),
            idle_sweeper=sweeper,
        )
    )
    return app
