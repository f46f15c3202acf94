"""`token_required` for the platform's Flask services: the same checks as Agora's own guard.

    from agora.contrib.flask import init_app, token_required

    app = Flask(__name__)
    app.config["AGORA_JWT_SECRET"] = os.environ["AGORA_JWT_SECRET"]
    init_app(app)               # optional: done on the first protected request otherwise

    @app.get("/api/things")
    @token_required
    def things():
        return {"owner": g.current_user.user_id}

The token is read from `Authorization: Bearer`, then the `auth_token` cookie, then
`jwt_token`, and verified by `agora.security.tokens.TokenService` (signature, algorithm
allow-list, exp/nbf/iss/aud/typ). Any refusal is 401 JSON `{"error": ...}` with
`WWW-Authenticate: Bearer`. As in Agora's own guard, a state-changing request that
rides on the cookie must carry the double-submit `X-CSRF-Token` (else 403).
Flask is an optional extra: `pip install 'agora[flask]'`.
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import threading
from collections.abc import Callable, Mapping
from typing import Any, TypeVar, cast

try:
    from flask import Flask, Response, current_app, g, jsonify, request
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError("agora.contrib.flask needs Flask: pip install 'agora[flask]'") from exc

from agora.core.audit import Audit
from agora.core.settings import MIN_SECRET_BYTES
from agora.security.tokens import MISSING, Identity, TokenError, TokenService
from agora.web.cookies import AUTH_COOKIE, CSRF_COOKIE, LEGACY_COOKIE
from agora.web.csrf import CSRF_HEADER, SAFE_METHODS, csrf_token_for, derive_csrf_key

EXTENSION = "agora.tokens"
WWW_AUTHENTICATE = 'Bearer realm="agora", error="invalid_token"'

RevocationCheck = Callable[[Identity], bool]
View = TypeVar("View", bound=Callable[..., Any])


def tokens_from_config(config: Mapping[str, Any]) -> TokenService:
    """A TokenService from `AGORA_*` keys of a Flask config, named as the settings are."""
    secret = config.get("AGORA_JWT_SECRET")
    if not secret or len(str(secret).encode()) < MIN_SECRET_BYTES:
        raise RuntimeError(
            f"AGORA_JWT_SECRET must be set in the Flask config, at least {MIN_SECRET_BYTES} "
            "bytes, and the same as the auth service's"
        )
    return TokenService(
        str(secret),
        issuer=config.get("AGORA_JWT_ISSUER", "agora-auth"),
        audience=config.get("AGORA_JWT_AUDIENCE", "agora"),
        leeway=int(config.get("AGORA_TOKEN_LEEWAY", 30)),
        cache_size=int(config.get("AGORA_VERIFIED_TOKEN_CACHE_SIZE", 10_000)),
    )


class FlaskTokenGuard:
    """What one Flask app verifies tokens with; built once per app by `init_app`."""

    def __init__(
        self, tokens: TokenService, audit: Audit, is_revoked: RevocationCheck | None = None
    ) -> None:
        self.tokens = tokens
        self.audit = audit
        self.is_revoked = is_revoked
        # TokenService's verified-token cache is not thread-safe, and Flask servers
        # (threaded dev server, gunicorn gthread) run views on several threads.
        self._lock = threading.Lock()

    def authenticate(self, token: str | None) -> Identity:
        if not token:
            raise MISSING
        with self._lock:
            identity = self.tokens.verify(token)
        if self.is_revoked is not None and self.is_revoked(identity):
            raise TokenError("Token revoked", "revoked")
        return identity

    def reject(self, error: TokenError) -> Response:
        self._audit("auth.rejected", 401, error.reason)
        response = jsonify(error=error.message)
        response.status_code = 401
        response.headers["WWW-Authenticate"] = WWW_AUTHENTICATE
        return response

    def reject_csrf(self) -> Response:
        self._audit("auth.csrf_rejected", 403, "csrf")
        response = jsonify(error="CSRF token missing or invalid")
        response.status_code = 403
        return response

    def _audit(self, event: str, status: int, reason: str) -> None:
        # A Flask view runs outside any event loop, so the async audit call gets its own.
        asyncio.run(
            self.audit.record(
                event, status=status, reason=reason, path=request.path, ip=request.remote_addr
            )
        )


_init_lock = threading.Lock()


def init_app(
    app: Flask,
    tokens: TokenService | None = None,
    *,
    audit: Audit | None = None,
    is_revoked: RevocationCheck | None = None,
) -> FlaskTokenGuard:
    """Attach the guard to `app`; without `tokens`, build them from `app.config`.

    Raises RuntimeError at once when the config has no usable secret, so a
    misconfigured service fails at start rather than on its first request.
    """
    guard = FlaskTokenGuard(
        tokens or tokens_from_config(app.config), audit or Audit(app.name), is_revoked
    )
    app.extensions[EXTENSION] = guard
    return guard


def guard_of(app: Flask) -> FlaskTokenGuard:
    guard = app.extensions.get(EXTENSION)
    if guard is None:
        with _init_lock:  # two first requests on two threads must not build two guards
            guard = app.extensions.get(EXTENSION) or init_app(app)
    return cast(FlaskTokenGuard, guard)


def extract_token() -> tuple[str | None, bool]:
    """The token and whether it came from a cookie (which makes the CSRF check apply)."""
    header = request.headers.get("Authorization")
    if header:
        scheme, _, credentials = header.partition(" ")
        if scheme.lower() == "bearer":
            return credentials.strip(), False
    token = request.cookies.get(AUTH_COOKIE) or request.cookies.get(LEGACY_COOKIE)
    return token, token is not None


def csrf_ok(jti: str) -> bool:
    """Same double-submit rule as agora.web.csrf, on Flask's request."""
    if request.method in SAFE_METHODS:
        return True
    sent = request.headers.get(CSRF_HEADER, "").encode()
    cookie = request.cookies.get(CSRF_COOKIE, "").encode()
    # Keyed like the services' (agora.web.csrf): AGORA_CSRF_SECRET, else AGORA_JWT_SECRET.
    config = current_app.config
    secret = config.get("AGORA_CSRF_SECRET") or config.get("AGORA_JWT_SECRET")
    if not secret:
        return False
    expected = csrf_token_for(jti, derive_csrf_key(str(secret))).encode()
    return bool(sent) and hmac.compare_digest(sent, cookie) and hmac.compare_digest(sent, expected)


def token_required(view: View) -> View:
    """Decorator: 401 JSON unless a valid token came (403 for a cookie request without
    its CSRF token); the identity lands in `g.current_user`."""

    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        guard = guard_of(current_app._get_current_object())  # type: ignore[attr-defined]
        token, from_cookie = extract_token()
        try:
            identity = guard.authenticate(token)
        except TokenError as error:
            return guard.reject(error)
        if from_cookie and not csrf_ok(identity.jti):
            return guard.reject_csrf()
        g.current_user = identity
        return view(*args, **kwargs)

    return cast(View, wrapper)
