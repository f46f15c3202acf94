"""Every error leaves as JSON `{"error": ...}` with the right status, never a bare 500.

`ErrorBody` is that body's schema and `error_responses` documents a route's errors from
the error classes it raises (status and description from the class): the OpenAPI
document and the answers come from the same place (web/openapi.py).
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse

from agora.core.errors import AgoraError, Invalid, Overloaded, TooManyRequests, Unauthorized

log = logging.getLogger("agora.web")


class ErrorBody(BaseModel):
    """Every error answer: a message for people, and for programs `reason` (on a 403)
    and `fields` (on a 422 "Validation failed")."""

    error: str
    reason: str | None = None
    fields: dict[str, str] | None = None


def error_responses(*errors: type[AgoraError]) -> dict[int | str, dict[str, Any]]:
    """FastAPI `responses=` for a route that raises these errors: each class gives its
    status and, from its docstring's first line, its description (joined per status)."""
    responses: dict[int | str, dict[str, Any]] = {}
    for error in errors:
        described = (error.__doc__ or error.__name__).strip().splitlines()[0]
        entry = responses.setdefault(error.status_code, {"model": ErrorBody})
        entry["description"] = "; ".join(filter(None, (entry.get("description"), described)))
    return responses


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
    extra = {"reason": exc.public_reason} if exc.public_reason is not None else {}
    response = error_response(exc.status_code, exc.message, **extra)
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
