"""Login CSRF: the routes that set or clear the session cookies refuse cross-site requests.

SameSite=Strict keeps the victim's cookie off a cross-site request, but not a cookie the
*answer* sets: a page elsewhere that auto-posts a form (urlencoded, multipart or
text/plain, which need no CORS preflight) to the login route would log the victim's
browser in as the attacker, whose account then receives what the victim writes. The
CSRF token cannot help there: before login there is no session to bind it to. So these
routes look at what the browser says about where the request comes from (OWASP CSRF
cheat sheet, "Verifying origin with standard headers" and "Fetch Metadata"):

1. `Sec-Fetch-Site` (every current browser sends it; a page cannot set or change it):
   `same-origin`, and `none` (the user typed or bookmarked it), pass; `same-site` and
   `cross-site` pass only when `Origin` is one of `AGORA_CORS_ORIGINS`, the origins the
   deployment trusts with cookies already. `same-site` is no exception: another port
   or a sibling subdomain is another origin, and SameSite cookies do reach it.
2. Without it (an older browser), `Origin`: passes when it names this very host (the
   `Host` header, as the client sent it or as nginx forwards it, which drops the port)
   or one of `AGORA_CORS_ORIGINS`; `null` (sandboxed frames, `data:` pages) never does.
3. With neither header the request did not come from a browser page (curl, Postman,
   a server, a test client): it passes. Such a client holds its own cookie jar, so
   there is no victim's cookie to replace.

A refusal is a 403 JSON answer and an `auth.cross_site_refused` audit event.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import Depends, Request

from agora.core.errors import Forbidden
from agora.web.deps import app_of

CROSS_SITE_REFUSED = "Cross-site request refused on a route that sets the session cookie"
DEFAULT_PORTS = {"http": 80, "https": 443}
# What the audit trail keeps of a header the client chose.
MAX_AUDITED_CHARS = 200


def _host_and_port(netloc: str, default_port: int | None) -> tuple[str, int | None]:
    parts = urlsplit(f"//{netloc}")
    try:
        port = parts.port
    except ValueError:  # a port that is no number
        return "", None
    return (parts.hostname or ""), (port if port is not None else default_port)


def _is_this_host(origin: str, host_header: str) -> bool:
    """`Origin` names the host the request was sent to. A `Host` without a port (nginx
    forwards `$host`) matches the hostname alone; with a port, both must match."""
    parts = urlsplit(origin)
    if parts.scheme not in DEFAULT_PORTS or not parts.netloc:
        return False
    origin_host, origin_port = _host_and_port(parts.netloc, DEFAULT_PORTS[parts.scheme])
    host, port = _host_and_port(host_header, None)
    if not origin_host or origin_host != host:
        return False
    return port is None or port == origin_port


def cross_site_reason(
    sec_fetch_site: str | None, origin: str | None, host: str, allowed: Collection[str]
) -> str | None:
    """Why this request is refused as cross-site, or None when it may go on."""
    site = (sec_fetch_site or "").strip().lower()
    origin = origin.strip().lower() if origin is not None else None
    if site in ("same-origin", "none"):
        return None
    if site:  # same-site, cross-site, or a value we do not know
        return None if origin in allowed else f"sec-fetch-site {site}"
    if origin is None:
        return None  # no browser page sent this (see the module's docstring)
    if origin in allowed or _is_this_host(origin, host):
        return None
    return "origin"


async def refuse_cross_site(request: Request) -> None:
    """Dependency of every route that sets or clears the session cookies."""
    context = app_of(request).context
    headers = request.headers
    reason = cross_site_reason(
        headers.get("sec-fetch-site"),
        headers.get("origin"),
        headers.get("host", ""),
        context.settings.cors_origins,
    )
    if reason is None:
        return
    await context.audit.record(
        "auth.cross_site_refused",
        status=403,
        reason=reason,
        path=request.url.path[:MAX_AUDITED_CHARS],
        origin=(headers.get("origin") or "")[:MAX_AUDITED_CHARS] or None,
        ip=request.client.host if request.client else None,
    )
    raise Forbidden(CROSS_SITE_REFUSED)


SameOriginOnly = Annotated[None, Depends(refuse_cross_site)]
