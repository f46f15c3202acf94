"""Database engine and sessions (SQLAlchemy 2 async): SQLite embedded, PostgreSQL real."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import Connection, DateTime, MetaData, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.types import TypeDecorator

from agora.db.driver import AsyncpgStatements
from agora.db.sqlite_inline import Busy, Execute, InlineSqlite

if TYPE_CHECKING:
    from asyncpg import Record

log = logging.getLogger("agora.db")
T = TypeVar("T")

# Inline commits between two checkpoints (sqlite_inline.py): a send writes about five
# pages, so about SQLite's own default of 1,000 WAL pages.
CHECKPOINT_EVERY = 200

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite forgets the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, _dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC) if value is not None else None

    def process_result_value(self, value: datetime | None, _dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets readers run beside the single writer; busy_timeout makes writers
    # queue instead of failing with "database is locked".
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


def create_engine(url: str) -> AsyncEngine:
    """`hide_parameters`: a failing statement's error (and so any traceback logged) never
    carries its parameters, which can be password hashes, e-mails, tokens (issue 11 §4)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url, hide_parameters=True)
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    # No pre-ping (a round trip on every checkout). A connection that died in the pool
    # (PostgreSQL restarted) fails its first use with `connection_invalidated`; SQLAlchemy
    # then discards every connection pooled before, so a retry gets a fresh one.
    # Recycling bounds a connection's age (idle-killing firewalls, server timeouts).
    return create_async_engine(
        url, pool_size=10, max_overflow=10, pool_recycle=300, hide_parameters=True
    )


def _sqlite_file(url: URL) -> str | None:
    """The file of a SQLite URL; None for an in-memory database (or a URI with options),
    which only the pool's connections can see."""
    if url.get_backend_name() != "sqlite" or url.query:
        return None
    if not url.database or url.database == ":memory:":
        return None
    return url.database


class Database:
    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = create_engine(url)
        sqlite_file = _sqlite_file(make_url(url))
        self._inline = InlineSqlite(sqlite_file) if sqlite_file is not None else None
        self._checkpoint: asyncio.Task[None] | None = None
        self._statements = AsyncpgStatements(url) if self.is_postgres else None
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        # Same pool, no BEGIN/ROLLBACK around each statement: for single-statement reads
        # on hot paths, where those two round trips cost more than the query itself.
        # Not on SQLite: its driver begins a transaction only at the first write anyway,
        # and setting then resetting the isolation level is two hops to aiosqlite's
        # thread per checkout (twice the CPU of the read itself, measured: issue 13).
        self._autocommit = (
            self.engine
            if self.engine.dialect.name == "sqlite"
            else self.engine.execution_options(isolation_level="AUTOCOMMIT")
        )

    @property
    def is_postgres(self) -> bool:
        return self.engine.dialect.name == "postgresql"

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """A session whose work is committed on exit, rolled back on error."""
        async with self.sessions() as session, session.begin():
            yield session

    @asynccontextmanager
    async def single_read(self) -> AsyncIterator[AsyncConnection]:
        """A connection for one read-only statement, outside any transaction."""
        async with self._autocommit.connect() as connection:
            yield connection

    @asynccontextmanager
    async def connection_transaction(self) -> AsyncIterator[AsyncConnection]:
        """A connection in a transaction committed on exit: a hot write path's few Core
        statements, without a session's bookkeeping."""
        async with self.engine.begin() as connection:
            yield connection

    async def fetchrow(self, sql: str, *args: Any) -> Record | None:
        """PostgreSQL: one statement (asyncpg's `$n` parameters) in its own transaction,
        on a few asyncpg connections of its own, for the hottest statements only
        (driver.py)."""
        assert self._statements is not None, "asyncpg's statements are PostgreSQL's"
        return await self._statements.fetchrow(sql, *args)

    async def fetch(self, sql: str, *args: Any) -> list[Record]:
        """`fetchrow`'s every row."""
        assert self._statements is not None, "asyncpg's statements are PostgreSQL's"
        return await self._statements.fetch(sql, *args)

    async def run_sqlite(self, work: Callable[[Execute], T], *, write: bool) -> T:
        """`work`, a few short statements on SQLite (sqlite_inline.py), on the loop's
        thread when no lock is in the way (no hop to a driver thread); else, and for an
        in-memory database, on a pooled connection where waiting is allowed (in a
        transaction when it writes)."""
        if self._inline is not None:
            try:
                result = self._inline.run(work, write=write)
            except Busy:
                pass
            else:
                if write:
                    self._checkpoint_when_due(self._inline)
                return result
        context = self.connection_transaction() if write else self.single_read()
        async with context as connection:
            return await connection.run_sync(lambda pooled: work(_pooled_executor(pooled)))

    def _checkpoint_when_due(self, inline: InlineSqlite) -> None:
        """The inline connection never checkpoints (it would sync the disk on the loop's
        thread): a pooled connection does, in its driver's thread."""
        if inline.commits_since_checkpoint < CHECKPOINT_EVERY or self._checkpoint is not None:
            return
        inline.commits_since_checkpoint = 0
        self._checkpoint = asyncio.get_running_loop().create_task(self._run_checkpoint())

    async def _run_checkpoint(self) -> None:
        try:
            async with self.single_read() as connection:
                await connection.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")
        except Exception:  # the next one is due in CHECKPOINT_EVERY commits
            log.warning("WAL checkpoint failed", exc_info=True)
        finally:
            self._checkpoint = None

    async def close(self) -> None:
        if self._checkpoint is not None:
            await asyncio.gather(self._checkpoint, return_exceptions=True)
        if self._inline is not None:
            self._inline.close()
        if self._statements is not None:
            await self._statements.close()
        await self.engine.dispose()


def _pooled_executor(connection: Connection) -> Execute:
    def execute(sql: str, params: Any) -> list[Any]:
        result = connection.exec_driver_sql(sql, params)
        return list(result.fetchall()) if result.returns_rows else []

    return execute
