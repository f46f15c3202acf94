"""Every error leaves as JSON `{"error": ...}` with the right status, never a bare 500."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse

from agora.core.errors import AgoraError, Invalid, Overloaded, TooManyRequests, Unauthorized

log = logging.getLogger("agora.web")


def error_response(status: int, message: str, **extra: object) -> JSONResponse:
    response = JSONResponse({"error": message, **extra}, status_code=status)
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="agora"'
    return response


def _field_errors(exc: RequestValidationError) -> dict[str, str]:
    fields: dict[str, str] = {}
    for error in exc.errors():
        location = [str(part) for part in error.get("loc", ()) if part not in ("body", "query")]
        fields.setdefault(".".join(location) or "body", str(error.get("msg", "invalid")))
    return fields


async def _agora_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, AgoraError)
    if isinstance(exc, Invalid):
        return error_response(422, "Validation failed", fields={exc.field: exc.message})
    response = error_response(exc.status_code, exc.message)
    if isinstance(exc, Unauthorized):
        response.headers["WWW-Authenticate"] = 'Bearer realm="agora", error="invalid_token"'
    if isinstance(exc, TooManyRequests | Overloaded):
        response.headers["Retry-After"] = str(exc.retry_after)
    return response


async def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    if any(error.get("type") == "json_invalid" for error in exc.errors()):
        return error_response(400, "Malformed JSON body")
    return error_response(422, "Validation failed", fields=_field_errors(exc))


async def _http_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    response = error_response(exc.status_code, str(exc.detail))
    for name, value in (exc.headers or {}).items():
        response.headers[name] = value
    return response


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.error("unhandled error on %s", request.url.path, exc_info=exc)
    return error_response(500, "Internal server error")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(AgoraError, _agora_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
