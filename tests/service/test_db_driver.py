"""`Database.fetchrow` (agora/db/driver.py): a statement on the driver's own few asyncpg
connections keeps SQLAlchemy's errors (what callers catch), never hands a lost or
interrupted connection out again, leaves no transaction behind, and never opens more
than its maximum, however many statements wait."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from agora.db import driver
from agora.db.driver import CONNECT_TIMEOUT, AsyncpgStatements
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
    one = AsyncpgStatements("postgresql+asyncpg://postgres@127.0.0.1:9/none", max_size=1)
    # The second waits for the first's connection; the first's failed open wakes it.
    both = await asyncio.wait_for(
        asyncio.gather(one.fetchrow("SELECT 1"), one.fetchrow("SELECT 1"), return_exceptions=True),
        CONNECT_TIMEOUT,
    )
    assert [type(error) for error in both] == [OperationalError, OperationalError]
    assert one.opened == 0


async def test_statements_wait_for_a_connection_past_the_maximum(postgres_url: str) -> None:
    statements = AsyncpgStatements(postgres_url, max_size=2)
    try:
        rows = await asyncio.gather(
            *(statements.fetchrow("SELECT pg_sleep(0.02), pg_backend_pid() AS pid, $1::int AS n", n)
              for n in range(10))
        )  # fmt: skip
        assert [row["n"] for row in rows] == list(range(10))  # type: ignore[index]
        assert len({row["pid"] for row in rows}) == 2 and statements.opened == 2  # type: ignore[index]
    finally:
        await statements.close()
    assert statements.opened == 0


async def test_an_interrupted_statement_leaves_no_connection_behind(postgres_url: str) -> None:
    """A caller cancelled mid-statement: its connection may still get the answer, so it is
    closed, not reused; statements waiting behind it, cancelled or not, are not lost."""
    statements = AsyncpgStatements(postgres_url, max_size=1)
    try:
        first = (await statements.fetchrow("SELECT pg_backend_pid() AS pid"))["pid"]  # type: ignore[index]
        slow = asyncio.ensure_future(statements.fetchrow("SELECT pg_sleep(0.3)"))
        await asyncio.sleep(0.05)
        gives_up = asyncio.ensure_future(statements.fetchrow("SELECT 1"))  # waits, then cancelled
        waits = asyncio.ensure_future(statements.fetchrow("SELECT 2 AS two"))
        await asyncio.sleep(0.05)
        gives_up.cancel()
        assert (await asyncio.wait_for(waits, 2))["two"] == 2  # type: ignore[index]
        assert (await slow) is not None
        interrupted = asyncio.ensure_future(statements.fetchrow("SELECT pg_sleep(5)"))
        await asyncio.sleep(0.1)
        interrupted.cancel()
        with pytest.raises(asyncio.CancelledError):
            await interrupted
        row = await asyncio.wait_for(statements.fetchrow("SELECT pg_backend_pid() AS pid"), 2)
        assert row is not None and row["pid"] != first and statements.opened == 1
    finally:
        await statements.close()


async def test_a_connection_idle_too_long_is_replaced(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not reused after MAX_IDLE_SECONDS: a server or a proxy may have dropped it."""
    statements = AsyncpgStatements(postgres_url, max_size=1)
    try:
        first = (await statements.fetchrow("SELECT pg_backend_pid() AS pid"))["pid"]  # type: ignore[index]
        again = (await statements.fetchrow("SELECT pg_backend_pid() AS pid"))["pid"]  # type: ignore[index]
        assert again == first  # reused while fresh
        monkeypatch.setattr(driver, "MAX_IDLE_SECONDS", 0.0)
        replaced = (await statements.fetchrow("SELECT pg_backend_pid() AS pid"))["pid"]  # type: ignore[index]
        assert replaced != first and statements.opened == 1
    finally:
        await statements.close()
