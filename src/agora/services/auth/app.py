from __future__ import annotations

import asyncio

from agora.core.settings import Settings
from agora.grpc.auth import GrpcAuthenticator
from agora.ports.backends import Backends
from agora.security.passwords import PasswordHasher
from agora.services.auth.grpc_api import user_service
from agora.services.auth.outbox_relay import OutboxRelay
from agora.services.auth.registration_throttle import RegistrationThrottle
from agora.services.auth.routes import router
from agora.services.auth.service import AuthService
from agora.services.auth.throttle import LoginThrottle
from agora.services.auth.user_lookup import router as user_lookup_router
from agora.web.app import build_service_app
from agora.web.service_app import ServiceApp

PATH_PREFIXES = ("/auth/", "/login")


def create_app(settings: Settings, backends: Backends) -> ServiceApp:
    # The hooks run at startup, once `relay` (made below) exists.
    async def start_relay() -> None:
        await relay.start()

    async def stop_relay() -> None:
        await relay.stop()
        hasher.close()

    app = build_service_app(
        name="auth",
        settings=settings,
        backends=backends,
        routers=[router, user_lookup_router],
        path_prefixes=PATH_PREFIXES,
        on_start=[start_relay],
        on_stop=[stop_relay],
    )
    context = app.context
    app.grpc_servicers = [
        user_service(backends.database, GrpcAuthenticator(context.guard, context.audit))
    ]
    hasher = PasswordHasher(
        settings.argon2_time_cost,
        settings.argon2_memory_cost,
        settings.argon2_parallelism,
        lanes={
            "login": (settings.password_login_workers, settings.password_login_queue),
            "register": (settings.password_register_workers, settings.password_register_queue),
        },
    )
    outbox_written = asyncio.Event()
    relay = OutboxRelay(
        backends.database,
        backends.bus,
        poll_interval=settings.outbox_poll_interval,
        wake=outbox_written,
    )
    app.workers["outbox relay"] = lambda: relay.alive
    throttle = LoginThrottle(backends.cache, context.audit, settings)
    app.provide(
        AuthService(
            backends.database,
            hasher,
            context.tokens,
            context.audit,
            outbox_written,
            throttle=throttle,
            registration_throttle=RegistrationThrottle(backends.cache, context.audit, settings),
            revocations=context.revocations,
            sessions=backends.pubsub,
            key_prefix=settings.key_prefix,
        )
    )
    return app
