"""SQL of a message send: the hot write path of messaging (issue 13).

`check_sends` is one read (is the author a member, and did they already send these
client ids?), `store_messages` the write of one author's messages to one conversation;
each for one send or a batch of them (the service runs what queued up while the
previous batch ran, service/batches.py). On PostgreSQL **one statement** (a CTE: `STORE_PG`
for one message, `STORE_MANY_PG` for a batch) checks membership, advances the
conversation's counters, inserts the messages with consecutive seqs, moves the author's
read cursor and returns the conversation's `members_version`, run on a few asyncpg
connections of its own (agora/db/driver.py); on SQLite one transaction of three
statements per message (SQLite has no data-modifying CTE), run on the event loop's
thread when no lock is in the way (`Database.run_sqlite`, agora/db/sqlite_inline.py: a
hop to aiosqlite's thread per statement cost several times the statements themselves).

Guarantees, on both backends:

- a non-member stores nothing (`StoreOutcome.NOT_MEMBER`);
- a client id this author already stored in this conversation (by a send that raced
  this one past its check, or twice in one batch) fails the whole store with
  `IntegrityError`: the unique (conversation, author, client id) index refuses it, the
  transaction is rolled back, no seq is taken and seqs stay gapless. The index is the
  only judge: a lookup of earlier client ids in the statement would only repeat, for
  committed sends, what the index decides for all (and on PostgreSQL such a lookup was
  planned on a fresh table as a scan of the whole conversation: see docs/benchmarks.md,
  "sixth round");
- a batch's new messages take consecutive seqs in the batch's order;
- the author's read cursor is at their last message.

On PostgreSQL the statement's read of the membership sees the snapshot taken
when it started, and its `UPDATE` of the conversation may then wait for the row lock
behind a membership change (which bumps `members_version` under that lock). The
`UPDATE` only goes ahead when `members_version` is still what the snapshot saw
(PostgreSQL re-checks the condition on the locked row), so a removal that commits while
a send waits is never missed: the batch reports `RETRY` and is run again on a fresh
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
    conversations,
    members,
)


class StoreOutcome(enum.Enum):
    STORED_NEW = "new"
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
), seen AS (
    SELECT members_version FROM msg_conversations WHERE id = $1
), bump AS (
    UPDATE msg_conversations
    SET last_seq = last_seq + 1, last_version = last_version + 1, last_activity_at = $8
    WHERE id = $1
      AND EXISTS (SELECT 1 FROM member)
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
       EXISTS (SELECT 1 FROM member) AS member
"""


# A batch of one author's messages to one conversation in one statement (group commit:
# one commit for the batch). $1 the conversation, $2 the author, then one array per
# column, in send order: $3 client ids, $4 message ids, $5 kinds, $6 texts, $7 media ids,
# $8 times. The messages take consecutive seqs in array order; a client id stored before
# (or twice in the batch) fails the unique index (IntegrityError): the caller then stores
# each alone, so that only that one fails.
STORE_MANY_PG = """
WITH input AS (
    SELECT * FROM unnest($3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
                         $8::timestamptz[])
        WITH ORDINALITY AS given(client_id, id, kind, text, media_id, created_at, n)
), member AS (
    SELECT 1 FROM msg_members WHERE conversation_id = $1 AND user_id = $2
), added AS (
    SELECT count(*) AS count, max(created_at) AS at FROM input
), seen AS (
    SELECT members_version FROM msg_conversations WHERE id = $1
), bump AS (
    UPDATE msg_conversations
    SET last_seq = last_seq + (SELECT count FROM added),
        last_version = last_version + (SELECT count FROM added),
        last_activity_at = (SELECT at FROM added)
    WHERE id = $1
      AND EXISTS (SELECT 1 FROM member)
      AND members_version = (SELECT members_version FROM seen)
    RETURNING last_seq, last_version, members_version
), inserted AS (
    INSERT INTO msg_messages
        (id, conversation_id, seq, version, author_id, client_id, kind, text, media_id,
         created_at)
    SELECT input.id, $1, bump.last_seq - added.count + input.n,
           bump.last_version - added.count + input.n, $2, input.client_id, input.kind,
           input.text, input.media_id, input.created_at
    FROM input CROSS JOIN bump CROSS JOIN added
    RETURNING client_id, seq, version
), moved AS (
    UPDATE msg_members SET read_seq = (SELECT max(seq) FROM inserted)
    WHERE conversation_id = $1 AND user_id = $2
      AND read_seq < (SELECT max(seq) FROM inserted)
    RETURNING 1
)
SELECT inserted.seq, inserted.version,
       (SELECT members_version FROM bump) AS members_version,
       EXISTS (SELECT 1 FROM member) AS member,
       (SELECT count(*) FROM moved) AS moved
FROM input
LEFT JOIN inserted ON inserted.client_id = input.client_id
ORDER BY input.n
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


@functools.cache
def check_pg(count: int) -> str:
    """`CHECK_SQL` for `count` client ids ($3 on), as asyncpg takes it: the membership
    row, joined to the earlier message of each. Joins, not a subquery per client id, a
    join on `unnest` or `= ANY`: on a table without statistics yet (a fresh database),
    PostgreSQL planned each of those as a scan of the conversation's (or the author's)
    messages, and kept that plan until the table was analyzed or the statement prepared
    again (docs/benchmarks.md, "sixth round"); these joins probe the unique index once
    per client id (tests/service/test_send_plans.py)."""
    earlier = ", ".join(f"e{n}.id" for n in range(count))
    joins = "\n".join(
        f"LEFT JOIN msg_messages AS e{n} ON e{n}.conversation_id = member.conversation_id"
        f" AND e{n}.author_id = member.user_id AND e{n}.client_id = ${3 + n}"
        for n in range(count)
    )
    where = "WHERE member.conversation_id = $1 AND member.user_id = $2"
    return f"SELECT {earlier} FROM msg_members AS member\n{joins}\n{where}"  # noqa: S608 (no input in it)


ADVANCE_SQLITE_SQL = """
UPDATE msg_conversations
SET last_seq = last_seq + 1, last_version = last_version + 1, last_activity_at = :now
WHERE id = :cid
  AND EXISTS (SELECT 1 FROM msg_members WHERE conversation_id = :cid AND user_id = :author)
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

    async def check_sends(
        self, conversation_id: str, author_id: str, client_ids: list[str]
    ) -> tuple[bool, list[str | None]]:
        """Is `author_id` a member, and the id of the message they stored under each of
        `client_ids` (None where none), in their order: one statement (SQLite: one per
        client id, on the loop's thread)."""
        if self.db.is_postgres:
            sql = check_pg(len(client_ids))
            found = await self.db.fetchrow(sql, conversation_id, author_id, *client_ids)
            return (False, []) if found is None else (True, list(found))
        rows = await self.db.run_sqlite(
            functools.partial(_check_sqlite, conversation_id, author_id, client_ids), write=False
        )
        return (False, []) if rows is None else (True, rows)

    async def store_messages(self, messages: list[Message]) -> list[StoreResult]:
        """Store `messages`, one author's to one conversation, in this order and in one
        transaction (one commit for them all); their seqs and versions are taken here,
        the ones given are ignored. See the module docstring; a result per message."""
        if self.db.is_postgres:
            return await self._store_postgres(messages)
        # Bound as SQLAlchemy binds a UTCDateTime here: the same text in every row.
        as_text = _sqlite_time(self.db.engine.dialect)
        batch = [_values(m) | {"now": as_text(m.created_at)} for m in messages]
        return await self.db.run_sqlite(functools.partial(_store_sqlite_many, batch), write=True)

    async def _store_postgres(self, messages: list[Message]) -> list[StoreResult]:
        """`STORE_PG` for one message, `STORE_MANY_PG` for more (for one, the batch's
        arrays cost more than the batch saves: 1.5x the CPU, measured with
        bench.send_path), on asyncpg connections of its own (agora/db/driver.py:
        SQLAlchemy's execution path and checkout cost more CPU than the statement); a
        unique-index race still raises SQLAlchemy's `IntegrityError`."""
        first = messages[0]
        if len(messages) == 1:
            row = await self.db.fetchrow(
                STORE_PG, first.conversation_id, first.author_id, first.client_id, first.id,
                first.kind, first.text, first.media.id if first.media is not None else None,
                first.created_at.astimezone(UTC),
            )  # fmt: skip
            return [_outcome(row)]
        rows = await self.db.fetch(
            STORE_MANY_PG,
            first.conversation_id,
            first.author_id,
            [m.client_id for m in messages],
            [m.id for m in messages],
            [m.kind for m in messages],
            [m.text for m in messages],
            [m.media.id if m.media is not None else None for m in messages],
            [m.created_at.astimezone(UTC) for m in messages],
        )
        return [_outcome(row) for row in rows]  # one row per message, in their order

    async def members_with_version(self, conversation_id: str) -> tuple[int, list[str]] | None:
        """The conversation's `members_version` and member ids (in the order they joined),
        read in one statement; None if there is no such conversation."""
        async with self.db.single_read() as connection:
            rows = (await connection.execute(MEMBERS_WITH_VERSION, {"cid": conversation_id})).all()
        if not rows:
            return None
        return int(rows[0].members_version), [r.user_id for r in rows if r.user_id is not None]


def _outcome(row: Any) -> StoreResult:
    if row["seq"] is not None:
        return StoreResult(
            StoreOutcome.STORED_NEW, int(row["seq"]), int(row["version"]),
            int(row["members_version"]),
        )  # fmt: skip
    if not row["member"]:
        return StoreResult(StoreOutcome.NOT_MEMBER)
    return StoreResult(StoreOutcome.RETRY)


def _check_sqlite(
    conversation_id: str, author_id: str, client_ids: list[str], execute: Execute
) -> list[str | None] | None:
    """The earlier message id of each client id; None if the author is not a member."""
    earlier: list[str | None] = []
    for client_id in client_ids:
        params = {"cid": conversation_id, "author": author_id, "client_id": client_id}
        rows = execute(CHECK_SQL, params)
        if not rows:
            return None
        earlier.append(rows[0][0])
    return earlier


def _store_sqlite_many(batch: list[dict[str, Any]], execute: Execute) -> list[StoreResult]:
    """Each message in turn, in one transaction (the caller's): one commit for all."""
    return [_store_sqlite(values, execute) for values in batch]


def _store_sqlite(values: dict[str, Any], execute: Execute) -> StoreResult:
    """Three statements in one transaction (the caller's); the first takes SQLite's
    write lock, so the checks in its WHERE are made under it."""
    keys = {name: values[name] for name in ("cid", "author", "now")}
    rows = execute(ADVANCE_SQLITE_SQL, keys)
    if not rows:
        return StoreResult(StoreOutcome.NOT_MEMBER)
    seq, version, members_version = (int(x) for x in rows[0])
    execute(INSERT_SQLITE_SQL, values | {"seq": seq, "version": version})
    execute(MOVE_CURSOR_SQLITE_SQL, {"cid": values["cid"], "author": values["author"], "seq": seq})
    return StoreResult(StoreOutcome.STORED_NEW, seq, version, members_version)
