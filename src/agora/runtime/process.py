"""The ASGI app one process serves: its service apps, their backends, its gRPC server.

Several services (the embedded app) are routed by path prefix exactly as nginx routes
them; a service run alone gets every path (its /docs included). The lifespan starts the
backends, enters each service's lifespan in turn, then starts the process's one gRPC
server hosting every service's servicers; it stops them in reverse.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from agora.grpc.server import GrpcServer, Registrar, process_server
from agora.ports.backends import Backends
from agora.web.access_log import AccessLog
from agora.web.security import SecurityHeadersMiddleware
from agora.web.service_app import ServiceApp

log = logging.getLogger("agora.process")


def registrars_of(apps: Sequence[ServiceApp]) -> list[Registrar]:
    """Every gRPC servicer the given service apps declared, in order."""
    return [register for app in apps for register in app.grpc_servicers]


class ProcessApp:
    def __init__(self, apps: Sequence[ServiceApp], backends: Backends, owns_backends: bool) -> None:
        self.apps = list(apps)
        self.backends = backends
        self.owns_backends = owns_backends
        self.grpc: GrpcServer | None = None  # the process's gRPC server, while running
        self.routes = sorted(
            ((prefix, app) for app in apps for prefix in app.context.path_prefixes),
            key=lambda item: len(item[0]),
            reverse=True,
        )
        # A path no service answers gets the same headers as the services' answers.
        self.not_found = SecurityHeadersMiddleware(
            JSONResponse({"error": "Not found"}, status_code=404),
            hsts=any(app.context.settings.cookie_secure for app in apps),
        )
        self.serve: ASGIApp = self.dispatch
        if apps[0].context.settings.access_log:
            self.serve = AccessLog(self.dispatch)

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
            for app in self.apps:
                await stack.enter_async_context(app.router.lifespan_context(app))
            # One gRPC server for the process, hosting every service's servicers; it
            # stops first (the stack unwinds in reverse), before what they use.
            self.grpc = process_server(self.apps[0].context.settings, registrars_of(self.apps))
            if self.grpc is not None:
                await self.grpc.start()
                stack.push_async_callback(self.grpc.stop)
            yield

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        await self.serve(scope, receive, send)

    async def dispatch(self, scope: Scope, receive: Receive, send: Send) -> None:
        """A request or a socket to the service app whose path prefix it has."""
        app = self.app_for(scope["path"])
        if app is not None:
            await app(scope, receive, send)
        elif scope["type"] == "http":
            await self.not_found(scope, receive, send)
        else:  # a websocket to an unknown path
            await send({"type": "websocket.close", "code": 4404})

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
