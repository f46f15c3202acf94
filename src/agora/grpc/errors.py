"""Domain errors as gRPC statuses: the gRPC twin of `agora.web.errors`.

| domain error (HTTP)                    | gRPC status          | trailing metadata     |
|----------------------------------------|----------------------|-----------------------|
| Unauthorized (401)                     | UNAUTHENTICATED      |                       |
| Forbidden (403)                        | PERMISSION_DENIED    |                       |
| NotFound (404)                         | NOT_FOUND            |                       |
| Conflict (409)                         | FAILED_PRECONDITION  |                       |
| Invalid (422)                          | INVALID_ARGUMENT     | `field`: the field    |
| other 4xx (400, 413, 415, ...)         | INVALID_ARGUMENT     |                       |
| TooManyRequests (429)                  | RESOURCE_EXHAUSTED   | `retry-after`: secs   |
| 503 (e.g. UsersUnavailable)            | UNAVAILABLE          |                       |
| anything else                          | INTERNAL             | (nothing leaks: logged) |

The details string is the domain error's message, written to be shown to clients.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import NoReturn, TypeVar

import grpc

from agora.core.errors import AgoraError, Invalid, TooManyRequests

log = logging.getLogger("agora.grpc")

_BY_HTTP_STATUS = {
    401: grpc.StatusCode.UNAUTHENTICATED,
    403: grpc.StatusCode.PERMISSION_DENIED,
    404: grpc.StatusCode.NOT_FOUND,
    409: grpc.StatusCode.FAILED_PRECONDITION,
    429: grpc.StatusCode.RESOURCE_EXHAUSTED,
    503: grpc.StatusCode.UNAVAILABLE,
}

INTERNAL_DETAILS = "Internal error"


@dataclass(frozen=True)
class GrpcStatus:
    code: grpc.StatusCode
    details: str
    trailing: tuple[tuple[str, str], ...] = ()


def status_of(error: BaseException) -> GrpcStatus:
    if not isinstance(error, AgoraError):
        return GrpcStatus(grpc.StatusCode.INTERNAL, INTERNAL_DETAILS)
    code = _BY_HTTP_STATUS.get(error.status_code)
    if code is None:
        code = (
            grpc.StatusCode.INVALID_ARGUMENT
            if 400 <= error.status_code < 500
            else grpc.StatusCode.INTERNAL
        )
    if code == grpc.StatusCode.INTERNAL:
        return GrpcStatus(code, INTERNAL_DETAILS)
    trailing: tuple[tuple[str, str], ...] = ()
    if isinstance(error, Invalid):
        trailing = (("field", error.field),)
    elif isinstance(error, TooManyRequests):
        trailing = (("retry-after", str(max(1, int(error.retry_after)))),)
    return GrpcStatus(code, error.message, trailing)


Request = TypeVar("Request")
Response = TypeVar("Response")


async def abort_with(
    context: grpc.aio.ServicerContext[Request, Response], error: BaseException, method: str
) -> NoReturn:
    """End the call with the status `error` stands for; raises (as `context.abort` does)."""
    status = status_of(error)
    if status.code == grpc.StatusCode.INTERNAL:
        log.error("gRPC handler failed", exc_info=error, extra={"method": method})
    await context.abort(status.code, status.details, trailing_metadata=status.trailing)


async def answered(
    method: str,
    context: grpc.aio.ServicerContext[Request, Response],
    call: Callable[[], Awaitable[Response]],
) -> Response:
    """Run one RPC's work, turning any exception into the status it stands for."""
    try:
        return await call()
    except grpc.aio.AbortError:
        raise  # the handler ended the call itself
    except Exception as error:
        await abort_with(context, error, method)
