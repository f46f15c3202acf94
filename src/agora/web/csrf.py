"""Double-submit CSRF protection for requests authenticated by the cookie.

A browser sends the `auth_token` cookie on its own, so a state-changing request that
rides on it must also carry `X-CSRF-Token`, equal to the readable `csrf_token` cookie
that only a page of our own origin can read. Requests with a Bearer header are exempt:
a browser never adds that header by itself.

The value is an HMAC of the session token's `jti` under a server key, so it is bound to
that session (a cookie planted by a sibling domain does not match the victim's session)
and cannot be computed by whoever learns a `jti` (an unkeyed hash could be, from any log
holding a token or a socket ticket). The key is derived from `AGORA_CSRF_SECRET`, else
from `AGORA_JWT_SECRET`, so every service holding the same secret checks the same value.
With neither (a key-pair deployment outside prod, where the settings refuse it), no
token can be checked: cookie-authenticated writes are refused, Bearer requests work.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import secrets

from starlette.requests import Request

from agora.core.settings import Settings
from agora.web.cookies import CSRF_COOKIE

CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Separates this key from every other use of the same secret (token signatures).
KEY_LABEL = b"agora csrf-token key v2"


@functools.lru_cache(maxsize=4)
def derive_csrf_key(secret: str) -> bytes:
    return hmac.new(secret.encode(), KEY_LABEL, hashlib.sha256).digest()


def csrf_key(settings: Settings) -> bytes | None:
    """The server key of CSRF tokens, or None when no secret is configured."""
    secret = settings.csrf_secret or settings.jwt_secret
    value = secret.get_secret_value() if secret is not None else ""
    return derive_csrf_key(value) if value else None


def csrf_token_for(jti: str, key: bytes | None) -> str:
    if key is None:  # nothing to key it with: a value no check will ever accept
        return secrets.token_urlsafe(32)
    digest = hmac.new(key, b"agora-csrf:" + jti.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def csrf_ok(request: Request, jti: str, key: bytes | None) -> bool:
    if request.method in SAFE_METHODS:
        return True
    if key is None:
        return False
    sent = request.headers.get(CSRF_HEADER, "")
    cookie = request.cookies.get(CSRF_COOKIE, "")
    expected = csrf_token_for(jti, key)
    return (
        bool(sent)
        and hmac.compare_digest(sent.encode(), cookie.encode())
        and hmac.compare_digest(sent.encode(), expected.encode())
    )
