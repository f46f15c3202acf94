"""Stored audit events: the `audit_events` table and the sink that fills it.

`Audit` (agora.core.audit) logs every event as a JSON line; with `database_sink` it also
inserts one row per event, so security decisions can be queried later (by event and
time, or by user). The whole entry is kept as JSON in `data`; the columns are only
what the indexes need. `add_audit_events` stores entries inside a caller's own
transaction, for events that belong to a database change (the user-event batches).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, cast

import orjson
from sqlalchemy import Index, Integer, String, Table, Text, delete, insert, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from agora.core.audit import AuditSink
from agora.db.engine import Base, Database, UTCDateTime, utcnow


class AuditEvent(Base):
    __tablename__ = "audit_events"
    __table_args__ = (
        Index("ix_audit_events_event", "event", "at"),
        Index("ix_audit_events_at", "at"),  # the retention purge
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    event: Mapped[str] = mapped_column(String(64))
    service: Mapped[str] = mapped_column(String(32))
    user_id: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    data: Mapped[str] = mapped_column(Text)


audit_table = cast(Table, AuditEvent.__table__)


def _at(entry: dict[str, Any]) -> datetime:
    value = entry.get("at")
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            return utcnow()
        return parsed if parsed.tzinfo is not None else utcnow()
    return utcnow()


def audit_row(entry: dict[str, Any]) -> dict[str, Any]:
    """The `audit_events` row of one entry."""
    user_id = entry.get("user_id")
    return {
        "event": str(entry.get("event", ""))[:64],
        "service": str(entry.get("service", ""))[:32],
        "user_id": None if user_id is None else str(user_id)[:64],
        "at": _at(entry),
        # default=str: an entry may carry values JSON has no type for (a datetime, ...).
        "data": orjson.dumps(entry, default=str).decode(),
    }


async def add_audit_events(session: AsyncSession, entries: Sequence[dict[str, Any]]) -> None:
    """Insert entries in the caller's transaction (one multi-row statement)."""
    if entries:
        # The table, not the mapped class: a plain executemany, no ORM bulk machinery.
        await session.execute(insert(audit_table), [audit_row(entry) for entry in entries])


async def store_audit_event(db: Database, entry: dict[str, Any]) -> None:
    """Insert one audit entry in a transaction of its own."""
    async with db.transaction() as session:
        await add_audit_events(session, [entry])


# A request waits for its audit row: when the database hangs, give up (the JSON log line
# still holds the event) rather than hold the request.
STORE_TIMEOUT = 2.0


def database_sink(db: Database, timeout: float = STORE_TIMEOUT) -> AuditSink:
    async def sink(entry: dict[str, Any]) -> None:
        async with asyncio.timeout(timeout):
            await store_audit_event(db, entry)

    return sink


# Rows deleted per statement: a purge after a long pause never holds a long lock.
PURGE_BATCH = 5_000


async def purge_audit_events(db: Database, older_than: timedelta) -> int:
    """Deletes the rows whose `at` is more than `older_than` ago; returns how many."""
    cutoff = utcnow() - older_than
    deleted = 0
    while True:
        # In batches by id (SQLite and PostgreSQL have no DELETE ... LIMIT in common),
        # found through `ix_audit_events_at`.
        batch = (
            select(audit_table.c.id).where(audit_table.c.at < cutoff).limit(PURGE_BATCH)
        ).scalar_subquery()
        async with db.transaction() as session:
            result = await session.execute(delete(audit_table).where(audit_table.c.id.in_(batch)))
        count = int(getattr(result, "rowcount", 0) or 0)
        deleted += count
        if count < PURGE_BATCH:
            return deleted
