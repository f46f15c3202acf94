"""The ASGI app one process serves: its service apps, their backends, its gRPC server.

Several services (the embedded app) are routed by path prefix exactly as nginx routes
them; a service run alone gets every path (its /docs included). The lifespan starts the
backends, enters each service's lifespan in turn, then starts the process's one gRPC
server hosting every service's servicers; it stops them in reverse.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager

from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from agora.core import metrics
from agora.core.background import cancel_and_wait
from agora.grpc.server import GrpcServer, Registrar, process_server
from agora.ports.backends import Backends
from agora.runtime.api_docs import ApiDocs
from agora.runtime.health import (
    HEALTH_PATHS,
    Readiness,
    backend_probes,
    health_endpoint,
    wait_until_reachable,
    workers_probe,
)
from agora.runtime.web_client import WebClient
from agora.web.access_log import AccessLog
from agora.web.metrics import HttpMetricsMiddleware
from agora.web.security import SecurityHeadersMiddleware
from agora.web.service_app import ServiceApp

log = logging.getLogger("agora.process")


def registrars_of(apps: Sequence[ServiceApp]) -> list[Registrar]:
    """Every gRPC servicer the given service apps declared, in order."""
    return [register for app in apps for register in app.grpc_servicers]


class ProcessApp:
    def __init__(
        self,
        apps: Sequence[ServiceApp],
        backends: Backends,
        owns_backends: bool,
        web_client: WebClient | None = None,
    ) -> None:
        self.apps = list(apps)
        self.web_client = web_client  # the browser app at / (all-in-one process only)
        self.backends = backends
        self.owns_backends = owns_backends
        self.grpc: GrpcServer | None = None  # the process's gRPC server, while running
        self.routes = sorted(
            ((prefix, app) for app in apps for prefix in app.context.path_prefixes),
            key=lambda item: len(item[0]),
            reverse=True,
        )
        # A path no service answers gets the same headers as the services' answers.
        hsts = any(app.context.settings.cookie_secure for app in apps)
        self.not_found = SecurityHeadersMiddleware(
            JSONResponse({"error": "Not found"}, status_code=404), hsts=hsts
        )
        # Health and readiness of the whole process, whatever services it runs
        # (runtime/health.py). In prod, the services start only once every configured
        # backend answers; meanwhile the process serves /healthz and /readyz (not ready).
        settings = self.apps[0].context.settings
        self.probes = backend_probes(settings, backends)
        self.wait_for_backends = settings.env == "prod"
        self.started = False
        self.start_failure: str | None = None
        self.readiness = Readiness([*self.probes, workers_probe(self.apps, self._not_started)])
        self.health = SecurityHeadersMiddleware(health_endpoint(self.readiness), hsts=hsts)
        self.not_ready = SecurityHeadersMiddleware(
            JSONResponse({"error": "Service unavailable"}, 503, {"Retry-After": "1"}), hsts=hsts
        )
        self.metrics_served = apps[0].context.settings.metrics_served
        # Several services in one process: one OpenAPI document for all, and its
        # Swagger UI (a service alone serves its own: web/app.py).
        self.api_docs: ASGIApp | None = None
        if len(self.apps) > 1 and settings.openapi_served:
            self.api_docs = SecurityHeadersMiddleware(
                ApiDocs(self.apps), hsts=hsts, docs_paths=[ApiDocs.PAGE]
            )
        self.http = HttpMetricsMiddleware(self._route)
        # The access log sees every request and socket but the health probes.
        self.serve: ASGIApp = self._handle
        if settings.access_log:
            self.serve = AccessLog(self._handle)

    def _not_started(self) -> str | None:
        if self.started:
            return None
        return self.start_failure or "waiting for backends"

    def app_for(self, path: str) -> ServiceApp | None:
        if len(self.apps) == 1:
            return self.apps[0]
        for prefix, app in self.routes:
            if path.startswith(prefix):
                return app
        return None

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            await self.backends.start()
            if self.owns_backends:
                stack.push_async_callback(self.backends.close)
            if self.wait_for_backends:
                await wait_until_reachable(self.probes)
            for app in self.apps:
                await stack.enter_async_context(app.router.lifespan_context(app))
            # One gRPC server for the process, hosting every service's servicers; it
            # stops first (the stack unwinds in reverse), before what they use.
            self.grpc = process_server(self.apps[0].context.settings, registrars_of(self.apps))
            if self.grpc is not None:
                await self.grpc.start()
                stack.push_async_callback(self.grpc.stop)
            stack.callback(metrics.process_exiting)
            self.started = True
            try:
                yield
            finally:
                self.started = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await (self._deferred_lifespan if self.wait_for_backends else self._lifespan)(
                receive, send
            )
            return
        if scope["type"] == "http" and scope["path"] in HEALTH_PATHS:
            await self.health(scope, receive, send)  # probes stay out of the access log
            return
        await self.serve(scope, receive, send)

    async def _handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            if scope["path"] == "/metrics" and self.metrics_served:
                await self._metrics(scope, receive, send)
            else:
                await self.http(scope, receive, send)
            return
        await self._route(scope, receive, send)

    async def _route(self, scope: Scope, receive: Receive, send: Send) -> None:
        """A request or a socket to the service app whose path prefix it has."""
        app = self.app_for(scope["path"])
        if self.api_docs is not None and scope["path"] in ApiDocs.PATHS:
            await self.api_docs(scope, receive, send)  # needs no backend: served at once
        elif self.wait_for_backends and not self.started:
            if scope["type"] == "http":
                await self.not_ready(scope, receive, send)
            else:  # 1013: try again later
                await send({"type": "websocket.close", "code": 1013})
        elif app is not None:
            await app(scope, receive, send)
        elif (
            scope["type"] == "http"
            and self.web_client is not None
            and self.web_client.serves(scope["path"])
        ):
            await self.web_client(scope, receive, send)
        elif scope["type"] == "http":
            await self.not_found(scope, receive, send)
        else:  # a websocket to an unknown path
            await send({"type": "websocket.close", "code": 4404})

    async def _metrics(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Not counted in the HTTP metrics: scrapes would move the numbers they read.
        body = metrics.exposition()
        await Response(body, media_type=metrics.CONTENT_TYPE)(scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        await receive()  # lifespan.startup
        started = False
        try:
            async with self.running():
                await send({"type": "lifespan.startup.complete"})
                started = True
                await receive()  # lifespan.shutdown
        except Exception as exc:
            log.exception("lifespan failed")
            phase = "shutdown" if started else "startup"
            await send({"type": f"lifespan.{phase}.failed", "message": repr(exc)})
            return
        await send({"type": "lifespan.shutdown.complete"})

    async def _deferred_lifespan(self, receive: Receive, send: Send) -> None:
        """Production: the server answers at once (/healthz 200, /readyz 503) while the
        services wait for their backends in a task of their own, then start."""
        await receive()  # lifespan.startup
        stopping = asyncio.Event()

        async def start_then_serve() -> None:
            try:
                async with self.running():
                    log.info("every backend answers: services started")
                    await stopping.wait()
            except Exception as exc:
                # Not ready for good, with the reason in /readyz: a visible failure.
                self.start_failure = f"failed: {exc!r}"[:300]
                log.exception("services failed to start; the process stays not ready")

        task = asyncio.create_task(start_then_serve(), name="process-start")
        await send({"type": "lifespan.startup.complete"})
        await receive()  # lifespan.shutdown
        stopping.set()
        if self.started:
            await task  # a clean stop, in the usual order
        else:
            await cancel_and_wait(task)  # still waiting for a backend
        await send({"type": "lifespan.shutdown.complete"})
