"""A request that does not parse gets INVALID_ARGUMENT "Malformed request", nothing more.

grpcio deserializes a request before any handler runs; when protobuf refuses the bytes,
grpc.aio answers UNKNOWN with `Unexpected <class 'google.protobuf.message.DecodeError'>:
...`: our library's class names and the message type, to anyone (issue 11). This
interceptor wraps each unary-request method's deserializer so that a refused message
reaches the handler as `MALFORMED`, which is answered like any other bad input.
(Every method of our protos takes one request; stream requests are left as they are.)
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeAlias

import grpc
from google.protobuf.message import DecodeError

MALFORMED_DETAILS = "Malformed request"


class _Malformed:
    """Stands for a request whose bytes did not parse."""


MALFORMED = _Malformed()


def _tolerant(deserializer: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    if deserializer is None:
        return None
    parse = deserializer

    def deserialize(raw: bytes) -> Any:
        try:
            return parse(raw)
        except (DecodeError, ValueError, TypeError):
            return MALFORMED

    return deserialize


def _guarded(behavior: Callable[..., Any]) -> Callable[..., Any]:
    async def guarded(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        if request is MALFORMED:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, MALFORMED_DETAILS)
        return await behavior(request, context)

    return guarded


Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"  # generic in the stubs only


class MalformedRequests(grpc.aio.ServerInterceptor):
    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler | None:
        handler = await continuation(handler_call_details)
        if handler is None or handler.request_streaming or not handler.unary_unary:
            return handler
        return grpc.unary_unary_rpc_method_handler(
            _guarded(handler.unary_unary),
            request_deserializer=_tolerant(handler.request_deserializer),
            response_serializer=handler.response_serializer,
        )
