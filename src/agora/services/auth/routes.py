"""HTTP for the auth service: translate requests into AuthService calls."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Depends, Request, Response
from pydantic import ValidationError
from starlette.responses import JSONResponse

from agora.core.text import shown
from agora.services.auth.deps import AuthServiceDep
from agora.services.auth.schemas import (
    LoginRequest,
    LoginResponse,
    LogoutResponse,
    RegisterRequest,
    UserOut,
)
from agora.web.cookies import clear_auth_cookie, set_auth_cookie
from agora.web.csrf import csrf_key, csrf_token_for
from agora.web.deps import SettingsDep, TokensDep
from agora.web.errors import error_response
from agora.web.guard import CurrentUser, GuardedRoute
from agora.web.same_origin import refuse_cross_site

router = APIRouter(route_class=GuardedRoute)  # `CurrentUser` checked without a sub-dependency
# On every route that sets or clears the session cookies (login CSRF, web.same_origin).
SAME_ORIGIN_ONLY = [Depends(refuse_cross_site)]
CROSS_SITE: dict[int | str, dict[str, Any]] = {
    403: {"description": "Cross-site request from a browser page (Origin / Sec-Fetch-Site)"}
}

LOGIN_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": LoginRequest.model_json_schema()},
            "application/x-www-form-urlencoded": {"schema": LoginRequest.model_json_schema()},
        },
    }
}
ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "Invalid credentials or token"},
    422: {"description": "Invalid fields"},
}
LOGIN_ERRORS: dict[int | str, dict[str, Any]] = {
    **ERRORS,
    **CROSS_SITE,
    503: {
        "description": "Too many password checks at once",
        "headers": {"Retry-After": {"description": "Seconds", "schema": {"type": "integer"}}},
    },
    400: {"description": "Malformed body"},
    429: {
        "description": "Too many failed logins",
        "headers": {"Retry-After": {"description": "Seconds", "schema": {"type": "integer"}}},
    },
}
RETRY_AFTER = {"Retry-After": {"description": "Seconds", "schema": {"type": "integer"}}}
BUSY: dict[int | str, dict[str, Any]] = {
    429: {"description": "Too many attempts from this client", "headers": RETRY_AFTER},
    503: {"description": "Too many password hashes at once", "headers": RETRY_AFTER},
}
JWK_SET = {
    "description": "RFC 7517 JWK Set",
    "content": {
        "application/jwk-set+json": {
            "schema": {
                "type": "object",
                "required": ["keys"],
                "properties": {"keys": {"type": "array", "items": {"type": "object"}}},
            }
        }
    },
}


def user_out(user: Any) -> UserOut:
    return UserOut(
        id=str(user.id),
        login=user.login,
        email=user.email,
        name=shown(user.name),  # safe text, also for a name stored before the policy
        created_at=user.created_at,
    )


def client_ip(request: Request) -> str | None:
    return request.client.host if request.client else None


async def _read_login(request: Request) -> LoginRequest | JSONResponse:
    """Accept JSON or a form: the platform's older clients post forms."""
    content_type = request.headers.get("content-type", "")
    try:
        if content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
            data: Any = dict(await request.form())
        else:
            data = await request.json()
    except Exception:  # any unreadable body is the client's error, not ours
        return error_response(400, "Malformed request body")
    if not isinstance(data, dict):
        return error_response(400, "Expected a JSON object")
    try:
        return LoginRequest.model_validate(data)
    except ValidationError as exc:
        fields = {".".join(map(str, e["loc"])) or "body": e["msg"] for e in exc.errors()}
        return error_response(422, "Validation failed", fields=fields)


@router.post(
    "/auth/api/register",
    status_code=201,
    response_model=UserOut,
    dependencies=SAME_ORIGIN_ONLY,
    responses={
        **ERRORS,
        **CROSS_SITE,
        400: {"description": "Malformed JSON body"},
        409: {"description": "Login or email already taken"},
        **BUSY,
    },
)
async def register(body: RegisterRequest, request: Request, auth: AuthServiceDep) -> UserOut:
    return user_out(await auth.register(body, client_ip(request)))


@router.post(
    "/auth/api/login",
    response_model=LoginResponse,
    openapi_extra=LOGIN_BODY,
    responses=LOGIN_ERRORS,
    dependencies=SAME_ORIGIN_ONLY,
)
@router.post(
    "/login",
    response_model=LoginResponse,
    openapi_extra=LOGIN_BODY,
    responses=LOGIN_ERRORS,
    dependencies=SAME_ORIGIN_ONLY,
)
async def login(
    request: Request, response: Response, auth: AuthServiceDep, settings: SettingsDep
) -> Any:
    body = await _read_login(request)
    if isinstance(body, JSONResponse):
        return body
    user, issued = await auth.login(body.login, body.password, client_ip(request))
    csrf = csrf_token_for(issued.jti, csrf_key(settings))
    set_auth_cookie(response, issued.token, csrf, issued.expires_in, settings.cookie_secure)
    response.headers["Cache-Control"] = "no-store"
    return LoginResponse(
        token=issued.token, expires_in=issued.expires_in, user=user_out(user), csrf_token=csrf
    )


@router.get("/auth/api/me", response_model=UserOut, responses=ERRORS)
async def me(user: CurrentUser, auth: AuthServiceDep) -> UserOut:
    return user_out(await auth.current(user))


@router.post(
    "/auth/api/logout",
    response_model=LogoutResponse,
    responses={**ERRORS, **CROSS_SITE},
    dependencies=SAME_ORIGIN_ONLY,
)
async def logout(
    user: CurrentUser,
    request: Request,
    response: Response,
    auth: AuthServiceDep,
    settings: SettingsDep,
) -> LogoutResponse:
    """Revoke this token and expire the cookies."""
    await auth.logout(user, client_ip(request))
    clear_auth_cookie(response, settings.cookie_secure)
    return LogoutResponse()


@router.post(
    "/auth/api/logout/all",
    response_model=LogoutResponse,
    responses={**ERRORS, **CROSS_SITE},
    dependencies=SAME_ORIGIN_ONLY,
)
async def logout_everywhere(
    user: CurrentUser,
    request: Request,
    response: Response,
    auth: AuthServiceDep,
    settings: SettingsDep,
) -> LogoutResponse:
    """Revoke every token of the user issued so far, on every device."""
    await auth.logout(user, client_ip(request), everywhere=True)
    clear_auth_cookie(response, settings.cookie_secure)
    return LogoutResponse()


@router.get("/auth/.well-known/jwks.json", response_class=Response, responses={200: JWK_SET})
async def jwks(tokens: TokensDep) -> Response:
    """The public keys that verify Agora's tokens (never an HMAC secret)."""
    body = orjson.dumps(tokens.keys.jwks())
    return Response(
        body,
        media_type="application/jwk-set+json",
        headers={"Cache-Control": "public, max-age=300"},
    )
