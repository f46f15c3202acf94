"""The `UserDirectory` port over auth's gRPC `UserService.BatchGetUsers`.

Calls as a service (`client`: `authorization: Basic`, the client secret derived from
the JWT secret, agora.security.client_secrets) when given one: auth then answers about
anyone, as messaging must check people not yet in a conversation with the user. Without
it, forwards the caller's access token, and auth answers only about the caller's
contacts (docs/security.md "User directory over gRPC"). Each attempt has a deadline; UNAVAILABLE and
DEADLINE_EXCEEDED are retried with backoff within a total budget of deadline x
retries, after which `UsersUnavailable` says auth cannot be reached.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import random
import time
from collections.abc import Sequence
from typing import Protocol

import grpc

from agora.core.errors import AgoraError, Forbidden, Unauthorized
from agora.grpc_gen.auth.v1 import users_pb2, users_pb2_grpc
from agora.ports.users import (
    MAX_BATCH,
    UNAVAILABLE_MESSAGE,
    UserInfo,
    UsersUnavailable,
    account_ids,
)

log = logging.getLogger("agora.messaging.users")

RETRYABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})
# gRPC waits 1 s (growing to 120 s) before reconnecting to a server that was down: our
# own retries would all meet that wait and fail. Reconnect about as fast as they retry.
# (Not grpc.min_reconnect_backoff_ms: gRPC also takes it as the connect timeout.)
CHANNEL_OPTIONS = [
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 2000),
]


class UserServiceCalls(Protocol):
    """The part of protoc's (unannotated) `UserServiceStub` this adapter calls, typed."""

    BatchGetUsers: grpc.aio.UnaryUnaryMultiCallable[
        users_pb2.BatchGetUsersRequest, users_pb2.BatchGetUsersResponse
    ]


class GrpcUserDirectory:
    """Auth's UserService over gRPC. The channel opens on first use (inside the loop)."""

    def __init__(
        self,
        target: str,
        deadline: float = 2.0,
        retries: int = 3,
        *,
        backoff: float = 0.05,
        max_backoff: float = 0.5,
        client: tuple[str, str] | None = None,
    ) -> None:
        if deadline <= 0 or retries < 1:
            raise ValueError("deadline must be > 0 and retries >= 1")
        self.target = target
        self.deadline = deadline
        self.retries = retries  # attempts in all, each with its own deadline
        self.backoff = backoff
        self.max_backoff = max_backoff
        # (client id, secret): call as this service rather than as the user.
        self._service_auth: str | None = None
        if client is not None:
            pair = f"{client[0]}:{client[1]}".encode()
            self._service_auth = f"Basic {base64.b64encode(pair).decode()}"
        self._channel: grpc.aio.Channel | None = None
        self._stub: UserServiceCalls | None = None

    def _get_stub(self) -> UserServiceCalls:
        if self._stub is None:
            self._channel = grpc.aio.insecure_channel(self.target, options=CHANNEL_OPTIONS)
            self._stub = users_pb2_grpc.UserServiceStub(self._channel)
        return self._stub

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()
        self._channel = None
        self._stub = None

    async def get_users(self, user_ids: Sequence[str], token: str | None) -> dict[str, UserInfo]:
        ids = [str(i) for i in account_ids(user_ids)]
        if not ids:
            return {}
        if self._service_auth is not None:
            credentials = self._service_auth
        elif token:
            credentials = f"Bearer {token}"
        else:
            # Without service credentials auth authenticates the caller by its access
            # token; a caller without one (the socket holds a ticket) cannot be looked up.
            raise UsersUnavailable("User directory needs the caller's access token")
        found: dict[str, UserInfo] = {}
        for start in range(0, len(ids), MAX_BATCH):
            found.update(await self._batch(ids[start : start + MAX_BATCH], credentials))
        return found

    async def _batch(self, ids: list[str], credentials: str) -> dict[str, UserInfo]:
        stub = self._get_stub()
        request = users_pb2.BatchGetUsersRequest(ids=ids)
        metadata = (("authorization", credentials),)
        give_up_at = time.monotonic() + self.deadline * self.retries
        last: grpc.aio.AioRpcError | None = None
        attempts = 0
        for attempt in range(self.retries):
            remaining = give_up_at - time.monotonic()
            if remaining <= 0:
                break
            attempts += 1
            try:
                response = await stub.BatchGetUsers(
                    request, timeout=min(self.deadline, remaining), metadata=metadata
                )
            except grpc.aio.AioRpcError as error:
                if error.code() not in RETRYABLE:
                    raise _domain_error(error) from None
                last = error
                log.warning(
                    "user directory call failed: %s (attempt %d of %d, %s)",
                    error.code().name,
                    attempt + 1,
                    self.retries,
                    self.target,
                )
                jitter = random.uniform(0.5, 1)  # noqa: S311 (spreads retries, not a secret)
                pause = min(self.max_backoff, self.backoff * 2**attempt) * jitter
                pause = min(pause, give_up_at - time.monotonic())
                if attempt + 1 < self.retries and pause > 0:
                    await asyncio.sleep(pause)
                continue
            return {user.id: UserInfo(user.id, user.login, user.name) for user in response.users}
        code = last.code().name if last is not None else "DEADLINE_EXCEEDED"
        # The details (where auth is, what failed) are for operators, not API clients.
        log.error(
            "user directory unavailable: auth at %s, %s after %d attempt(s)",
            self.target,
            code,
            attempts,
        )
        raise UsersUnavailable(UNAVAILABLE_MESSAGE)


def _domain_error(error: grpc.aio.AioRpcError) -> AgoraError:
    """Non-retryable answers from auth, as the domain errors they stand for."""
    code = error.code()
    if code == grpc.StatusCode.UNAUTHENTICATED:
        return Unauthorized(error.details() or "Invalid or expired token")
    if code == grpc.StatusCode.PERMISSION_DENIED:
        return Forbidden(error.details() or "Forbidden")
    log.error("user directory failed: auth answered %s (%s)", code.name, error.details())
    return UsersUnavailable(UNAVAILABLE_MESSAGE)
