"""Who the users are, for services that do not own accounts: the `UserDirectory` port.

Messaging checks that members exist and describes them (id, login, name) without
owning accounts. Two backends, one contract (tests/contract/test_user_directory_contract.py):

- `agora.services.auth.user_directory.LocalUserDirectory`: auth's own table, read in the
  same database (the embedded default, or any deployment sharing auth's database);
- `agora.adapters.users_grpc.GrpcUserDirectory`: auth's gRPC `UserService`, forwarding
  the caller's access token.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from agora.core.errors import ServiceUnavailable

# Most ids one lookup sends at once (auth's BatchGetUsers refuses more); both
# directories split larger lookups into batches of this size.
MAX_BATCH = 500
_MAX_ID_DIGITS = 18  # beyond this it does not fit the id column: not a user

UNAVAILABLE_MESSAGE = "User directory (auth) is unavailable, try again later"


def account_ids(raw_ids: Sequence[str]) -> list[int]:
    """The ids that can be account ids (decimal, in range), deduplicated, in order."""
    return [
        int(raw)
        for raw in dict.fromkeys(raw_ids)
        if raw.isascii() and raw.isdigit() and len(raw) <= _MAX_ID_DIGITS
    ]


@dataclass(frozen=True, slots=True)
class UserInfo:
    """A user as other services describe them: never the email or the password hash."""

    id: str
    login: str
    name: str

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "login": self.login, "name": self.name}


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
