"""/openapi.json and /docs of a process running several services (`make run`).

The document is the services' own documents merged (`web/openapi.merged`), so each
path carries the prefix it has under nginx too; it is made on the first request and
kept. A WebSocket or another method gets the usual JSON errors.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send

from agora import __version__
from agora.web.openapi import documents_of, merged, swagger_page
from agora.web.service_app import ServiceApp


class ApiDocs:
    DOCUMENT = "/openapi.json"
    PAGE = "/docs"
    PATHS = frozenset({DOCUMENT, PAGE})

    def __init__(self, apps: Sequence[ServiceApp]) -> None:
        self.apps = list(apps)
        self._document: dict[str, Any] | None = None

    def document(self) -> dict[str, Any]:
        if self._document is None:
            self._document = merged(documents_of(self.apps), "Agora", __version__)
        return self._document

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await send({"type": "websocket.close", "code": 4404})
            return
        response: Response
        if scope["method"] not in ("GET", "HEAD"):
            response = JSONResponse(
                {"error": "Method Not Allowed"}, 405, headers={"Allow": "GET, HEAD"}
            )
        elif scope["path"] == self.DOCUMENT:
            response = JSONResponse(self.document())
        else:
            response = swagger_page(self.DOCUMENT, "Agora")
        await response(scope, receive, send)
