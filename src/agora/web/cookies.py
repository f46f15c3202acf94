"""The auth cookie as docs/contracts.md fixes it: HttpOnly, SameSite=Strict, Path=/."""

from __future__ import annotations

from starlette.responses import Response

AUTH_COOKIE = "auth_token"
LEGACY_COOKIE = "jwt_token"
# Readable by the page (not HttpOnly) so that it can echo it in X-CSRF-Token.
CSRF_COOKIE = "csrf_token"


def set_auth_cookie(response: Response, token: str, csrf: str, max_age: int, secure: bool) -> None:
    response.set_cookie(
        AUTH_COOKIE,
        token,
        max_age=max_age,
        path="/",
        secure=secure,
        httponly=True,
        samesite="strict",
    )
    response.set_cookie(
        CSRF_COOKIE, csrf, max_age=max_age, path="/", secure=secure, samesite="strict"
    )


def clear_auth_cookie(response: Response, secure: bool) -> None:
    response.delete_cookie(AUTH_COOKIE, path="/", secure=secure, httponly=True, samesite="strict")
    response.delete_cookie(CSRF_COOKIE, path="/", secure=secure, samesite="strict")
