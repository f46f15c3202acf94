"""Who a user may reach: the people they share a conversation with.

The social socket relays chat and answers presence only between such users
(docs/social.md, docs/security.md "User text"). Conversations are messaging's, so the
answer comes from messaging's tables: `agora.services.messaging.contacts` reads them in
the process's database (embedded, or any deployment where social shares messaging's
database). `AGORA_SOCIAL_CHAT_REACH=anyone` (`EVERYONE`) lifts the rule.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Protocol


class Contacts(Protocol):
    async def among(self, user_id: str, others: Collection[str]) -> set[str]:
        """Those of `others` who share at least one conversation with `user_id`."""
        ...


class Everyone:
    """No restriction: every user is everyone's contact (`AGORA_SOCIAL_CHAT_REACH=anyone`)."""

    async def among(self, user_id: str, others: Collection[str]) -> set[str]:
        return set(others)


class Nobody:
    """Nobody is anyone's contact: where no answer can be had (closed by default)."""

    async def among(self, user_id: str, others: Collection[str]) -> set[str]:
        return set()


EVERYONE = Everyone()
NOBODY = Nobody()
