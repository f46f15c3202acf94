"""`token_required` for the platform's Flask services: the same checks as Agora's own guard,
revocation included (docs/flask.md).

    from agora.contrib.flask import init_app, token_required

    app = Flask(__name__)
    app.config["AGORA_JWT_SECRET"] = os.environ["AGORA_JWT_SECRET"]
    app.config["AGORA_AUTH_URL"] = "http://auth.internal:8080"   # sees logout
    init_app(app)               # at start: a bad config fails here, not on a request

    @app.get("/api/things")
    @token_required
    def things():
        return {"owner": g.current_user.user_id}

The token is read from `Authorization: Bearer`, then the `auth_token` cookie, then
`jwt_token`, and verified by `agora.security.tokens.TokenService` (signature, algorithm
allow-list, exp/nbf/iss/aud/typ; AGORA_JWKS_URL keys and AGORA_TRUSTED_ISSUERS peers as
in Agora), then asked to the auth service's introspection endpoint (cached
AGORA_INTROSPECTION_CACHE_SECONDS) unless AGORA_REVOCATION_CHECK is False. Any refusal
is 401 JSON `{"error": ...}` with `WWW-Authenticate: Bearer` (503 when revocation
cannot be checked). As in Agora's own guard, a state-changing request that
rides on the cookie must carry the double-submit `X-CSRF-Token` (else 403).
Flask is an optional extra: `pip install 'agora[flask]'`.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import hmac
import inspect
import threading
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar, cast

try:
    from flask import Flask, Response, current_app, g, jsonify, request
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError("agora.contrib.flask needs Flask: pip install 'agora[flask]'") from exc

from agora.contrib.flask_config import (
    introspection_from_config,
    jwks_from_config,
    revocation_switched_off,
    tokens_from_config,
)
from agora.contrib.introspection import Introspection, RevocationUnavailable
from agora.core.audit import Audit
from agora.security.jwks import JwksSource
from agora.security.tokens import MISSING, Identity, TokenError, TokenService
from agora.web.cookies import AUTH_COOKIE, CSRF_COOKIE, LEGACY_COOKIE
from agora.web.csrf import CSRF_HEADER, SAFE_METHODS, csrf_token_for, derive_csrf_key

EXTENSION = "agora.tokens"
WWW_AUTHENTICATE = 'Bearer realm="agora", error="invalid_token"'

RevocationCheck = Callable[[Identity], bool]
View = TypeVar("View", bound=Callable[..., Any])
T = TypeVar("T")


class FlaskTokenGuard:
    """What one Flask app verifies tokens with; built once per app by `init_app`."""

    def __init__(
        self,
        tokens: TokenService,
        audit: Audit,
        is_revoked: RevocationCheck | None = None,
        *,
        jwks: JwksSource | None = None,
        introspection: Introspection | None = None,
    ) -> None:
        self.tokens = tokens
        self.audit = audit
        self.is_revoked = is_revoked
        self.jwks = jwks
        self.introspection = introspection
        self._secret_keys = tokens.keys
        # TokenService's verified-token cache is not thread-safe, and Flask servers
        # (threaded dev server, gunicorn gthread) run views on several threads.
        self._lock = threading.Lock()

    def start(self) -> None:
        """First JWKS fetches; a failure is logged and retried on the first unknown kid."""
        if self.jwks is not None and self.jwks.refresh_sync(force=True):
            self._install_jwks()
        if self.tokens.peers is not None:
            self.tokens.peers.start_sync()

    def _install_jwks(self) -> None:
        assert self.jwks is not None
        self.tokens.keys = self.jwks.keys.merged(self._secret_keys)

    def _refresh(self, error: TokenError) -> bool:
        if error.issuer is not None:
            peers = self.tokens.peers
            return peers is not None and peers.refresh_sync(error.issuer, error.kid)
        if self.jwks is None or not self.jwks.refresh_sync(error.kid):
            return False
        self._install_jwks()
        return True

    def _verify(self, token: str) -> Identity:
        try:
            with self._lock:
                return self.tokens.verify(token)
        except TokenError as error:
            # A key we have not seen may have been rotated in: look once, then retry.
            if error.reason != "unknown_kid" or not self._refresh(error):
                raise
        with self._lock:
            return self.tokens.verify(token)

    def authenticate(self, token: str | None) -> Identity:
        """Signature, claims, then revocation; raises TokenError or RevocationUnavailable."""
        if not token:
            raise MISSING
        identity = self._verify(token)
        if self.introspection is not None and not self.introspection.is_active(token):
            raise TokenError("Token revoked", "revoked")
        if self.is_revoked is not None and self.is_revoked(identity):
            raise TokenError("Token revoked", "revoked")
        return identity

    def reject(self, error: TokenError) -> Response:
        self._audit("auth.rejected", 401, error.reason)
        response = jsonify(error=error.message)
        response.status_code = 401
        response.headers["WWW-Authenticate"] = WWW_AUTHENTICATE
        return response

    def unavailable(self) -> Response:
        # Fail closed: a token whose revocation cannot be checked is not let through.
        self._audit("auth.rejected", 503, "revocation_unavailable")
        response = jsonify(error="Token revocation could not be checked")
        response.status_code = 503
        response.headers["Retry-After"] = "2"
        return response

    def reject_csrf(self) -> Response:
        self._audit("auth.csrf_rejected", 403, "csrf")
        response = jsonify(error="CSRF token missing or invalid")
        response.status_code = 403
        return response

    def _audit(self, event: str, status: int, reason: str) -> None:
        run_coroutine(
            self.audit.record(
                event, status=status, reason=reason, path=request.path, ip=request.remote_addr
            )
        )


_init_lock = threading.Lock()


def run_coroutine(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run `coroutine` to its end from a Flask view: in an event loop of its own, as
    Flask's async support does; on a helper thread when this thread already runs a loop
    (an ASGI bridge, a test). The context (Flask's `g`, `request`) goes along."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    context = contextvars.copy_context()
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(context.run, asyncio.run, coroutine).result()


def init_app(
    app: Flask,
    tokens: TokenService | None = None,
    *,
    audit: Audit | None = None,
    is_revoked: RevocationCheck | None = None,
) -> FlaskTokenGuard:
    """Attach the guard to `app`; without `tokens`, build them from `app.config`.

    Raises RuntimeError at once when the config has no usable key, or no revocation
    source (AGORA_AUTH_URL, or `is_revoked`) while AGORA_REVOCATION_CHECK is not
    switched off: a misconfigured service fails at start, not on its first request.
    """
    config = app.config
    tokens = tokens or tokens_from_config(config)
    introspection = None
    if revocation_switched_off(config):
        is_revoked = None
    else:
        introspection = introspection_from_config(config, app.name)
        if introspection is None and is_revoked is None:
            raise RuntimeError(
                "agora.contrib.flask has no revocation source, so logged-out tokens would "
                "pass: set AGORA_AUTH_URL (the auth service's base URL), or pass "
                "is_revoked=, or set AGORA_REVOCATION_CHECK=False to accept that"
            )
    guard = FlaskTokenGuard(
        tokens,
        audit or Audit(app.name),
        is_revoked,
        jwks=jwks_from_config(config),
        introspection=introspection,
    )
    guard.start()
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


def _authenticated(guard: FlaskTokenGuard) -> Response | None:
    """None when the request may go on (the identity is in `g.current_user`), else the
    refusal to answer."""
    token, from_cookie = extract_token()
    try:
        identity = guard.authenticate(token)
    except TokenError as error:
        return guard.reject(error)
    except RevocationUnavailable:
        return guard.unavailable()
    if from_cookie and not csrf_ok(identity.jti):
        return guard.reject_csrf()
    g.current_user = identity
    return None


def token_required(view: View) -> View:
    """Decorator: 401 JSON unless a valid, unrevoked token came (403 for a cookie request
    without its CSRF token); the identity lands in `g.current_user`.

    `async def` views work without Flask's `async` extra: each runs in an event loop of
    its own, as Flask's own async support does (contextvars, hence `g` and `request`,
    are carried into it)."""

    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        guard = guard_of(current_app._get_current_object())  # type: ignore[attr-defined]
        refused = _authenticated(guard)
        if refused is not None:
            return refused
        if inspect.iscoroutinefunction(view):
            return run_coroutine(view(*args, **kwargs))
        return view(*args, **kwargs)

    return cast(View, wrapper)
