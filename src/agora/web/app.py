"""What every service app has in common: settings, guard, error handlers, lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import timedelta

from fastapi import APIRouter, FastAPI
from fastapi.telemetry import TelemetryConfig

from agora import __version__
from agora.adapters.audit_database import database_sink, purge_audit_events
from agora.core.audit import Audit
from agora.core.background import Periodic
from agora.core.settings import Settings
from agora.ports.backends import Backends
from agora.security.guard import TokenGuard
from agora.security.keyring import KeyRefresher, initial_keyset, peer_issuers
from agora.security.revocation import RevocationStore
from agora.security.tokens import TokenService
from agora.web.context import ServiceContext
from agora.web.errors import install_error_handlers
from agora.web.security import install_http_policy
from agora.web.service_app import ServiceApp

Hook = Callable[[], Awaitable[None]]
# Counts of anonymous refusals are written this long at most after their minute ends;
# rows past the retention are deleted this often.
AUDIT_FLUSH_INTERVAL = 10.0
AUDIT_PURGE_INTERVAL = 3600.0


def token_service(settings: Settings) -> TokenService:
    return TokenService(
        initial_keyset(settings),
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        ttl=settings.token_ttl,
        leeway=settings.token_leeway,
        cache_size=settings.verified_token_cache_size,
        peers=peer_issuers(settings),
    )


NO_TELEMETRY: TelemetryConfig = {"tracing": False, "metrics": False, "logs": False}


def build_service_app(
    *,
    name: str,
    settings: Settings,
    backends: Backends,
    routers: Sequence[APIRouter],
    path_prefixes: Sequence[str],
    audit: Audit | None = None,
    on_start: Sequence[Hook] = (),
    on_stop: Sequence[Hook] = (),
    body_limits: Mapping[str, int] | None = None,
) -> ServiceApp:
    """A FastAPI app for one service.

    `path_prefixes` are the public paths the service answers; the embedded app and
    nginx route on them. `backends` belong to the caller (`agora.runtime`), which
    starts and closes them, and serves the gRPC servicers the app declares in
    `app.grpc_servicers`. All of it is kept, typed, in `app.context` (`ServiceContext`).
    `body_limits`: exact paths whose request body may exceed `max_body_bytes` (uploads).
    """

    tokens = token_service(settings)
    keys = KeyRefresher(tokens, settings)
    revocations = RevocationStore(
        backends.cache,
        backends.database,
        settings.key_prefix,
        max_token_age=settings.token_ttl + settings.token_leeway,
    )

    # Every service stores its audit events in its own database, besides logging them.
    service_audit = audit or Audit(
        name,
        sink=database_sink(backends.database),
        refusal_detail=settings.audit_refusal_detail_per_minute,
    )
    audit_upkeep = Periodic()

    async def flush() -> None:
        await service_audit.flush_refusals()

    async def purge() -> None:
        await purge_audit_events(backends.database, timedelta(days=settings.audit_retention_days))

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await keys.start()
        await revocations.start()
        jobs: list[tuple[float, Hook, str]] = [
            (AUDIT_FLUSH_INTERVAL, flush, f"{name}-audit-refusals")
        ]
        if settings.audit_retention_days:
            jobs.append((AUDIT_PURGE_INTERVAL, purge, f"{name}-audit-retention"))
        audit_upkeep.start(*jobs)
        for hook in on_start:
            await hook()
        try:
            yield
        finally:
            for hook in reversed(on_stop):
                await hook()
            await audit_upkeep.stop()
            await service_audit.flush_refusals(everything=True)  # the counts so far
            await revocations.stop()
            await keys.stop()

    context = ServiceContext(
        name=name,
        settings=settings,
        backends=backends,
        audit=service_audit,
        tokens=tokens,
        revocations=revocations,
        guard=TokenGuard(tokens, service_audit, revocations, keys.refresh),
        path_prefixes=tuple(path_prefixes),
    )
    app = ServiceApp(
        context=context,
        hsts=settings.cookie_secure,  # Secure cookies mean the deployment is HTTPS
        title=f"Agora {name}",
        version=__version__,
        lifespan=lifespan,
        # Served alone, a service has its own /openapi.json and /docs (AGORA_OPENAPI).
        openapi_url="/openapi.json" if settings.openapi_served else None,
        docs_url="/docs" if settings.openapi_served else None,
        redoc_url="/redoc" if settings.openapi_served else None,
        # Agora's metrics and access lines are its own (core/metrics, web/access_log);
        # FastAPI's OpenTelemetry hooks, on by default, cost every request a look at
        # the global providers (~2 us here, issue 13) to find them unconfigured.
        telemetry=NO_TELEMETRY,
    )
    install_error_handlers(app)
    install_http_policy(app, settings, body_limits)
    for router in routers:
        app.include_router(router)
    return app
