"""A JWKS served over real HTTP by a test: its document can change (a rotation) and
its fetches are counted."""

from __future__ import annotations

from typing import Any

import orjson


class JwksApp:
    """ASGI: GET <anything> answers the JWKS of the issuer named by the path."""

    def __init__(self) -> None:
        self.documents: dict[str, dict[str, Any]] = {}
        self.fetches: dict[str, int] = {}

    def publish(self, path: str, *jwks: dict[str, Any]) -> None:
        self.documents[path] = {"keys": list(jwks)}

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        path = scope["path"]
        self.fetches[path] = self.fetches.get(path, 0) + 1
        document = self.documents.get(path)
        status = 200 if document is not None else 404
        body = orjson.dumps(document or {"error": "no such JWKS"})
        headers = [(b"content-type", b"application/json")]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
