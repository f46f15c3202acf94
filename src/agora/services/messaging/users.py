"""Who the users are, as messaging sees them: the `UserDirectory` port.

Messaging checks that members exist and describes them (id, login, name) without
owning accounts. Two backends, one contract (tests/contract/test_user_directory_contract.py):

- `LocalUserDirectory(database)`: reads `auth_users` in the same database, through auth's
  own repository. The embedded default (one process, one database), and valid for any
  deployment where messaging shares auth's database.
- `GrpcUserDirectory(target, deadline, retries)`: auth's gRPC `UserService.BatchGetUsers`,
  forwarding the caller's access token. Each attempt has a deadline; UNAVAILABLE and
  DEADLINE_EXCEEDED are retried with backoff within a total budget of
  deadline x retries, after which `UsersUnavailable` says auth cannot be reached.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Sequence
from typing import Any, Protocol

import grpc

from agora.db.engine import Database
from agora.core.errors import AgoraError, Forbidden, ServiceUnavailable, Unauthorized
from agora.grpc.stubs import users_pb2, users_pb2_grpc
from agora.services.auth.grpc_api import MAX_BATCH, account_ids
from agora.services.auth.repository import UserRepository
from agora.services.messaging.domain import UserInfo

log = logging.getLogger("agora.messaging.users")

# Most ids one BatchGetUsers call takes (auth refuses more with INVALID_ARGUMENT); both
# directories split larger lookups into batches of this size.
BATCH_LIMIT = MAX_BATCH


UNAVAILABLE_MESSAGE = "User directory (auth) is unavailable, try again later"


class UsersUnavailable(ServiceUnavailable):
    """Auth (the user directory) cannot be reached or did not answer in time (503)."""


class UserDirectory(Protocol):
    async def get_users(self, user_ids: Sequence[str], token: str | None) -> dict[str, UserInfo]:
        """The known users among `user_ids`, by id; unknown ids are absent.

        `token` is the caller's access token (a remote directory forwards it); raises
        `UsersUnavailable` when the directory cannot be reached.
        """
        ...

    async def close(self) -> None: ...


class LocalUserDirectory:
    """`auth_users` read directly: same database, no network, never unavailable."""

    def __init__(self, database: Database) -> None:
        self.database = database

    async def close(self) -> None:
        """Nothing to release: the database belongs to the backends."""

    async def get_users(self, user_ids: Sequence[str], token: str | None) -> dict[str, UserInfo]:
        ids = account_ids(user_ids)
        if not ids:
            return {}
        found: dict[str, UserInfo] = {}
        async with self.database.sessions() as session:
            repository = UserRepository(session)
            for start in range(0, len(ids), BATCH_LIMIT):
                for user in await repository.by_ids(ids[start : start + BATCH_LIMIT]):
                    found[str(user.id)] = UserInfo(str(user.id), user.login, user.name)
        return found


RETRYABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})
# gRPC waits 1 s (growing to 120 s) before reconnecting to a server that was down: our
# own retries would all meet that wait and fail. Reconnect about as fast as they retry.
# (Not grpc.min_reconnect_backoff_ms: gRPC also takes it as the connect timeout.)
CHANNEL_OPTIONS = [
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 2000),
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
    ) -> None:
        if deadline <= 0 or retries < 1:
            raise ValueError("deadline must be > 0 and retries >= 1")
        self.target = target
        self.deadline = deadline
        self.retries = retries  # attempts in all, each with its own deadline
        self.backoff = backoff
        self.max_backoff = max_backoff
        self._channel: grpc.aio.Channel | None = None
        self._stub: Any = None

    def _get_stub(self) -> Any:
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
        if not token:
            # Auth's UserService authenticates every caller by its access token; a caller
            # without one (the socket holds a ticket) cannot be looked up remotely.
            raise UsersUnavailable("User directory needs the caller's access token")
        found: dict[str, UserInfo] = {}
        for start in range(0, len(ids), BATCH_LIMIT):
            found.update(await self._batch(ids[start : start + BATCH_LIMIT], token))
        return found

    async def _batch(self, ids: list[str], token: str) -> dict[str, UserInfo]:
        stub = self._get_stub()
        request = users_pb2.BatchGetUsersRequest(ids=ids)
        metadata = (("authorization", f"Bearer {token}"),)
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
