"""Double-submit CSRF protection for requests authenticated by the cookie.

A browser sends the `auth_token` cookie on its own, so a state-changing request that
rides on it must also carry `X-CSRF-Token`, equal to the readable `csrf_token` cookie
that only a page of our own origin can read. The value is derived from the session
token's `jti`, so it is bound to that session: a cookie planted by a sibling domain
does not match the victim's session. Requests with a Bearer header are exempt: a
browser never adds that header by itself.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

from starlette.requests import Request

from agora.web.cookies import CSRF_COOKIE

CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def csrf_token_for(jti: str) -> str:
    digest = hashlib.sha256(b"agora-csrf:" + jti.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def csrf_ok(request: Request, jti: str) -> bool:
    if request.method in SAFE_METHODS:
        return True
    sent = request.headers.get(CSRF_HEADER, "")
    cookie = request.cookies.get(CSRF_COOKIE, "")
    expected = csrf_token_for(jti)
    return (
        bool(sent)
        and hmac.compare_digest(sent.encode(), cookie.encode())
        and hmac.compare_digest(sent.encode(), expected.encode())
    )
