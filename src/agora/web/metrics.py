"""HTTP request metrics, labelled by route template: a pure ASGI middleware.

The label is the matched route's template (`/api/v1/conversations/{conversation_id}`),
read from the `route` Starlette's router puts in the scope, never the raw path: a path
no route matched counts as `UNMATCHED`, and a method outside the standard ones as
`other`, so no request can make a new label value. The labelled children are cached
per (route, method, status): the hot paths (the publications read, the token check)
pay a dict lookup, an increment and an observe.
"""

from __future__ import annotations

import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from agora.core.metrics import HTTP_DURATION, HTTP_REQUESTS

UNMATCHED = "<unmatched>"
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

_Children = tuple[Any, Any]  # (counter child, histogram child)


def route_label(scope: Scope) -> str:
    """The template of the route that answered, or UNMATCHED."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else UNMATCHED


class HttpMetricsMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._children: dict[tuple[str, str, int], _Children] = {}

    def children(self, route: str, method: str, status: int) -> _Children:
        key = (route, method, status)
        found = self._children.get(key)
        if found is None:
            labels = (route, method, str(status))
            found = (HTTP_REQUESTS.labels(*labels), HTTP_DURATION.labels(*labels))
            self._children[key] = found
        return found

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500  # what the client gets if the app fails before answering

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        started = time.perf_counter()
        try:
            await self.app(scope, receive, send_status)
        finally:
            method = scope["method"]
            if method not in METHODS:
                method = "other"
            requests, duration = self.children(route_label(scope), method, status)
            requests.inc()
            duration.observe(time.perf_counter() - started)
