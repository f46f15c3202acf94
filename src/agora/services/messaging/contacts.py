"""Messaging's answer to `agora.ports.contacts.Contacts`: users who share a conversation,
read in this process's database (messaging's tables)."""

from __future__ import annotations

import functools
from collections.abc import Collection

from agora.db.engine import Database
from agora.services.messaging.repository import MessagingRepository, contacts_among_on_sqlite

MAX_ASKED = 1000  # ids per question: a frame carries far fewer (social's presence limit)


class ConversationContacts:
    def __init__(self, database: Database) -> None:
        self.database = database

    async def among(self, user_id: str, others: Collection[str]) -> set[str]:
        asked = [other for other in dict.fromkeys(others) if other != user_id][:MAX_ASKED]
        if not asked:
            return set()
        if not self.database.is_postgres:
            among = functools.partial(contacts_among_on_sqlite, user_id, asked)
            return await self.database.run_sqlite(among, write=False)
        async with self.database.single_read() as connection:
            return await MessagingRepository(connection).contacts_among(user_id, asked)
