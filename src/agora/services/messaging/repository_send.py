"""SQL of a message send: the hot write path of messaging (issue 13).

`check_send` is one read (is the author a member, and did they already send this client
id?), `store_message` the write: on PostgreSQL **one statement** (`STORE_PG`, a CTE) that
checks membership, advances the conversation's counters, inserts the message, moves the
author's read cursor and returns the conversation's `members_version`, run on a few
asyncpg connections of its own (agora/db/driver.py); on SQLite one transaction of three
statements (SQLite has no data-modifying CTE), run on the event loop's thread when no
lock is in the way
(`Database.run_sqlite`, agora/db/sqlite_inline.py: a hop to aiosqlite's thread per
statement cost several times the statements themselves).

Guarantees, on both backends:

- a non-member stores nothing (`StoreOutcome.NOT_MEMBER`);
- a client id already stored by this author in this conversation stores nothing and
  answers the stored message (`StoreOutcome.STORED`); two concurrent sends of one client
  id: the unique (conversation, author, client id) index refuses the second statement
  whole (`IntegrityError`), so no seq is taken for it and seqs stay gapless;
- the author's read cursor is at their message.

On PostgreSQL the statement's reads (membership, an earlier send) see the snapshot taken
when it started, and its `UPDATE` of the conversation may then wait for the row lock
behind a membership change (which bumps `members_version` under that lock). The
`UPDATE` only goes ahead when `members_version` is still what the snapshot saw
(PostgreSQL re-checks the condition on the locked row), so a removal that commits while
a send waits is never missed: the send reports `RETRY` and is run again on a fresh
snapshot.
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.engine import Dialect

from agora.db.engine import Database, UTCDateTime
from agora.db.sqlite_inline import Execute
from agora.services.messaging.domain import Message
from agora.services.messaging.repository import (
    MessagingRepository,
    conversations,
    members,
)


class StoreOutcome(enum.Enum):
    STORED_NEW = "new"
    STORED = "stored"  # this client id was stored before: nothing new
    NOT_MEMBER = "not member"  # or no such conversation
    RETRY = "retry"  # the membership changed while the statement waited (PostgreSQL)


@dataclass(frozen=True, slots=True)
class StoreResult:
    outcome: StoreOutcome
    seq: int = 0
    version: int = 0
    members_version: int = 0


# asyncpg's parameters (run on the driver's own connections, agora/db/driver.py): $1 the
# conversation, $2 the author, $3 the client id, $4 the message id, $5 its kind, $6 its
# text, $7 its media id, $8 the time.
STORE_PG = """
WITH member AS (
    SELECT 1 FROM msg_members WHERE conversation_id = $1 AND user_id = $2
), stored AS (
    SELECT seq FROM msg_messages
    WHERE conversation_id = $1 AND author_id = $2 AND client_id = $3
), seen AS (
    SELECT members_version FROM msg_conversations WHERE id = $1
), bump AS (
    UPDATE msg_conversations
    SET last_seq = last_seq + 1, last_version = last_version + 1, last_activity_at = $8
    WHERE id = $1
      AND EXISTS (SELECT 1 FROM member) AND NOT EXISTS (SELECT 1 FROM stored)
      AND members_version = (SELECT members_version FROM seen)
    RETURNING last_seq, last_version, members_version
), inserted AS (
    INSERT INTO msg_messages
        (id, conversation_id, seq, version, author_id, client_id, kind, text, media_id,
         created_at)
    SELECT $4, $1, last_seq, last_version, $2, $3, $5, $6, $7, $8
    FROM bump
    RETURNING seq, version
), moved AS (
    UPDATE msg_members SET read_seq = inserted.seq FROM inserted
    WHERE conversation_id = $1 AND user_id = $2 AND read_seq < inserted.seq
    RETURNING 1
)
SELECT (SELECT seq FROM inserted) AS seq,
       (SELECT version FROM inserted) AS version,
       (SELECT members_version FROM bump) AS members_version,
       (SELECT count(*) FROM moved) AS moved,
       EXISTS (SELECT 1 FROM member) AS member,
       (SELECT seq FROM stored) AS stored_seq
"""


@functools.cache
def _sqlite_time(dialect: Dialect) -> Callable[[Any], Any]:
    """How SQLAlchemy binds a `UTCDateTime` on this SQLite dialect (its text format)."""
    processor = UTCDateTime().dialect_impl(dialect).bind_processor(dialect)
    assert processor is not None
    return processor


def _values(message: Message) -> dict[str, Any]:
    return {
        "id": message.id,
        "cid": message.conversation_id,
        "author": message.author_id,
        "client_id": message.client_id,
        "kind": message.kind,
        "text": message.text,
        "media_id": message.media.id if message.media is not None else None,
        "now": message.created_at,
    }


# The membership row and the id of an earlier message of this client id: no row, not a
# member; a row with an id, a resend (its message is then read in full: rare).
CHECK_SQL = """
SELECT earlier.id FROM msg_members AS member
LEFT JOIN msg_messages AS earlier
  ON earlier.conversation_id = member.conversation_id
 AND earlier.author_id = member.user_id AND earlier.client_id = :client_id
WHERE member.conversation_id = :cid AND member.user_id = :author
"""
CHECK_PG = CHECK_SQL.replace(":client_id", "$3").replace(":cid", "$1").replace(":author", "$2")
EARLIER_SEQ_SQLITE_SQL = """
SELECT seq FROM msg_messages WHERE conversation_id = :cid AND author_id = :author
  AND client_id = :client_id
"""
ADVANCE_SQLITE_SQL = """
UPDATE msg_conversations
SET last_seq = last_seq + 1, last_version = last_version + 1, last_activity_at = :now
WHERE id = :cid
  AND EXISTS (SELECT 1 FROM msg_members WHERE conversation_id = :cid AND user_id = :author)
  AND NOT EXISTS (
      SELECT 1 FROM msg_messages
      WHERE conversation_id = :cid AND author_id = :author AND client_id = :client_id)
RETURNING last_seq, last_version, members_version
"""
INSERT_SQLITE_SQL = """
INSERT INTO msg_messages
    (id, conversation_id, seq, version, author_id, client_id, kind, text, media_id,
     created_at)
VALUES (:id, :cid, :seq, :version, :author, :client_id, :kind, :text, :media_id, :now)
"""
MOVE_CURSOR_SQLITE_SQL = """
UPDATE msg_members SET read_seq = :seq
WHERE conversation_id = :cid AND user_id = :author AND read_seq < :seq
"""
MEMBERS_WITH_VERSION = (
    select(conversations.c.members_version, members.c.user_id)
    .select_from(conversations.outerjoin(members, members.c.conversation_id == conversations.c.id))
    .where(conversations.c.id == bindparam("cid"))
    .order_by(members.c.joined_at, members.c.user_id)
)


class SendRepository:
    """The send's statements, each where its backend runs it cheapest (module docstring)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def check_send(
        self, conversation_id: str, author_id: str, client_id: str
    ) -> tuple[bool, Message | None]:
        """(is `author_id` a member, the message they stored under `client_id` if any):
        one statement, the membership row joined to the earlier message's id."""
        if self.db.is_postgres:
            found = await self.db.fetchrow(CHECK_PG, conversation_id, author_id, client_id)
        else:
            params = {"cid": conversation_id, "author": author_id, "client_id": client_id}
            rows = await self.db.run_sqlite(lambda execute: execute(CHECK_SQL, params), write=False)
            found = rows[0] if rows else None
        if found is None:
            return False, None
        earlier_id = found[0]
        if earlier_id is None:
            return True, None
        async with self.db.single_read() as connection:  # a resend: rare
            return True, await MessagingRepository(connection).message(conversation_id, earlier_id)

    async def store_message(self, message: Message) -> StoreResult:
        """Store `message` (its seq and version are taken here, the ones given are
        ignored); see the module docstring. On PostgreSQL the statement is its own
        transaction (an AUTOCOMMIT connection); on SQLite one transaction."""
        if self.db.is_postgres:
            return await self._store_postgres(message)
        values = _values(message)
        # Bound as SQLAlchemy binds a UTCDateTime here: the same text in every row.
        values["now"] = _sqlite_time(self.db.engine.dialect)(values["now"])
        return await self.db.run_sqlite(functools.partial(_store_sqlite, values), write=True)

    async def _store_postgres(self, message: Message) -> StoreResult:
        """`STORE_PG` on asyncpg connections of its own (agora/db/driver.py: SQLAlchemy's
        execution path and checkout cost more CPU than the statement); a unique-index race
        still raises SQLAlchemy's `IntegrityError`."""
        row = await self.db.fetchrow(
            STORE_PG,
            message.conversation_id,
            message.author_id,
            message.client_id,
            message.id,
            message.kind,
            message.text,
            message.media.id if message.media is not None else None,
            message.created_at.astimezone(UTC),
        )
        assert row is not None  # the final SELECT answers one row
        if row["seq"] is not None:
            return StoreResult(
                StoreOutcome.STORED_NEW,
                int(row["seq"]),
                int(row["version"]),
                int(row["members_version"]),
            )
        if not row["member"]:
            return StoreResult(StoreOutcome.NOT_MEMBER)
        if row["stored_seq"] is not None:
            return StoreResult(StoreOutcome.STORED, int(row["stored_seq"]))
        return StoreResult(StoreOutcome.RETRY)

    async def members_with_version(self, conversation_id: str) -> tuple[int, list[str]] | None:
        """The conversation's `members_version` and member ids (in the order they joined),
        read in one statement; None if there is no such conversation."""
        async with self.db.single_read() as connection:
            rows = (await connection.execute(MEMBERS_WITH_VERSION, {"cid": conversation_id})).all()
        if not rows:
            return None
        return int(rows[0].members_version), [r.user_id for r in rows if r.user_id is not None]


def _store_sqlite(values: dict[str, Any], execute: Execute) -> StoreResult:
    """Three statements in one transaction (the caller's); the first takes SQLite's
    write lock, so the checks in its WHERE are made under it."""
    keys = {name: values[name] for name in ("cid", "author", "client_id", "now")}
    rows = execute(ADVANCE_SQLITE_SQL, keys)
    if not rows:
        earlier = execute(EARLIER_SEQ_SQLITE_SQL, keys)
        if earlier:
            return StoreResult(StoreOutcome.STORED, int(earlier[0][0]))
        return StoreResult(StoreOutcome.NOT_MEMBER)
    seq, version, members_version = (int(x) for x in rows[0])
    execute(INSERT_SQLITE_SQL, values | {"seq": seq, "version": version})
    execute(MOVE_CURSOR_SQLITE_SQL, {"cid": values["cid"], "author": values["author"], "seq": seq})
    return StoreResult(StoreOutcome.STORED_NEW, seq, version, members_version)
