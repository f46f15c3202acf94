"""Auth's gRPC UserService (protos/agora/auth/v1/users.proto): GetUser, BatchGetUsers.

How other services (messaging) check that users exist and describe them. Who may see
whom (docs/security.md "User directory over gRPC"):

- another Agora service (`authorization: Basic`, its client secret derived from the
  JWT secret, `agora.grpc.auth.user_or_service_rpc`) looks up anyone: messaging checks
  the people a user is about to add to a conversation, who are not yet contacts;
- a user (`authorization: Bearer`) sees themself and those who share a conversation
  with them (the `Contacts` port), nobody else: any other id is answered exactly as an
  unknown id (absent / NOT_FOUND), so the service is no list of every login by
  sequential id, and no oracle of which ids exist.

A user is only ever id, login and display name (never the email, never the password
hash). Ids are the decimal account ids; anything else is simply not a user (NOT_FOUND
/ absent), never an error.
"""

from __future__ import annotations

from collections.abc import Sequence

import grpc

from agora.core.errors import Invalid, NotFound
from agora.core.text import shown
from agora.db.engine import Database
from agora.grpc.auth import Caller, GrpcAuthenticator, ServiceCaller, user_or_service_rpc
from agora.grpc.server import Registrar
from agora.grpc.stubs import users_pb2, users_pb2_grpc
from agora.ports.contacts import Contacts
from agora.ports.users import MAX_BATCH, account_ids
from agora.services.auth.repository import UserRepository


class UserServicer(users_pb2_grpc.UserServiceServicer):
    SERVICE = "agora.auth.v1.UserService"

    def __init__(self, database: Database, auth: GrpcAuthenticator, contacts: Contacts) -> None:
        self.database = database
        self.auth = auth
        self.contacts = contacts

    async def _users(
        self, raw_ids: Sequence[str], caller: Caller | ServiceCaller
    ) -> list[users_pb2.User]:
        ids = account_ids(raw_ids)
        if isinstance(caller, Caller):
            # A user sees themself and their contacts; others are as unknown ids.
            me = caller.user_id
            seen = await self.contacts.among(me, [str(i) for i in ids if str(i) != me])
            ids = [i for i in ids if str(i) == me or str(i) in seen]
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

    @user_or_service_rpc
    async def GetUser(
        self, request: users_pb2.GetUserRequest, caller: Caller | ServiceCaller
    ) -> users_pb2.User:
        found = await self._users([request.id], caller)
        if not found:
            raise NotFound("User not found")
        return found[0]

    @user_or_service_rpc
    async def BatchGetUsers(
        self, request: users_pb2.BatchGetUsersRequest, caller: Caller | ServiceCaller
    ) -> users_pb2.BatchGetUsersResponse:
        if len(request.ids) > MAX_BATCH:
            raise Invalid("ids", f"At most {MAX_BATCH} ids per call")
        return users_pb2.BatchGetUsersResponse(users=await self._users(list(request.ids), caller))


def user_service(database: Database, auth: GrpcAuthenticator, contacts: Contacts) -> Registrar:
    """Adds auth's UserService over `database`, verifying callers with `auth`; a user
    caller sees only `contacts`."""

    def register(server: grpc.aio.Server) -> None:
        servicer = UserServicer(database, auth, contacts)
        users_pb2_grpc.add_UserServiceServicer_to_server(servicer, server)

    return register
