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
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Request, Response, params
from fastapi.routing import APIRoute

from agora.core.errors import CsrfRefused
from agora.security.guard import Reads, TokenGuard, TokenRejected
from agora.security.tokens import Identity, TokenError
from agora.web.cookies import AUTH_COOKIE, LEGACY_COOKIE
from agora.web.csrf import csrf_key, csrf_ok
from agora.web.deps import CONTEXT_READS, app_of


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
    identity, _ = await _checked(guard, request, None)
    return identity


async def authenticate_reading(
    guard: TokenGuard, request: Request, reads: Callable[[Identity], Reads]
) -> tuple[Identity, list[bytes | None] | None]:
    """`authenticate`, with the cache keys `reads(identity)` names read in the token
    check's own round trip (`TokenGuard.verify_reading`); their values in order, or
    None when the caller must read them itself."""
    known: Identity | None = (request.scope.get("state") or {}).get("current_user")
    if known is not None:
        return known, None
    return await _checked(guard, request, reads)


async def _checked(
    guard: TokenGuard, request: Request, reads: Callable[[Identity], Reads] | None
) -> tuple[Identity, list[bytes | None] | None]:
    token, from_cookie = extract_token(request)
    values: list[bytes | None] | None = None
    try:
        if reads is None:
            identity = await guard.verify(token)
        else:
            identity, values = await guard.verify_reading(token, reads)
    except TokenError as error:
        # No valid identity: counted per source, reason and minute past the first few
        # (core/audit.py), so a flood of tokenless requests writes a bounded amount.
        await guard.audit.refusal(
            "auth.rejected", ip=_ip(request), reason=error.reason, status=401, path=_path(request)
        )
        raise TokenRejected(error) from None
    if from_cookie and not csrf_ok(
        request, identity.jti, csrf_key(app_of(request).context.settings)
    ):
        await guard.audit.record(
            "auth.csrf_rejected", status=403, reason="csrf", path=_path(request), ip=_ip(request)
        )
        raise CsrfRefused("CSRF token missing or invalid")
    request.state.current_user = identity
    return identity, values


def _ip(request: Request) -> str | None:
    return request.client.host if request.client else None


def _path(request: Request) -> str:
    # The scope's path, not `request.url` (which builds the whole URL from the Host
    # header); the audit entry bounds its length.
    path: str = request.scope["path"]
    return path


# The dependencies (and decorated endpoints) that run the token check: the OpenAPI
# document marks the operations that use one as needing a token (web/openapi.py).
TOKEN_CHECKS: set[Callable[..., Any]] = set()
CheckT = TypeVar("CheckT", bound=Callable[..., Any])


def token_check(check: CheckT) -> CheckT:
    """Registers a dependency that runs `authenticate` (see TOKEN_CHECKS)."""
    TOKEN_CHECKS.add(check)
    return check


@token_check
async def current_user(request: Request) -> Identity:
    return await authenticate(app_of(request).context.guard, request)


CurrentUser = Annotated[Identity, Depends(current_user)]

Endpoint = Callable[..., Awaitable[Any]]


def token_required(endpoint: Endpoint) -> Endpoint:
    """Decorator form: authenticates before the route runs.

    The identity lands in `request.state.current_user` (Flask's `g.current_user`),
    and in the route's `current_user` argument if it declares one.
    """
    signature = inspect.signature(endpoint)
    names = {"current_user"} & signature.parameters.keys()
    return _authenticating(endpoint, names)


class GuardedRoute(APIRoute):
    """An APIRoute whose endpoint parameters typed `CurrentUser` are handed the identity
    by `authenticate` called before the endpoint, as `token_required` does, instead of
    by FastAPI's solving of a sub-dependency: the same check (revocation, CSRF for a
    cookie, 401/403, audit), about 8 us less per request (issue 13: the protected read
    of bench.run). The routers of the hot services use it (`route_class`); any other
    dependency that uses `CurrentUser` (such as `ActiveUser`) is solved as before."""

    def __init__(self, path: str, endpoint: Endpoint, **kwargs: Any) -> None:
        super().__init__(path, _inline_current_user(endpoint), **kwargs)


def _inline_current_user(endpoint: Endpoint) -> Endpoint:
    """The endpoint with its `CurrentUser` parameters filled by the wrapper, when every
    other parameter is one the token check may run after without changing an answer:
    the Request, the Response, or a dependency reading the app's context
    (`CONTEXT_READS`). A query, a body or any other dependency is validated or run
    before the endpoint, so it would answer before the 401: left to FastAPI."""
    hints = typing.get_type_hints(endpoint, include_extras=True)
    names = {name for name, hint in hints.items() if hint == CurrentUser}
    if not names:
        return endpoint
    for name in inspect.signature(endpoint).parameters:
        hint = hints.get(name)
        if name in names or (name == "request" and hint is Request) or hint is Response:
            continue
        if not _reads_context(hint):
            return endpoint
    return _authenticating(endpoint, names)


def _reads_context(hint: object) -> bool:
    if typing.get_origin(hint) is not Annotated:
        return False
    marks = [mark for mark in typing.get_args(hint)[1:] if isinstance(mark, params.Depends)]
    return len(marks) == 1 and marks[0].dependency in CONTEXT_READS


def _authenticating(endpoint: Endpoint, names: set[str]) -> Endpoint:
    """`endpoint` without its parameters `names` (and with a `request` one): the wrapper
    authenticates, then passes the identity to each of `names`."""
    hints = typing.get_type_hints(endpoint, include_extras=True)
    signature = inspect.signature(endpoint)
    params = [
        p.replace(annotation=hints.get(p.name, p.annotation))
        for p in signature.parameters.values()
        if p.name not in names
    ]
    wants_request = "request" in signature.parameters
    if not wants_request:
        params.append(
            inspect.Parameter("request", inspect.Parameter.KEYWORD_ONLY, annotation=Request)
        )

    @functools.wraps(endpoint)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        request: Request = kwargs["request"] if wants_request else kwargs.pop("request")
        identity = await authenticate(app_of(request).context.guard, request)
        for name in names:
            kwargs[name] = identity
        return await endpoint(*args, **kwargs)

    wrapper.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=params, return_annotation=hints.get("return", signature.return_annotation)
    )
    token_check(wrapper)
    return wrapper
