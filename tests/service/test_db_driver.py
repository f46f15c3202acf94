"""`Database.fetchrow` (agora/db/driver.py): a statement on asyncpg's own small pool keeps
SQLAlchemy's errors (what callers catch), never hands a lost connection out again, and
leaves no transaction behind on a pooled connection."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from agora.db.driver import AsyncpgStatements
from agora.db.engine import Database

pytestmark = pytest.mark.postgres


async def test_rows_and_errors_keep_sqlalchemy_classes(postgres_url: str) -> None:
    db = Database(postgres_url)
    table = f"driver_{uuid.uuid4().hex[:8]}"
    try:
        async with db.single_read() as connection:
            await connection.execute(text(f"CREATE TABLE {table} (id text PRIMARY KEY)"))
        row = await db.fetchrow(f"INSERT INTO {table} VALUES ($1) RETURNING id", "secret-1")
        assert row is not None and row["id"] == "secret-1"
        assert await db.fetchrow(f"SELECT id FROM {table} WHERE false") is None
        with pytest.raises(IntegrityError) as duplicate:
            await db.fetchrow(f"INSERT INTO {table} VALUES ($1)", "secret-1")
        assert type(duplicate.value.orig).__name__ == "UniqueViolationError"
        with pytest.raises(DBAPIError) as refused:
            await db.fetchrow("SELECT * FROM no_such_table_here")
        assert not isinstance(refused.value, IntegrityError)
        # The pool's connections are still good after a refused statement.
        for _ in range(8):
            assert (await db.fetchrow("SELECT 1 AS one"))["one"] == 1  # type: ignore[index]
        async with db.single_read() as connection:  # committed: another connection sees it
            assert (await connection.execute(text(f"SELECT count(*) FROM {table}"))).scalar() == 1
    finally:
        async with db.single_read() as connection:
            await connection.execute(text(f"DROP TABLE IF EXISTS {table}"))
        await db.close()


async def test_a_lost_connection_is_never_handed_out_again(postgres_url: str) -> None:
    statements = AsyncpgStatements(postgres_url, max_size=1)  # always the same connection
    db = Database(postgres_url)
    try:
        pid = (await statements.fetchrow("SELECT pg_backend_pid() AS pid"))["pid"]  # type: ignore[index]
        async with db.single_read() as other:  # waits (up to 5 s) until the backend is gone
            await other.execute(text("SELECT pg_terminate_backend(:pid, 5000)"), {"pid": pid})
        # Either the pool saw the connection close (a new one answers) or the statement
        # found it dead: then SQLAlchemy's error, and the next one gets a new connection.
        try:
            row = await statements.fetchrow("SELECT pg_backend_pid() AS pid")
        except OperationalError as lost:
            invalidated = lost.connection_invalidated
            row = await statements.fetchrow("SELECT pg_backend_pid() AS pid")
            assert invalidated
        assert row is not None and row["pid"] != pid
    finally:
        await statements.close()
        await db.close()


async def test_a_connection_left_in_a_transaction_is_reset_before_reuse(
    postgres_url: str,
) -> None:
    """Only autocommit statements belong here; if one ever opened a transaction (a
    `BEGIN` in the SQL), the next statement must not run inside it, uncommitted."""
    statements = AsyncpgStatements(postgres_url, max_size=1)
    db = Database(postgres_url)
    table = f"driver_{uuid.uuid4().hex[:8]}"
    try:
        await statements.fetchrow(f"CREATE TABLE {table} (id text PRIMARY KEY)")
        await statements.fetchrow("BEGIN")
        await statements.fetchrow(f"INSERT INTO {table} VALUES ('committed')")
        async with db.single_read() as other:
            assert (await other.execute(text(f"SELECT count(*) FROM {table}"))).scalar() == 1
    finally:
        await statements.fetchrow(f"DROP TABLE IF EXISTS {table}")
        await statements.close()
        await db.close()


def test_the_pool_connects_as_sqlalchemys_does() -> None:
    """The URL's options mean the same on both pools (TLS included); SQLAlchemy's own
    adapter options are not sent to PostgreSQL as server settings."""
    url = "postgresql+asyncpg://u:p@db.example:5433/agora?ssl=require&prepared_statement_cache_size=50"
    assert AsyncpgStatements(url).connect_kwargs == {
        "host": "db.example", "port": 5433, "user": "u", "password": "p",
        "database": "agora", "ssl": "require",
    }  # fmt: skip


async def test_an_unreachable_server_is_an_operational_error_then_recovers(
    postgres_url: str,
) -> None:
    unreachable = AsyncpgStatements("postgresql+asyncpg://postgres@127.0.0.1:9/none")
    try:
        with pytest.raises(OperationalError):
            await unreachable.fetchrow("SELECT 1")
        with pytest.raises(OperationalError):  # tried again, not a cached failure
            await unreachable.fetchrow("SELECT 1")
        both = await asyncio.gather(
            unreachable.fetchrow("SELECT 1"), unreachable.fetchrow("SELECT 1"),
            return_exceptions=True,
        )  # fmt: skip
        assert [type(error) for error in both] == [OperationalError, OperationalError]
    finally:
        await unreachable.close()
