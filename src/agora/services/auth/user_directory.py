"""Auth's accounts as the `UserDirectory` port sees them, read in this process's database.

The embedded default (one process, one database), and valid for any deployment where
messaging shares auth's database; `agora.adapters.users_grpc` asks auth over gRPC instead.
"""

from __future__ import annotations

from collections.abc import Sequence

from agora.core.text import shown
from agora.db.engine import Database
from agora.ports.users import MAX_BATCH, UserInfo, account_ids
from agora.services.auth.repository import UserRepository


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
            for start in range(0, len(ids), MAX_BATCH):
                for user in await repository.by_ids(ids[start : start + MAX_BATCH]):
                    found[str(user.id)] = UserInfo(str(user.id), user.login, shown(user.name))
        return found
