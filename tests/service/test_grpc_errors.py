"""Domain errors -> gRPC statuses (`agora.grpc.errors`), as a real client sees them.

A real grpc.aio server on an ephemeral port with one generic method that raises the
domain error named in the request, through the same `answered` wrapper the servicers
use; the client reads code, details and trailing metadata. This covers the statuses
the four messaging RPCs and the UserService have no natural way to produce
(PERMISSION_DENIED, FAILED_PRECONDITION, UNAVAILABLE, 413/415).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest

from agora.core.errors import (
    AgoraError,
    Conflict,
    Forbidden,
    Invalid,
    NotFound,
    PayloadTooLarge,
    ServiceUnavailable,
    TooManyRequests,
    Unauthorized,
    UnsupportedMediaType,
)
from agora.grpc.errors import answered, status_of
from agora.grpc.server import GrpcServer
from agora.ports.users import UsersUnavailable

ERRORS: dict[str, BaseException] = {
    "unauthorized": Unauthorized("Token required"),
    "forbidden": Forbidden("Only the author can change a message"),
    "not_found": NotFound("Conversation not found"),
    "conflict": Conflict("Message deleted"),
    "invalid": Invalid("text", "Message is empty"),
    "bad_request": AgoraError("Bad request"),
    "too_large": PayloadTooLarge("File larger than 10 MB"),
    "media_type": UnsupportedMediaType("Content type not allowed"),
    "limited": TooManyRequests("Too many messages", retry_after=42),
    "unavailable": ServiceUnavailable("Auth unreachable"),
    "users_unavailable": UsersUnavailable("User directory unavailable"),
    "bug": KeyError("secret_column in SELECT password_hash FROM auth_users"),
}

EXPECTED = {
    "unauthorized": (grpc.StatusCode.UNAUTHENTICATED, "Token required", {}),
    "forbidden": (
        grpc.StatusCode.PERMISSION_DENIED,
        "Only the author can change a message",
        {},
    ),
    "not_found": (grpc.StatusCode.NOT_FOUND, "Conversation not found", {}),
    "conflict": (grpc.StatusCode.FAILED_PRECONDITION, "Message deleted", {}),
    "invalid": (grpc.StatusCode.INVALID_ARGUMENT, "Message is empty", {"field": "text"}),
    "bad_request": (grpc.StatusCode.INVALID_ARGUMENT, "Bad request", {}),
    "too_large": (grpc.StatusCode.INVALID_ARGUMENT, "File larger than 10 MB", {}),
    "media_type": (grpc.StatusCode.INVALID_ARGUMENT, "Content type not allowed", {}),
    "limited": (grpc.StatusCode.RESOURCE_EXHAUSTED, "Too many messages", {"retry-after": "42"}),
    "unavailable": (grpc.StatusCode.UNAVAILABLE, "Auth unreachable", {}),
    "users_unavailable": (grpc.StatusCode.UNAVAILABLE, "User directory unavailable", {}),
    "bug": (grpc.StatusCode.INTERNAL, "Internal error", {}),
}

METHOD = "/agora.test.Errors/Raise"


async def raise_named(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    async def call() -> bytes:
        raise ERRORS[request.decode()]

    return await answered(METHOD, context, call)


def register(server: grpc.aio.Server) -> None:
    handler = grpc.unary_unary_rpc_method_handler(raise_named)
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler("agora.test.Errors", {"Raise": handler}),)
    )


@pytest.fixture
async def channel() -> AsyncIterator[grpc.aio.Channel]:
    server = GrpcServer("127.0.0.1", 0, [register])
    await server.start()
    try:
        async with grpc.aio.insecure_channel(server.target) as opened:
            yield opened
    finally:
        await server.stop()


@pytest.mark.parametrize("name", sorted(ERRORS))
async def test_status_seen_by_a_real_client(channel: grpc.aio.Channel, name: str) -> None:
    call = channel.unary_unary(METHOD)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call(name.encode(), timeout=5)
    code, details, trailers = EXPECTED[name]
    assert caught.value.code() == code
    assert caught.value.details() == details
    assert dict(caught.value.trailing_metadata() or ()) == trailers


def test_retry_after_is_at_least_one_second() -> None:
    status = status_of(TooManyRequests("Too many", retry_after=0))
    assert status.trailing == (("retry-after", "1"),)


def test_a_5xx_domain_error_other_than_503_is_internal() -> None:
    class Broken(AgoraError):
        status_code = 500

    status = status_of(Broken("db password is hunter2"))
    assert (status.code, status.details) == (grpc.StatusCode.INTERNAL, "Internal error")
