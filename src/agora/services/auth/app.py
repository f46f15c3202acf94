from __future__ import annotations

import asyncio

from agora.core.settings import Settings
from agora.ports.backends import Backends
from agora.security.passwords import PasswordHasher
from agora.services.auth.grpc_api import user_service
from agora.services.auth.outbox_relay import OutboxRelay
from agora.services.auth.routes import router
from agora.services.auth.service import AuthService
from agora.services.auth.throttle import LoginThrottle
from agora.web.app import build_service_app
from agora.web.security import ServiceApp

PATH_PREFIXES = ("/auth/", "/login")


def create_app(settings: Settings, backends: Backends) -> ServiceApp:
    # The hooks run at startup, once `app.state.outbox_relay` (set below) exists.
    async def start_relay() -> None:
        await app.state.outbox_relay.start()

    async def stop_relay() -> None:
        await app.state.outbox_relay.stop()

    app = build_service_app(
        name="auth",
        settings=settings,
        backends=backends,
        routers=[router],
        path_prefixes=PATH_PREFIXES,
        on_start=[start_relay],
        on_stop=[stop_relay],
    )
    app.state.grpc_servicers = [user_service(app)]
    hasher = PasswordHasher(
        settings.argon2_time_cost, settings.argon2_memory_cost, settings.argon2_parallelism
    )
    outbox_written = asyncio.Event()
    app.state.outbox_relay = OutboxRelay(
        app.state.backends.database,
        app.state.backends.bus,
        poll_interval=settings.outbox_poll_interval,
        wake=outbox_written,
    )
    throttle = LoginThrottle(app.state.backends.cache, app.state.audit, settings)
    app.state.auth_service = AuthService(
        app.state.backends.database,
        hasher,
        app.state.tokens,
        app.state.audit,
        outbox_written,
        throttle=throttle,
        revocations=app.state.revocations,
        sessions=app.state.backends.pubsub,
        key_prefix=settings.key_prefix,
    )
    return app
