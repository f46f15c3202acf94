"""`AccessLog`: one `agora.access` line per HTTP request and per WebSocket connection.

Pure ASGI (no BaseHTTPMiddleware, no Request object): it only watches the messages go by,
so a request pays a wrapped `send` and one log record. Fields: method (`WS` for a socket),
path, route (the template that matched, e.g. /api/publications/{publication_id}),
status (for a socket: its close code, or the HTTP status it was refused with),
duration_ms (for a socket: how long it was open), user_id when the caller was
authenticated, client (ip), and for HTTP the query when there is one, with every
token, ticket and JWT in it redacted; a socket's query (its ticket) is never written.
A line is written when the request ends, so a 404 or a refused socket leaves one too.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from agora.core.logs import SCOPE_ROUTE, SCOPE_USER_ID, printable, redact

log = logging.getLogger("agora.access")

# A socket that ends without a close frame either way (the server's task ended, the
# connection dropped): RFC 6455's "abnormal closure".
NO_CLOSE_FRAME = 1006


class AccessLog:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        # Not a coroutine itself: a socket keeps every frame it passes through alive for
        # as long as it is open, so this layer adds one frame, not two.
        kind = scope["type"]
        if kind not in ("http", "websocket") or not log.isEnabledFor(logging.INFO):
            return self.app(scope, receive, send)
        started = time.perf_counter()
        if kind == "http":
            return self._http(scope, receive, send, started)
        return self._socket(scope, receive, send, started)

    async def _http(self, scope: Scope, receive: Receive, send: Send, started: float) -> None:
        status = 500  # raised before answering: the server answers 500

        async def watch(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, watch)
        finally:
            _write(scope, scope["method"], status, started)

    async def _socket(self, scope: Scope, receive: Receive, send: Send, started: float) -> None:
        code = NO_CLOSE_FRAME
        accepted = False

        async def watch_receive() -> Message:
            nonlocal code
            message = await receive()
            if message["type"] == "websocket.disconnect":
                code = message.get("code", 1000)
            return message

        async def watch_send(message: Message) -> None:
            nonlocal code, accepted
            kind = message["type"]
            if kind == "websocket.accept":
                accepted = True
            elif kind == "websocket.close":
                # Closed before the handshake, the client gets an HTTP 403 (ASGI spec).
                code = message.get("code", 1000) if accepted else 403
            elif kind == "websocket.http.response.start":  # refused with an HTTP answer
                code = message["status"]
            await send(message)

        try:
            await self.app(scope, watch_receive, watch_send)
        finally:
            _write(scope, "WS", code, started)


def _write(scope: Scope, method: str, status: int, started: float) -> None:
    duration_ms = round((time.perf_counter() - started) * 1000, 1)
    path = printable(scope["path"])  # decoded: %0A or %1B in a URL would be raw here
    fields: dict[str, Any] = {
        "method": method,
        "path": path,
        "route": _route(scope),
        "status": status,
        "duration_ms": duration_ms,
        "user_id": _user_id(scope),
        "client": scope["client"][0] if scope.get("client") else None,
    }
    query = scope.get("query_string")
    # A socket's query string carries its ticket: never written, whatever its name.
    if query and method != "WS":
        fields["query"] = printable(redact(query.decode("latin-1")))
    log.info("%s %s %s %.1fms", method, path, status, duration_ms, extra=fields)


def _route(scope: Scope) -> str | None:
    route = scope.get("route")  # set by FastAPI's router on the route that matched
    if route is not None:
        return getattr(route, "path_format", None) or getattr(route, "path", None)
    return scope.get(SCOPE_ROUTE)  # a socket route, served past the router


def _user_id(scope: Scope) -> str | None:
    user_id = scope.get(SCOPE_USER_ID)
    if user_id is not None:
        return str(user_id)
    state = scope.get("state")
    identity = state.get("current_user") if state else None  # set by web.guard
    return getattr(identity, "user_id", None)
