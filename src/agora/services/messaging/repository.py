"""SQL of the messaging service (Core statements on the mapped tables).

Every query is served by an index: members by (conversation_id, user_id) (the primary
key) or (user_id, conversation_id); messages by (conversation_id, seq) for pages,
unread counts and the last message, by (conversation_id, version) for catch-up, by
(conversation_id, author_id, client_id) for idempotent sends.

Writers of one conversation are serialized by `advance`, an `UPDATE ... RETURNING` of
the conversation's counters that is the first statement of their transaction: on
PostgreSQL it takes the row lock (what `SELECT ... FOR UPDATE` would, without a second
round trip), and everything the transaction reads after it sees the writes committed
before. On SQLite it takes the database's write lock up front: a transaction that read
first and wrote second would either read outside the transaction (pysqlite begins at
the first write) or fail to upgrade its lock under concurrency.
"""

from __future__ import annotations

import functools
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import (
    ColumnElement,
    Select,
    Table,
    and_,
    bindparam,
    delete,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.sql import FromClause

from agora.db.sqlite_inline import Execute
from agora.services.messaging.domain import (
    Conversation,
    ConversationSummary,
    MediaRef,
    Message,
)
from agora.services.messaging.models import MsgConversation, MsgMedia, MsgMember, MsgMessage

conversations = cast(Table, MsgConversation.__table__)
members = cast(Table, MsgMember.__table__)
messages = cast(Table, MsgMessage.__table__)
media = cast(Table, MsgMedia.__table__)

Executor = AsyncSession | AsyncConnection


def _contacts_among() -> Select[Any]:
    # Built once: building it (two aliases, a join) cost more than running it, and the
    # social socket asks it for every chat frame (issue 13).
    mine = members.alias("mine")
    theirs = members.alias("theirs")
    return (
        select(theirs.c.user_id)
        .distinct()
        .select_from(mine.join(theirs, theirs.c.conversation_id == mine.c.conversation_id))
        .where(
            mine.c.user_id == bindparam("user_id"),
            theirs.c.user_id.in_(bindparam("others", expanding=True)),
        )
    )


CONTACTS_AMONG = _contacts_among()


CONTACTS_AMONG_SQLITE = """
SELECT DISTINCT theirs.user_id FROM msg_members AS mine
JOIN msg_members AS theirs ON theirs.conversation_id = mine.conversation_id
WHERE mine.user_id = :user_id AND theirs.user_id IN ({ids})
"""


@functools.lru_cache(maxsize=64)
def contacts_among_sqlite(count: int) -> str:
    """`CONTACTS_AMONG` for SQLite's driver, with `count` named ids `:o0`, `:o1`, ...
    (placeholders only: the ids are bound, never written into the text)."""
    ids = ", ".join(f":o{i}" for i in range(count))
    return CONTACTS_AMONG_SQLITE.replace("{ids}", ids)


def contacts_among_on_sqlite(user_id: str, others: list[str], execute: Execute) -> set[str]:
    """`MessagingRepository.contacts_among` as a unit of work for `Database.run_sqlite`
    (the social socket asks it per chat frame: two index lookups per id asked)."""
    params = {"user_id": user_id} | {f"o{i}": other for i, other in enumerate(others)}
    return {row[0] for row in execute(contacts_among_sqlite(len(others)), params)}


MICROSECOND = timedelta(microseconds=1)

MESSAGE_FIELDS = (
    "id",
    "conversation_id",
    "seq",
    "version",
    "author_id",
    "client_id",
    "kind",
    "text",
    "created_at",
    "edited_at",
    "deleted_at",
)
MEDIA_FIELDS = ("id", "owner_id", "content_type", "size", "filename", "created_at")


def _message_columns(message: FromClause, upload: FromClause, prefix: str) -> list[Any]:
    return [message.c[name].label(f"{prefix}{name}") for name in MESSAGE_FIELDS] + [
        upload.c[name].label(f"{prefix}media_{name}") for name in MEDIA_FIELDS
    ]


def _media_ref(row: Any, prefix: str = "") -> MediaRef:
    return MediaRef(*(getattr(row, f"{prefix}{name}") for name in MEDIA_FIELDS))


def _message(row: Any, prefix: str = "") -> Message:
    values = {name: getattr(row, f"{prefix}{name}") for name in MESSAGE_FIELDS}
    upload = None
    if getattr(row, f"{prefix}media_id") is not None:
        upload = _media_ref(row, f"{prefix}media_")
    return Message(media=upload, **values)


def _messages_select() -> Select[Any]:
    joined = messages.outerjoin(media, messages.c.media_id == media.c.id)
    return select(*_message_columns(messages, media, "")).select_from(joined)


def unread_condition(user_id: str, read_seq: Any, message: FromClause = messages) -> Any:
    """Messages that count as unread for `user_id`: others', not deleted, above the cursor."""
    return and_(
        message.c.seq > read_seq,
        message.c.author_id != user_id,
        message.c.deleted_at.is_(None),
    )


@dataclass(frozen=True, slots=True)
class ListedSummary:
    summary: ConversationSummary
    last_activity_at: datetime  # the listing's sort key, for the cursor


class MessagingRepository:
    def __init__(self, executor: Executor) -> None:
        self.executor = executor

    async def _all(self, statement: Any) -> Sequence[Any]:
        return (await self.executor.execute(statement)).all()

    async def _first(self, statement: Any) -> Any:
        return (await self.executor.execute(statement)).first()

    # --- conversations and members ----------------------------------------------

    async def read_seq(self, conversation_id: str, user_id: str) -> int | None:
        """The member's read cursor; None when `user_id` is not a member."""
        row = await self._first(
            select(members.c.read_seq).where(
                members.c.conversation_id == conversation_id, members.c.user_id == user_id
            )
        )
        return None if row is None else int(row.read_seq)

    async def members_of(self, conversation_ids: Collection[str]) -> dict[str, list[str]]:
        """User ids of each conversation's members, in the order they joined."""
        found: dict[str, list[str]] = {cid: [] for cid in conversation_ids}
        if not conversation_ids:
            return found
        rows = await self._all(
            select(members.c.conversation_id, members.c.user_id)
            .where(members.c.conversation_id.in_(conversation_ids))
            .order_by(members.c.conversation_id, members.c.joined_at, members.c.user_id)
        )
        for row in rows:
            found[row.conversation_id].append(row.user_id)
        return found

    async def contacts_among(self, user_id: str, others: Collection[str]) -> set[str]:
        """Those of `others` who are members of a conversation `user_id` is a member of
        (on SQLite, `contacts_among_on_sqlite` is the same, run without a driver hop)."""
        params = {"user_id": user_id, "others": list(others)}
        return {row.user_id for row in await self.executor.execute(CONTACTS_AMONG, params)}

    async def conversation(self, conversation_id: str) -> Conversation | None:
        row = await self._first(select(conversations).where(conversations.c.id == conversation_id))
        if row is None:
            return None
        return _conversation(row, (await self.members_of([conversation_id]))[conversation_id])

    async def direct_conversation_id(self, direct_key: str) -> str | None:
        row = await self._first(
            select(conversations.c.id).where(conversations.c.direct_key == direct_key)
        )
        return None if row is None else str(row.id)

    async def add_conversation(self, values: dict[str, Any]) -> None:
        await self.executor.execute(insert(conversations).values(**values))

    async def add_members(
        self, conversation_id: str, user_ids: Iterable[str], joined_at: datetime, read_seq: int
    ) -> None:
        # A microsecond apart: "the order they joined" is the order given.
        rows = [
            {
                "conversation_id": conversation_id,
                "user_id": user_id,
                "joined_at": joined_at + index * MICROSECOND,
                "read_seq": read_seq,
            }
            for index, user_id in enumerate(user_ids)
        ]
        if rows:
            await self.executor.execute(insert(members), rows)

    async def remove_member(self, conversation_id: str, user_id: str) -> bool:
        result = await self.executor.execute(
            delete(members).where(
                members.c.conversation_id == conversation_id, members.c.user_id == user_id
            )
        )
        return bool(getattr(result, "rowcount", 0))

    async def members_changed(self, conversation_id: str) -> int | None:
        """Bump the conversation's `members_version` (cached member lists of every process
        go stale: service/member_lists.py) as the first statement of a membership
        change, which takes the conversation's lock; its last_seq, None if there is no
        such conversation."""
        row = await self._first(
            update(conversations)
            .where(conversations.c.id == conversation_id)
            .values(members_version=conversations.c.members_version + 1)
            .returning(conversations.c.last_seq)
        )
        return None if row is None else int(row.last_seq)

    async def set_title(self, conversation_id: str, title: str) -> None:
        await self.executor.execute(
            update(conversations).where(conversations.c.id == conversation_id).values(title=title)
        )

    async def advance(
        self, conversation_id: str, *, new_message: bool, now: datetime
    ) -> tuple[int, int] | None:
        """Take the conversation's next version (and next seq for a new message): its
        (last_seq, last_version) after the change; None if there is no such conversation.
        Locks the conversation until the transaction ends (see the module docstring)."""
        changes: dict[str, Any] = {"last_version": conversations.c.last_version + 1}
        if new_message:
            changes["last_seq"] = conversations.c.last_seq + 1
            changes["last_activity_at"] = now
        row = await self._first(
            update(conversations)
            .where(conversations.c.id == conversation_id)
            .values(**changes)
            .returning(conversations.c.last_seq, conversations.c.last_version)
        )
        return None if row is None else (int(row.last_seq), int(row.last_version))

    # --- listing --------------------------------------------------------------------

    async def summaries(
        self,
        user_id: str,
        *,
        conversation_id: str | None = None,
        limit: int | None = None,
        below: tuple[datetime, str] | None = None,
    ) -> list[ListedSummary]:
        """The user's conversations, most recent activity first, with their read cursor,
        unread count and last message; two statements whatever the page size.

        `below` continues a listing after the (last_activity_at, id) of its last item.
        """
        last = messages.alias("last")
        last_media = media.alias("last_media")
        counted = messages.alias("counted")
        unread = (
            select(func.count())
            .select_from(counted)
            .where(
                counted.c.conversation_id == conversations.c.id,
                unread_condition(user_id, members.c.read_seq, counted),
            )
            .scalar_subquery()
        )
        joined = (
            conversations.join(members, members.c.conversation_id == conversations.c.id)
            .outerjoin(
                last,
                and_(
                    last.c.conversation_id == conversations.c.id,
                    last.c.seq == conversations.c.last_seq,
                ),
            )
            .outerjoin(last_media, last.c.media_id == last_media.c.id)
        )
        statement = (
            select(
                conversations,
                members.c.read_seq,
                unread.label("unread"),
                *_message_columns(last, last_media, "lm_"),
            )
            .select_from(joined)
            .where(members.c.user_id == user_id)
            .order_by(conversations.c.last_activity_at.desc(), conversations.c.id.desc())
        )
        if conversation_id is not None:
            statement = statement.where(conversations.c.id == conversation_id)
        if below is not None:
            at, last_id = below
            statement = statement.where(
                or_(
                    conversations.c.last_activity_at < at,
                    and_(conversations.c.last_activity_at == at, conversations.c.id < last_id),
                )
            )
        if limit is not None:
            statement = statement.limit(limit)
        rows = await self._all(statement)
        member_ids = await self.members_of([row.id for row in rows])
        return [
            ListedSummary(
                ConversationSummary(
                    conversation=_conversation(row, member_ids[row.id]),
                    read_seq=int(row.read_seq),
                    unread=int(row.unread),
                    last_message=_message(row, "lm_") if row.lm_id is not None else None,
                ),
                row.last_activity_at,
            )
            for row in rows
        ]

    async def unread_counts(self, user_id: str) -> dict[str, int]:
        """Unread messages of each of the user's conversations (zeros included)."""
        joined = members.outerjoin(
            messages,
            and_(
                messages.c.conversation_id == members.c.conversation_id,
                unread_condition(user_id, members.c.read_seq),
            ),
        )
        rows = await self._all(
            select(members.c.conversation_id, func.count(messages.c.id).label("unread"))
            .select_from(joined)
            .where(members.c.user_id == user_id)
            .group_by(members.c.conversation_id)
        )
        return {row.conversation_id: int(row.unread) for row in rows}

    async def unread_count(self, conversation_id: str, user_id: str, read_seq: int) -> int:
        row = await self._first(
            select(func.count())
            .select_from(messages)
            .where(
                messages.c.conversation_id == conversation_id,
                unread_condition(user_id, read_seq),
            )
        )
        return int(row[0])

    async def move_read_cursor(self, conversation_id: str, user_id: str, seq: int) -> bool:
        """Move the member's cursor up to `seq`; never back. True if it moved."""
        result = await self.executor.execute(
            update(members)
            .where(
                members.c.conversation_id == conversation_id,
                members.c.user_id == user_id,
                members.c.read_seq < seq,
            )
            .values(read_seq=seq)
        )
        return bool(getattr(result, "rowcount", 0))

    # --- messages -------------------------------------------------------------------

    async def message(self, conversation_id: str, message_id: str) -> Message | None:
        row = await self._first(
            _messages_select().where(
                messages.c.conversation_id == conversation_id, messages.c.id == message_id
            )
        )
        return None if row is None else _message(row)

    async def message_by_client_id(
        self, conversation_id: str, author_id: str, client_id: str
    ) -> Message | None:
        row = await self._first(
            _messages_select().where(
                messages.c.conversation_id == conversation_id,
                messages.c.author_id == author_id,
                messages.c.client_id == client_id,
            )
        )
        return None if row is None else _message(row)

    async def add_message(self, message: Message) -> None:
        values = {name: getattr(message, name) for name in MESSAGE_FIELDS}
        values["media_id"] = message.media.id if message.media is not None else None
        await self.executor.execute(insert(messages).values(**values))

    async def change_message(self, message_id: str, values: dict[str, Any]) -> None:
        await self.executor.execute(
            update(messages).where(messages.c.id == message_id).values(**values)
        )

    async def page(
        self, conversation_id: str, *, before: int | None, after: int | None, limit: int
    ) -> tuple[list[Message], bool]:
        """Up to `limit` messages just below `before`, just above `after`, or the latest;
        ascending seq, and whether more exist in the direction asked."""
        statement = _messages_select().where(messages.c.conversation_id == conversation_id)
        if after is not None:
            statement = statement.where(messages.c.seq > after).order_by(messages.c.seq)
        else:
            if before is not None:
                statement = statement.where(messages.c.seq < before)
            statement = statement.order_by(messages.c.seq.desc())
        rows = await self._all(statement.limit(limit + 1))  # one more: is there a next page
        found = [_message(row) for row in rows[:limit]]
        if after is None:
            found.reverse()
        return found, len(rows) > limit

    async def changes(
        self, conversation_id: str, last_seq: int, last_version: int | None, limit: int
    ) -> list[Message]:
        """Messages above `last_seq`, and (with `last_version`) older ones changed since
        that version; ascending version, at most `limit`."""
        missed: ColumnElement[bool] = messages.c.seq > last_seq
        if last_version is not None:
            missed = or_(missed, messages.c.version > last_version)
        rows = await self._all(
            _messages_select()
            .where(messages.c.conversation_id == conversation_id, missed)
            .order_by(messages.c.version)
            .limit(limit)
        )
        return [_message(row) for row in rows]

    # --- media ----------------------------------------------------------------------

    async def add_media(self, upload: MediaRef) -> None:
        await self.executor.execute(
            insert(media).values(**{name: getattr(upload, name) for name in MEDIA_FIELDS})
        )

    async def media(self, media_id: str) -> MediaRef | None:
        row = await self._first(select(media).where(media.c.id == media_id))
        return None if row is None else _media_ref(row)

    async def media_shared_with(self, media_id: str, user_id: str) -> bool:
        """True when a message of a conversation `user_id` is a member of refers to it."""
        row = await self._first(
            select(messages.c.id)
            .select_from(
                messages.join(
                    members,
                    and_(
                        members.c.conversation_id == messages.c.conversation_id,
                        members.c.user_id == user_id,
                    ),
                )
            )
            .where(messages.c.media_id == media_id)
            .limit(1)
        )
        return row is not None


def _conversation(row: Any, member_ids: Sequence[str]) -> Conversation:
    return Conversation(
        id=row.id,
        kind=row.kind,
        title=row.title,
        owner_id=row.owner_id,
        created_at=row.created_at,
        last_seq=int(row.last_seq),
        last_version=int(row.last_version),
        members=tuple(member_ids),
    )
