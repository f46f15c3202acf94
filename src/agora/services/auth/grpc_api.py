"""Auth's gRPC UserService (protos/agora/auth/v1/users.proto): GetUser, BatchGetUsers.

How other services (messaging) check that users exist and describe them. Any caller
with a valid access token may look users up, as any logged-in user sees the members of
their conversations; a user is only ever id, login and display name (never the email,
never the password hash). Ids are the decimal account ids; anything else is simply not
a user (NOT_FOUND / absent), never an error.
"""

from __future__ import annotations

from collections.abc import Sequence

import grpc

from agora.core.errors import Invalid, NotFound
from agora.core.text import shown
from agora.db.engine import Database
from agora.grpc.auth import Caller, GrpcAuthenticator, authenticated_rpc
from agora.grpc.server import Registrar
from agora.grpc.stubs import users_pb2, users_pb2_grpc
from agora.ports.users import MAX_BATCH, account_ids
from agora.services.auth.repository import UserRepository


class UserServicer(users_pb2_grpc.UserServiceServicer):
    SERVICE = "agora.auth.v1.UserService"

    def __init__(self, database: Database, auth: GrpcAuthenticator) -> None:
        self.database = database
        self.auth = auth

    async def _users(self, raw_ids: Sequence[str]) -> list[users_pb2.User]:
        ids = account_ids(raw_ids)
        if not ids:
            return []
        async with self.database.sessions() as session:
            rows = await UserRepository(session).by_ids(ids)
        by_id = {row.id: row for row in rows}
        return [
            users_pb2.User(id=str(i), login=by_id[i].login, name=shown(by_id[i].name))
            for i in ids
            if i in by_id
        ]

    @authenticated_rpc
    async def GetUser(self, request: users_pb2.GetUserRequest, caller: Caller) -> users_pb2.User:
        found = await self._users([request.id])
        if not found:
            raise NotFound("User not found")
        return found[0]

    @authenticated_rpc
    async def BatchGetUsers(
        self, request: users_pb2.BatchGetUsersRequest, caller: Caller
    ) -> users_pb2.BatchGetUsersResponse:
        if len(request.ids) > MAX_BATCH:
            raise Invalid("ids", f"At most {MAX_BATCH} ids per call")
        return users_pb2.BatchGetUsersResponse(users=await self._users(list(request.ids)))


def user_service(database: Database, auth: GrpcAuthenticator) -> Registrar:
    """Adds auth's UserService over `database`, verifying tokens with `auth`."""

    def register(server: grpc.aio.Server) -> None:
        users_pb2_grpc.add_UserServiceServicer_to_server(UserServicer(database, auth), server)

    return register
