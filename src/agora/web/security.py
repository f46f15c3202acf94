"""HTTP policy every service shares: security headers, a request body limit, CORS.

Pure ASGI middleware rather than BaseHTTPMiddleware: they touch only the response-start
message and the receive channel, so responses still stream, and the cost per request is
a header list built once at start plus a few set lookups.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence

from starlette.applications import Starlette
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from agora.core.settings import Settings
from agora.web.errors import error_response

Header = tuple[bytes, bytes]

# An API serves JSON, never a page: nothing may load, run, frame or be framed.
API_CSP = "default-src 'none'; frame-ancestors 'none'"
# FastAPI's /docs (Swagger UI) and /redoc pages load their scripts and styles from a CDN
# and start them with an inline script. Only those pages get this policy; their inline
# script is FastAPI's own with our OpenAPI document, no user input is reflected there.
DOCS_CSP = (
    "default-src 'none'; "
    "script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
    "style-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net https://fonts.googleapis.com; "
    "font-src https://fonts.gstatic.com; "
    "img-src 'self' data: https://fastapi.tiangolo.com https://cdn.redoc.ly; "
    "connect-src 'self'; worker-src blob:; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)
HSTS = "max-age=31536000; includeSubDomains"
# Versions whose request without Transfer-Encoding has exactly its Content-Length, or no body.
HTTP1 = ("1.0", "1.1")

CORS_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
CORS_HEADERS = ("Authorization", "Content-Type", "X-CSRF-Token")
# Not CORS-safelisted, yet a browser client needs it to back off after a 429.
CORS_EXPOSED = ("Retry-After",)
CORS_MAX_AGE = 600


def security_headers(*, hsts: bool, csp: str = API_CSP) -> list[Header]:
    """Every response's defaults. `Cache-Control: no-store` is among them: tokens, cookies
    and user data must never sit in a shared or browser cache; a route that may be
    cached (the JWKS document) sets its own Cache-Control, which is kept."""
    headers = {
        "cache-control": "no-store",
        "x-content-type-options": "nosniff",
        "x-frame-options": "DENY",
        "referrer-policy": "no-referrer",
        "content-security-policy": csp,
        "cross-origin-opener-policy": "same-origin",
        "cross-origin-resource-policy": "same-origin",
        "permissions-policy": "camera=(), microphone=(), geolocation=(), payment=(), usb=()",
    }
    if hsts:  # only on an HTTPS deployment; browsers ignore it over plain http anyway
        headers["strict-transport-security"] = HSTS
    return [(name.encode("latin-1"), value.encode("latin-1")) for name, value in headers.items()]


class SecurityHeadersMiddleware:
    """Adds the default headers to every HTTP response, never replacing one already set.

    It must wrap the whole app, outside Starlette's ServerErrorMiddleware, for the 500
    page to carry them too (`web.app.ServiceApp` puts it there).
    """

    def __init__(self, app: ASGIApp, *, hsts: bool, docs_paths: Collection[str] = ()) -> None:
        self.app = app
        self.headers = security_headers(hsts=hsts)
        self.docs_headers = security_headers(hsts=hsts, csp=DOCS_CSP)
        self.docs_paths = frozenset(docs_paths)
        self.names = frozenset(name for name, _ in self.headers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        defaults = self.docs_headers if scope["path"] in self.docs_paths else self.headers
        names = self.names

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                # A new list: Starlette hands over the Response's own raw_headers, and
                # a Response may be sent many times (the embedded app's 404).
                raw = message.get("headers", ())
                present = {name.lower() for name, _ in raw}
                if present.isdisjoint(names):  # the usual case, and the cheapest
                    headers = [*raw, *defaults]
                else:
                    headers = [*raw, *(h for h in defaults if h[0] not in present)]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


class RequestBodyTooLarge(Exception):
    """Raised from `receive` once a streamed body passes the limit."""


def _too_large(exc: BaseException) -> bool:
    if isinstance(exc, BaseExceptionGroup):  # raised inside a task group
        return exc.split(RequestBodyTooLarge)[1] is None
    return isinstance(exc, RequestBodyTooLarge)


async def _reply_too_large(scope: Scope, receive: Receive, send: Send) -> None:
    response = error_response(413, "Request body too large")
    # The rest of the body will not be read: the connection cannot be reused.
    response.headers["Connection"] = "close"
    await response(scope, receive, send)


class BodyLimitMiddleware:
    """413 for a request body over `max_bytes`; the app never buffers more than that.

    A declared Content-Length over the limit is refused before the app runs. A body
    without one (chunked) is counted as it arrives; past the limit `receive` raises,
    and whatever the app answers then (a 400 from a route that catches every error, a
    500) is replaced with the 413. Starlette's own `max_body_size` is not used: it
    answers in plain text, and only signals by that exception, which a route's broad
    `except` turns into its own error.

    `path_limits` gives exact paths a limit of their own (an upload route); every other
    path keeps `max_bytes`.
    """

    def __init__(
        self, app: ASGIApp, max_bytes: int, path_limits: Mapping[str, int] | None = None
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.path_limits = dict(path_limits or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.path_limits.get(scope["path"], self.max_bytes)
        length, chunked = _framing(scope["headers"])
        if length is not None and length > limit:
            await _reply_too_large(scope, receive, send)
        elif length is not None or (not chunked and scope.get("http_version", "1.1") in HTTP1):
            # HTTP/1 delivers exactly the declared length, or no body at all without
            # Transfer-Encoding (RFC 9112, 6.3): nothing to count, a GET costs nothing.
            await self.app(scope, receive, send)
        else:
            await _CountedBody(self.app, limit, scope, receive, send).run()


class _CountedBody:
    """One request whose body has no declared length."""

    def __init__(
        self, app: ASGIApp, max_bytes: int, scope: Scope, receive: Receive, send: Send
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.scope = scope
        self._receive = receive
        self._send = send
        self.received = 0
        self.exceeded = False
        self.started = False  # the app's response, or our 413

    async def run(self) -> None:
        try:
            await self.app(self.scope, self.receive, self.send)
        except Exception as exc:
            if not self.exceeded:
                raise
            if not self.started:
                self.started = True
                await _reply_too_large(self.scope, self._receive, self._send)
            if not _too_large(exc):
                raise

    async def receive(self) -> Message:
        if self.exceeded:
            raise RequestBodyTooLarge
        message = await self._receive()
        if message["type"] == "http.request":
            self.received += len(message.get("body", b""))
            if self.received > self.max_bytes:
                self.exceeded = True
                raise RequestBodyTooLarge
        return message

    async def send(self, message: Message) -> None:
        if self.exceeded:
            # The app's answer to a body it could not read is replaced by the 413.
            if message["type"] == "http.response.start" and not self.started:
                self.started = True
                await _reply_too_large(self.scope, self._receive, self._send)
            return
        if message["type"] == "http.response.start":
            self.started = True
        await self._send(message)


def _framing(headers: Sequence[Header]) -> tuple[int | None, bool]:
    """The declared Content-Length, and whether a Transfer-Encoding is present."""
    length: int | None = None
    chunked = False
    for name, value in headers:
        if name == b"content-length":
            try:
                length = int(value)
            except ValueError:  # servers refuse these; count the body instead
                chunked = True
        elif name == b"transfer-encoding":
            chunked = True
    return (None if chunked else length), chunked


def install_http_policy(
    app: Starlette, settings: Settings, body_limits: Mapping[str, int] | None = None
) -> None:
    """The body limit, and CORS when origins are set, as the app's own middleware.

    CORS goes outside the limit so a browser may read a 413. Without origins there is
    no CORS middleware at all: no Access-Control-* header, a preflight gets a 405.
    `body_limits`: exact paths with a body limit of their own (uploads).
    """
    app.add_middleware(
        BodyLimitMiddleware, max_bytes=settings.max_body_bytes, path_limits=body_limits
    )
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,  # validated: never "*" (cookies allowed)
            allow_credentials=True,
            allow_methods=CORS_METHODS,
            allow_headers=CORS_HEADERS,
            expose_headers=CORS_EXPOSED,
            max_age=CORS_MAX_AGE,
        )
