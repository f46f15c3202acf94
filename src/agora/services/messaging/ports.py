"""What messaging needs from the outside, as ports; `agora.runtime` picks the adapters.

- `MessagingEvents`: real-time pushes to members' devices (`socket.fanout.MessagingFanout`);
- `MessagingAdapters`: who the users are (`agora.ports.users`), where files live
  (`agora.ports.media`), how members with no live device hear of a message
  (`agora.ports.notify`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from agora.ports.media import MediaStore
from agora.ports.notify import Notifier
from agora.ports.users import UserDirectory


class MessagingEvents(Protocol):
    async def publish(self, user_ids: Iterable[str], event: str, payload: dict[str, Any]) -> None:
        """Push `event` to every device of these users that joined its `user:<id>` topic."""
        ...

    async def online(self, user_ids: Iterable[str]) -> set[str]:
        """The users among `user_ids` with a live messaging device."""
        ...


@dataclass(frozen=True)
class MessagingAdapters:
    """The adapters one messaging app owns: it closes them when it stops."""

    users: UserDirectory
    media: MediaStore
    notifier: Notifier

    async def close(self) -> None:
        await self.notifier.close()
        await self.media.close()
        await self.users.close()
