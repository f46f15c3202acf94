"""The web client (web/, built into web/dist by `npm run web:build`) at `/` of the
all-in-one process (`make run`): a page and its hashed assets, from the same origin as
the API, so the session cookie (HttpOnly, SameSite=Strict) and the CSRF cookie work as
they do behind nginx, which serves the same files in the deployment.

Only `/`, the files at the top of dist and `/assets/...` are served here; every other
path stays the services' (and their JSON 404).
"""

from __future__ import annotations

from pathlib import Path

from starlette.staticfiles import StaticFiles
from starlette.types import Message, Receive, Scope, Send

import agora
from agora.core.settings import Settings
from agora.web.security import SecurityHeadersMiddleware

# The app's own policy: its scripts, styles and sockets come from this origin only.
WEB_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
# Hashed file names never change content: cached for good. The page itself is
# revalidated each time, so a new build is picked up at once.
IMMUTABLE = "public, max-age=31536000, immutable"
REVALIDATE = "no-cache"


def checkout_dist() -> Path:
    """web/dist of the checkout Agora runs from (an editable install: `make run`)."""
    return Path(agora.__file__).resolve().parents[2] / "web" / "dist"


def web_dist(settings: Settings) -> Path | None:
    """The built client to serve, or None: not built (or a wheel, which has none)."""
    dist = settings.web_dist_dir or checkout_dist()
    return dist if (dist / "index.html").is_file() else None


class WebClient:
    def __init__(self, dist: Path, *, hsts: bool) -> None:
        self.top = {"/", *(f"/{path.name}" for path in dist.iterdir() if path.is_file())}
        self.files = StaticFiles(directory=dist, html=True)
        # Outside: the defaults every answer has, never replacing the two set here.
        self.app = SecurityHeadersMiddleware(self._serve, hsts=hsts)

    def serves(self, path: str) -> bool:
        return path in self.top or path.startswith("/assets/")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)

    async def _serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        cache = IMMUTABLE if scope["path"].startswith("/assets/") else REVALIDATE

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [
                    *message.get("headers", ()),
                    (b"content-security-policy", WEB_CSP.encode()),
                    (b"cache-control", cache.encode()),
                ]
                message = {**message, "headers": headers}
            await send(message)

        await self.files(scope, receive, with_headers)
