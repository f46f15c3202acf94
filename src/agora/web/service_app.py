"""`ServiceApp`: the FastAPI app of one service, holding what it was assembled with."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from fastapi import FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket

from agora.core.logs import SCOPE_ROUTE
from agora.web.context import ServiceContext
from agora.web.exact_routes import install_exact_routes
from agora.web.security import SecurityHeadersMiddleware

SocketEndpoint = Callable[[WebSocket], Awaitable[None]]
T = TypeVar("T")


class ServiceApp(FastAPI):
    """A FastAPI app with SecurityHeadersMiddleware outside its whole stack, holding what
    it was assembled with, typed: `context` (every service's), the service's own object
    (`provide`), the gRPC servicers it declares. Routes reach them through typed
    dependencies (`agora.web.deps`), never through `app.state`.

    Starlette's ServerErrorMiddleware answers a 500 straight to the server, past any
    middleware added with `add_middleware`; wrapping the built stack is the one place
    that sees every response, the 500 included.
    """

    def __init__(self, *, context: ServiceContext, hsts: bool, **kwargs: Any) -> None:
        # No trailing-slash redirects: Starlette writes them as absolute URLs built from
        # the request's Host header, so a forged Host came back in `location` (issue 11).
        # `/x/` for `/x` is a 404 like any other unknown path.
        kwargs.setdefault("redirect_slashes", False)
        super().__init__(**kwargs)
        self.context = context
        self.hsts = hsts
        self.sockets: dict[str, SocketEndpoint] = {}
        self._parts: dict[type[Any], Any] = {}
        # `agora.grpc.server.Registrar`s (the web layer does not import grpc); the
        # runtime hosts them on the process's one gRPC server.
        self.grpc_servicers: list[Callable[[Any], None]] = []
        # The service's background workers by name, each saying whether it runs; the
        # runtime's readiness (`/readyz`) reports them.
        self.workers: dict[str, Callable[[], bool]] = {}
        self._openapi_completed = False

    def openapi(self) -> dict[str, Any]:
        """FastAPI's document, completed with Agora's security schemes and error bodies
        (`web/openapi.complete`); made once."""
        if not self._openapi_completed:
            from agora.web.openapi import complete  # it imports the guard, which needs us

            self.openapi_schema = None
            self.openapi_schema = complete(self, super().openapi())
            self._openapi_completed = True
        assert self.openapi_schema is not None
        return self.openapi_schema

    def provide(self, part: object) -> None:
        """Keeps an object the service was assembled with, found again by its type
        (`provided`); one per type, a later one replaces it."""
        self._parts[type(part)] = part

    def provided(self, kind: type[T]) -> T:
        """The `kind` object given to `provide` (KeyError if none was)."""
        part: T = self._parts[kind]
        return part

    def add_socket_route(self, path: str, endpoint: SocketEndpoint) -> None:
        """A WebSocket route served past the middleware stack (see `__call__`)."""
        self.router.add_websocket_route(path, endpoint)
        self.sockets[path] = endpoint

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Every layer a socket passes through keeps its frame alive for the socket's
        # whole life: the stack (errors, CORS, body limit, exceptions, router, route)
        # cost about 6 KiB per idle socket (issue 5). None of it acts on a socket (the
        # HTTP policy skips them, the endpoint handles its own errors), so the socket
        # routes are called directly; a path they do not match takes the usual way.
        if scope["type"] == "websocket":
            endpoint = self.sockets.get(scope["path"])
            if endpoint is not None:
                scope["app"] = self
                scope[SCOPE_ROUTE] = scope["path"]  # for the access log
                await endpoint(WebSocket(scope, receive, send))
                return
        await super().__call__(scope, receive, send)

    def build_middleware_stack(self) -> ASGIApp:
        # Built at the first request, when every route is in: the hot routes marked
        # `@exact_route` get their exact-path dispatch at the router's entry.
        install_exact_routes(self)
        docs = (self.docs_url, self.redoc_url, self.swagger_ui_oauth2_redirect_url)
        return SecurityHeadersMiddleware(
            super().build_middleware_stack(),
            hsts=self.hsts,
            docs_paths=[path for path in docs if path],
        )
