"""`agora.db.driver.fetchrow`: a statement on asyncpg's own call keeps SQLAlchemy's errors
(what callers catch) and never returns a lost connection to the pool."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from agora.db import driver
from agora.db.engine import Database

pytestmark = pytest.mark.postgres


async def test_rows_and_errors_keep_sqlalchemy_classes(postgres_url: str) -> None:
    db = Database(postgres_url)
    table = f"driver_{uuid.uuid4().hex[:8]}"
    try:
        async with db.single_read() as connection:
            await connection.execute(text(f"CREATE TABLE {table} (id text PRIMARY KEY)"))
            row = await driver.fetchrow(
                connection, f"INSERT INTO {table} VALUES ($1) RETURNING id", "secret-1"
            )
            assert row is not None and row["id"] == "secret-1"
            assert await driver.fetchrow(connection, f"SELECT id FROM {table} WHERE false") is None
            with pytest.raises(IntegrityError) as duplicate:
                await driver.fetchrow(connection, f"INSERT INTO {table} VALUES ($1)", "secret-1")
            assert type(duplicate.value.orig).__name__ == "UniqueViolationError"
            with pytest.raises(DBAPIError) as refused:
                await driver.fetchrow(connection, "SELECT * FROM no_such_table_here")
            assert not isinstance(refused.value, IntegrityError)
            # The connection is still good after a refused statement.
            assert (await driver.fetchrow(connection, "SELECT 1 AS one"))["one"] == 1
    finally:
        async with db.single_read() as connection:
            await connection.execute(text(f"DROP TABLE IF EXISTS {table}"))
        await db.close()


async def test_a_lost_connection_is_invalidated(postgres_url: str) -> None:
    db = Database(postgres_url)
    try:
        async with db.single_read() as connection:
            pid = (await driver.fetchrow(connection, "SELECT pg_backend_pid() AS pid"))["pid"]
            async with db.single_read() as other:  # another pooled connection
                # Waits (up to 5 s) until the backend is gone.
                await other.execute(text("SELECT pg_terminate_backend(:pid, 5000)"), {"pid": pid})
            with pytest.raises(OperationalError) as lost:
                await driver.fetchrow(connection, "SELECT 1")
            assert lost.value.connection_invalidated
        async with db.single_read() as connection:  # the dead one is not handed out again
            row = await driver.fetchrow(connection, "SELECT pg_backend_pid() AS pid")
            assert row is not None and row["pid"] != pid
    finally:
        await db.close()
