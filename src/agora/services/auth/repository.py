"""SQL for accounts, their live sessions, and the outbox of their login/logout events."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from agora.services.auth.models import LiveSession, OutboxEvent, User


class DuplicateUser(Exception):
    def __init__(self, field: str) -> None:
        super().__init__(field)
        self.field = field


class UserRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(self, user: User) -> User:
        """Insert, mapping a unique-constraint race to DuplicateUser."""
        self.session.add(user)
        try:
            await self.session.flush()
        except IntegrityError as exc:
            field = "email" if "email" in str(exc.orig).lower() else "login"
            raise DuplicateUser(field) from exc
        return user

    async def taken_field(self, login_key: str, email_key: str) -> str | None:
        rows = await self.session.execute(
            select(User.login_key, User.email_key).where(
                (User.login_key == login_key) | (User.email_key == email_key)
            )
        )
        for row_login, _row_email in rows:
            return "login" if row_login == login_key else "email"
        return None

    async def by_login(self, login: str) -> User | None:
        result = await self.session.execute(select(User).where(User.login_key == login.lower()))
        return result.scalar_one_or_none()

    async def by_id(self, user_id: int) -> User | None:
        return await self.session.get(User, user_id)

    async def by_ids(self, user_ids: list[int]) -> list[User]:
        result = await self.session.execute(select(User).where(User.id.in_(user_ids)))
        return list(result.scalars())

    async def next_event_seq(self, user_id: int) -> EventSubject | None:
        """Take the user's next event `seq`, row-locked until the transaction ends.

        One `UPDATE ... RETURNING`: the increment and the row lock are the same statement
        (on PostgreSQL a concurrent login of the same user waits for this transaction),
        so two events of one user never share a `seq`. None if the user is gone.
        """
        result = await self.session.execute(
            update(User)
            .where(User.id == user_id)
            .values(event_seq=User.event_seq + 1)
            .returning(User.event_seq, User.name, User.email)
        )
        row = result.one_or_none()
        return None if row is None else EventSubject(row.event_seq, row.name, row.email)

    async def set_password_hash(self, user_id: int, password_hash: str) -> None:
        await self.session.execute(
            update(User).where(User.id == user_id).values(password_hash=password_hash)
        )


@dataclass(frozen=True)
class EventSubject:
    """What an event needs from the user row, read under the row lock."""

    seq: int
    name: str
    email: str


class OutboxRepository:
    """The `auth_outbox` table: written by AuthService, drained by the outbox relay."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(self, event_id: str, routing_key: str, payload: str) -> None:
        await self.session.execute(
            insert(OutboxEvent),
            [{"event_id": event_id, "routing_key": routing_key, "payload": payload}],
        )

    async def claim_unsent(self, limit: int) -> list[OutboxEvent]:
        """The oldest unsent rows, locked until the transaction ends.

        PostgreSQL: `FOR UPDATE SKIP LOCKED`, so a second relay takes the next rows
        instead of publishing these again or waiting. SQLite has no row locks (and the
        embedded app runs one relay): a plain select.
        """
        query = (
            select(OutboxEvent)
            .where(OutboxEvent.published_at.is_(None))
            .order_by(OutboxEvent.id)
            .limit(limit)
        )
        if self.session.get_bind().dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True)
        return list((await self.session.execute(query)).scalars())

    async def count_unsent(self) -> int:
        """Rows not yet published (the partial index on unpublished rows answers it)."""
        query = (
            select(func.count()).select_from(OutboxEvent).where(OutboxEvent.published_at.is_(None))
        )
        return int((await self.session.execute(query)).scalar_one())

    async def mark_published(self, ids: list[int], at: datetime) -> None:
        if ids:
            await self.session.execute(
                update(OutboxEvent)
                .where(OutboxEvent.id.in_(ids), OutboxEvent.published_at.is_(None))
                .values(published_at=at)
            )

    async def record_failure(self, row_id: int, error: str) -> None:
        await self.session.execute(
            update(OutboxEvent)
            .where(OutboxEvent.id == row_id)
            .values(attempts=OutboxEvent.attempts + 1, last_error=error[:2000])
        )

    async def prune_published_before(self, cutoff: datetime, limit: int) -> int:
        """Delete up to `limit` rows published before `cutoff`; the oldest go first."""
        oldest = (
            select(OutboxEvent.id)
            .where(OutboxEvent.published_at < cutoff)
            .order_by(OutboxEvent.id)
            .limit(limit)
            .scalar_subquery()
        )
        result = await self.session.execute(
            delete(OutboxEvent).where(OutboxEvent.id.in_(oldest)),
            execution_options={"synchronize_session": False},
        )
        return int(result.rowcount or 0)  # type: ignore[attr-defined]


class SessionRepository:
    """The `auth_sessions` table: which access tokens are live, per user.

    Every change runs after `lock_user`, in the transaction that may write the user's
    event: a login and a logout of one user never interleave between "how many are
    left" and the event that follows from it.
    """

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def lock_user(self, user_id: int) -> None:
        """Row-lock the user until the transaction ends (PostgreSQL; SQLite has one
        writer at a time, and the delete that follows takes it)."""
        if self.session.get_bind().dialect.name == "postgresql":
            await self.session.execute(select(User.id).where(User.id == user_id).with_for_update())

    async def add(self, jti: str, user_id: int, live_until: datetime) -> None:
        await self.session.execute(
            insert(LiveSession), [{"jti": jti, "user_id": user_id, "live_until": live_until}]
        )

    async def end(self, jti: str) -> None:
        await self.session.execute(delete(LiveSession).where(LiveSession.jti == jti))

    async def end_all(self, user_id: int) -> None:
        await self.session.execute(delete(LiveSession).where(LiveSession.user_id == user_id))

    async def end_expired(self, user_id: int, now: datetime) -> int:
        result = await self.session.execute(
            delete(LiveSession).where(LiveSession.user_id == user_id, LiveSession.live_until <= now)
        )
        return int(result.rowcount or 0)  # type: ignore[attr-defined]

    async def any_live(self, user_id: int, now: datetime) -> bool:
        query = select(LiveSession.jti).where(
            LiveSession.user_id == user_id, LiveSession.live_until > now
        )
        return (await self.session.execute(query.limit(1))).first() is not None

    async def users_with_expired(self, now: datetime, limit: int) -> list[int]:
        query = (
            select(LiveSession.user_id).where(LiveSession.live_until <= now).distinct().limit(limit)
        )
        return list((await self.session.execute(query)).scalars())
