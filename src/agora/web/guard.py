"""`token_required`: the one guard in front of every protected route.

Use it as a FastAPI dependency (`user: CurrentUser`) or as a decorator
(`@token_required` on a route); both run the same `authenticate`, which
reads the token from `Authorization: Bearer`, then the `auth_token` cookie, then
`jwt_token`, verifies it and checks revocation. Failures raise `Unauthorized`,
which the error handlers answer with 401 JSON and `WWW-Authenticate: Bearer`.
"""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import Depends, Request

from agora.core.errors import Forbidden
from agora.security.guard import TokenGuard, TokenRejected
from agora.security.tokens import Identity, TokenError
from agora.web.cookies import AUTH_COOKIE, LEGACY_COOKIE
from agora.web.csrf import csrf_key, csrf_ok
from agora.web.deps import app_of


def extract_token(request: Request) -> tuple[str | None, bool]:
    """The token and whether it came from a cookie (which makes CSRF checks apply)."""
    header = request.headers.get("authorization")
    if header:
        scheme, _, credentials = header.partition(" ")
        if scheme.lower() == "bearer":
            return credentials.strip(), False
    cookies = request.cookies
    token = cookies.get(AUTH_COOKIE) or cookies.get(LEGACY_COOKIE)
    return token, token is not None


async def authenticate(guard: TokenGuard, request: Request) -> Identity:
    """The caller's identity, once per request; a token from a cookie needs CSRF proof."""
    # Read the scope's state dict directly: a miss through `request.state` costs a
    # raised and caught AttributeError on every request.
    known: Identity | None = (request.scope.get("state") or {}).get("current_user")
    if known is not None:
        return known
    token, from_cookie = extract_token(request)
    try:
        identity = await guard.verify(token)
    except TokenError as error:
        await _audit_refusal(guard, request, "auth.rejected", 401, error.reason)
        raise TokenRejected(error) from None
    if from_cookie and not csrf_ok(
        request, identity.jti, csrf_key(app_of(request).context.settings)
    ):
        await _audit_refusal(guard, request, "auth.csrf_rejected", 403, "csrf")
        raise Forbidden("CSRF token missing or invalid")
    request.state.current_user = identity
    return identity


async def _audit_refusal(
    guard: TokenGuard, request: Request, event: str, status: int, reason: str
) -> None:
    await guard.audit.record(
        event,
        status=status,
        reason=reason,
        path=request.url.path,
        ip=request.client.host if request.client else None,
    )


async def current_user(request: Request) -> Identity:
    return await authenticate(app_of(request).context.guard, request)


CurrentUser = Annotated[Identity, Depends(current_user)]

Endpoint = Callable[..., Awaitable[Any]]


def token_required(endpoint: Endpoint) -> Endpoint:
    """Decorator form: authenticates before the route runs.

    The identity lands in `request.state.current_user` (Flask's `g.current_user`),
    and in the route's `current_user` argument if it declares one.
    """
    hints = typing.get_type_hints(endpoint, include_extras=True)
    signature = inspect.signature(endpoint)
    params = [
        p.replace(annotation=hints.get(p.name, p.annotation)) for p in signature.parameters.values()
    ]
    wants_identity = "current_user" in signature.parameters
    wants_request = "request" in signature.parameters
    params = [p for p in params if p.name != "current_user"]
    if not wants_request:
        params.append(
            inspect.Parameter("request", inspect.Parameter.KEYWORD_ONLY, annotation=Request)
        )

    @functools.wraps(endpoint)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        request: Request = kwargs["request"] if wants_request else kwargs.pop("request")
        identity = await authenticate(app_of(request).context.guard, request)
        if wants_identity:
            kwargs["current_user"] = identity
        return await endpoint(*args, **kwargs)

    wrapper.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=params, return_annotation=hints.get("return", signature.return_annotation)
    )
    return wrapper
