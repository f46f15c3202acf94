"""The generated gRPC modules, generated first when missing or stale (see `build`)."""

from __future__ import annotations

from agora.grpc.build import ensure_stubs

ensure_stubs()

from agora.grpc_gen.auth.v1 import users_pb2, users_pb2_grpc  # noqa: E402
from agora.grpc_gen.messaging.v1 import messaging_pb2, messaging_pb2_grpc  # noqa: E402

__all__ = ["messaging_pb2", "messaging_pb2_grpc", "users_pb2", "users_pb2_grpc"]
