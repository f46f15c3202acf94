from __future__ import annotations

import asyncio
import logging

from agora.core.background import Periodic
from agora.core.settings import Settings
from agora.grpc.auth import GrpcAuthenticator
from agora.ports.backends import Backends
from agora.ports.contacts import NOBODY
from agora.security.client_secrets import client_secrets
from agora.security.passwords import PasswordHasher
from agora.services.auth.grpc_api import user_service
from agora.services.auth.introspection import router as introspection_router
from agora.services.auth.outbox_relay import OutboxRelay
from agora.services.auth.registration_throttle import RegistrationThrottle
from agora.services.auth.routes import router
from agora.services.auth.service import AuthService
from agora.services.auth.throttle import LoginThrottle
from agora.services.auth.user_lookup import router as user_lookup_router
from agora.web.app import build_service_app
from agora.web.service_app import ServiceApp

PATH_PREFIXES = ("/auth/", "/login")

log = logging.getLogger("agora.auth")


def create_app(settings: Settings, backends: Backends) -> ServiceApp:
    # The hooks run at startup, once `relay` and `expiry` (made below) exist.
    async def start_workers() -> None:
        await relay.start()
        expiry.start((settings.session_sweep_interval, end_expired_sessions, "session-expiry"))

    async def stop_workers() -> None:
        await expiry.stop()
        await relay.stop()
        hasher.close()

    async def end_expired_sessions() -> None:
        ended = await service.end_expired_sessions()
        if ended:
            log.info("disconnected %d users whose last session expired", len(ended))

    app = build_service_app(
        name="auth",
        settings=settings,
        backends=backends,
        routers=[router, introspection_router, user_lookup_router],
        path_prefixes=PATH_PREFIXES,
        on_start=[start_workers],
        on_stop=[stop_workers],
    )
    context = app.context
    app.grpc_servicers = [
        user_service(
            backends.database,
            GrpcAuthenticator(context.guard, context.audit, client_secrets(settings)),
            # Users see their contacts only; closed (themselves only) with no answer.
            backends.contacts or NOBODY,
        )
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
    service = AuthService(
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
    app.provide(service)
    # A token that runs out ends its session with no request to say so: this does.
    expiry = Periodic()
    app.workers["session expiry"] = lambda: expiry.alive
    return app
