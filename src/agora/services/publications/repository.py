"""SQL of the publications service: user status (fed by events) and publications.

Statements are Core on the mapped tables: the event path runs thousands of times a
second and needs no ORM identity map, just one upsert with a guard.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import ColumnElement, Table, and_, delete, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from agora.services.publications.models import (
    CONNECTED,
    DISCONNECTED,
    ProcessedEvent,
    Publication,
    PubUser,
)

users = cast(Table, PubUser.__table__)
processed = cast(Table, ProcessedEvent.__table__)
publications = cast(Table, Publication.__table__)


@dataclass(frozen=True, slots=True)
class UserEvent:
    """A validated connected/disconnected event (see `consumer.parse_event`)."""

    kind: str  # CONNECTED or DISCONNECTED
    user_id: str
    name: str | None = None
    email: str | None = None
    dedup_key: str | None = None
    seq: int | None = None
    occurred_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class UserStatus:
    user_id: str
    status: str
    name: str
    email: str
    last_activity_at: datetime | None
    # When the row last changed status: for a disconnected row, when the disconnect
    # was recorded (the event's arrival, or the idle sweep).
    updated_at: datetime

    @property
    def connected(self) -> bool:
        return self.status == CONNECTED


STATUS_COLUMNS = (
    users.c.user_id,
    users.c.status,
    users.c.name,
    users.c.email,
    users.c.last_activity_at,
    users.c.updated_at,
)


def _status(row: Any) -> UserStatus:
    return UserStatus(
        row.user_id, row.status, row.name, row.email, row.last_activity_at, row.updated_at
    )


def _insert_for(session: AsyncSession) -> Any:
    """The dialect's INSERT, which has ON CONFLICT (both PostgreSQL and SQLite do)."""
    dialect = session.get_bind().dialect.name
    return postgresql.insert if dialect == "postgresql" else sqlite.insert


def newer_than_stored(event: UserEvent, incoming: Any) -> ColumnElement[bool] | None:
    """The guard that keeps an older event from overwriting a newer one.

    `seq` decides when both the event and the stored row have one (the auth service
    numbers each user's events); else `occurred_at` (ties go to the later arrival);
    else arrival order, i.e. no guard (None). `incoming` is the upsert's `excluded`
    row, whose `last_event_seq`/`last_event_at` are the event's `seq`/`occurred_at`:
    one guard then serves every event of the same `shape` in one statement.
    """
    by_time: ColumnElement[bool] | None = None
    if event.occurred_at is not None:
        by_time = or_(
            users.c.last_event_at.is_(None), users.c.last_event_at <= incoming.last_event_at
        )
    if event.seq is None:
        return by_time
    stored_seq = users.c.last_event_seq
    by_seq = and_(stored_seq.is_not(None), stored_seq < incoming.last_event_seq)
    if by_time is None:
        return or_(by_seq, stored_seq.is_(None))
    return or_(by_seq, and_(stored_seq.is_(None), by_time))


Shape = tuple[str, bool, bool, bool, bool]


def shape(event: UserEvent) -> Shape:
    """What the upsert statement of `event` depends on besides its values: events of one
    shape share one statement (the guard, and which columns an update may change)."""
    return (
        event.kind,
        event.seq is not None,
        event.occurred_at is not None,
        event.name is not None,
        event.email is not None,
    )


def _values(event: UserEvent, now: datetime) -> dict[str, Any]:
    return {
        "user_id": event.user_id,
        "name": event.name or "",
        "email": event.email or "",
        "status": event.kind,
        # Login is activity; the arrival time (not occurred_at) starts the idle
        # window, so events delayed by a broker outage do not arrive already idle.
        "last_activity_at": now if event.kind == CONNECTED else None,
        "updated_at": now,
        "last_event_seq": event.seq,
        # Without occurred_at the arrival time stands in: "arrival order".
        "last_event_at": event.occurred_at or now,
    }


def rounds(events: Sequence[UserEvent]) -> list[dict[Shape, list[int]]]:
    """Split events (by index) into statements that keep each user's arrival order.

    Round k holds every user's k-th event of the batch, so a user appears at most once
    per statement (PostgreSQL refuses an ON CONFLICT DO UPDATE that touches a row
    twice) and a user's events run in arrival order across rounds; within a round the
    events are grouped by `shape`. Different users never affect each other, so their
    relative order does not matter.
    """
    seen: dict[str, int] = {}
    result: list[dict[Shape, list[int]]] = []
    for index, event in enumerate(events):
        k = seen.get(event.user_id, 0)
        seen[event.user_id] = k + 1
        if k == len(result):
            result.append({})
        result[k].setdefault(shape(event), []).append(index)
    return result


class UserStatusRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self._insert = _insert_for(session)

    async def mark_processed(self, event_ids: Collection[str], now: datetime) -> set[str]:
        """Record events as applied; returns those that were not yet (the others are
        redeliveries). One statement; sorted, so concurrent batches lock in one order."""
        if not event_ids:
            return set()
        statement = (
            self._insert(processed)
            .on_conflict_do_nothing(index_elements=[processed.c.event_id])
            .returning(processed.c.event_id)
        )
        rows = [{"event_id": key, "processed_at": now} for key in sorted(event_ids)]
        return set((await self.session.execute(statement, rows)).scalars())

    async def apply(self, events: Sequence[UserEvent], now: datetime) -> list[UserStatus | None]:
        """Upsert each event in order; item i is the row event i left, or None when a
        newer event was already stored (the event is ignored).

        Each statement is INSERT ... VALUES (...), (...) ON CONFLICT (user_id) DO UPDATE
        ... WHERE <newer>, one per round and shape (see `rounds`). A first event for an
        unknown user (even `disconnected`) creates the row, so its ordering fields are
        there to refuse an older event arriving later.
        """
        results: list[UserStatus | None] = [None] * len(events)
        for statements in rounds(events):
            for indexes in statements.values():
                group = sorted(indexes, key=lambda i: events[i].user_id)  # one lock order
                rows = await self._upsert([events[i] for i in group], now)
                for i in group:
                    results[i] = rows.get(events[i].user_id)
        return results

    async def _upsert(self, events: Sequence[UserEvent], now: datetime) -> dict[str, UserStatus]:
        """One statement for events of one shape, each of a different user.

        Executed with a list of rows: the statement is compiled once per shape (and
        cached), SQLAlchemy's "insertmanyvalues" turns the rows into one multi-row
        VALUES statement at execution.
        """
        template = events[0]
        statement = self._insert(users)
        excluded = statement.excluded
        changes: dict[str, Any] = {
            "status": excluded.status,
            "updated_at": excluded.updated_at,
            # An event without seq (another publisher) keeps the last known seq, so the
            # auth service's own events still order among themselves.
            "last_event_seq": func.coalesce(excluded.last_event_seq, users.c.last_event_seq),
            "last_event_at": excluded.last_event_at,
        }
        if template.kind == CONNECTED:
            changes["last_activity_at"] = excluded.last_activity_at
        if template.name is not None:
            changes["name"] = excluded.name
        if template.email is not None:
            changes["email"] = excluded.email
        statement = statement.on_conflict_do_update(
            index_elements=[users.c.user_id],
            set_=changes,
            where=newer_than_stored(template, excluded),
        ).returning(*STATUS_COLUMNS)
        result = await self.session.execute(statement, [_values(event, now) for event in events])
        return {row.user_id: _status(row) for row in result}

    async def get_many(self, user_ids: Collection[str]) -> list[UserStatus]:
        if not user_ids:
            return []
        statement = select(*STATUS_COLUMNS).where(users.c.user_id.in_(user_ids))
        return [_status(row) for row in await self.session.execute(statement)]

    async def connected_among(self, user_ids: Collection[str]) -> set[str]:
        """Which of these users are connected (one statement)."""
        if not user_ids:
            return set()
        statement = select(users.c.user_id).where(
            users.c.user_id.in_(user_ids), users.c.status == CONNECTED
        )
        return set((await self.session.execute(statement)).scalars())

    async def get(self, user_id: str) -> UserStatus | None:
        statement = select(*STATUS_COLUMNS).where(users.c.user_id == user_id)
        row = (await self.session.execute(statement)).first()
        return _status(row) if row is not None else None

    async def record_activity(self, user_id: str, now: datetime) -> UserStatus | None:
        """Move `last_activity_at`; None if the user is no longer connected."""
        statement = (
            update(users)
            .where(users.c.user_id == user_id, users.c.status == CONNECTED)
            .values(last_activity_at=now)
            .returning(*STATUS_COLUMNS)
        )
        row = (await self.session.execute(statement)).first()
        return _status(row) if row is not None else None

    async def disconnect_idle(
        self, idle_since: datetime, now: datetime
    ) -> list[tuple[str, datetime | None]]:
        """Disconnect every connected user idle since before `idle_since`.

        One conditional UPDATE: with several instances sweeping at once, each row is
        changed by exactly one of them (the others re-check `status` after the row lock
        and skip it), so each user is reported, uncached and audited once.
        """
        statement = (
            update(users)
            .where(users.c.status == CONNECTED, users.c.last_activity_at < idle_since)
            .values(status=DISCONNECTED, updated_at=now)
            .returning(users.c.user_id, users.c.last_activity_at)
        )
        return [
            (row.user_id, row.last_activity_at) for row in await self.session.execute(statement)
        ]

    async def prune_processed(self, before: datetime) -> int:
        result = await self.session.execute(
            delete(processed).where(processed.c.processed_at < before)
        )
        return int(getattr(result, "rowcount", 0) or 0)


PUBLICATION_COLUMNS = (
    publications.c.id,
    publications.c.title,
    publications.c.body,
    publications.c.created_at,
    publications.c.updated_at,
)


class PublicationPages:
    """The hot read, on a plain connection: one statement needs no transaction."""

    def __init__(self, connection: AsyncConnection) -> None:
        self.connection = connection

    async def page(self, user_id: str, before_id: int | None, limit: int) -> Sequence[Any]:
        """Up to `limit` of the user's publications, newest first, older than `before_id`."""
        statement = select(*PUBLICATION_COLUMNS).where(publications.c.user_id == user_id)
        if before_id is not None:
            statement = statement.where(publications.c.id < before_id)
        statement = statement.order_by(publications.c.id.desc()).limit(limit)
        return (await self.connection.execute(statement)).all()


class PublicationRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get_owned(
        self, publication_id: int, user_id: str, *, for_update: bool = False
    ) -> Publication | None:
        """With `for_update`, the row is locked until the transaction ends (PostgreSQL's
        FOR UPDATE; SQLite has no row locks and ignores it): a concurrent DELETE waits,
        or has already won and the row is not found."""
        statement = select(Publication).where(
            Publication.id == publication_id, Publication.user_id == user_id
        )
        if for_update:
            statement = statement.with_for_update()
        return (await self.session.execute(statement)).scalar_one_or_none()

    async def add(self, publication: Publication) -> Publication:
        self.session.add(publication)
        await self.session.flush()
        return publication

    async def delete_owned(self, publication_id: int, user_id: str) -> bool:
        statement = (
            delete(publications)
            .where(publications.c.id == publication_id, publications.c.user_id == user_id)
            .returning(publications.c.id)
        )
        return (await self.session.execute(statement)).first() is not None
