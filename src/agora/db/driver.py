"""One statement on asyncpg's own connection, under SQLAlchemy's pool.

For the hottest statements only (a message's send, issue 13): SQLAlchemy's execution
path (the execution context, the DBAPI adapter, its greenlet hop, the result wrapper)
cost about 200 µs of CPU per statement on top of asyncpg's own 100-150, more than the
statement itself. The connection still comes from the engine's pool (checked out, reset
and returned as any other); the statement is prepared once per connection by asyncpg's
statement cache. The SQL is written with asyncpg's `$n` parameters, with casts where
PostgreSQL cannot infer a type.

Errors keep SQLAlchemy's classes, so callers catch what they would catch otherwise: a
constraint is an `IntegrityError`; a lost connection is invalidated (never returned to
the pool) and raised as an `OperationalError`; anything else the server refuses is a
`DBAPIError`. Parameters are never put in the error (`hide_parameters`, issue 11 §4).
asyncpg is imported when first used: it is the `postgres` extra, absent from an
embedded-only install.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection

if TYPE_CHECKING:
    from asyncpg import Record


async def fetchrow(connection: AsyncConnection, sql: str, *args: Any) -> Record | None:
    """The first row of `sql` run with `args` on `connection`'s asyncpg connection."""
    import asyncpg

    # The connection is gone or its protocol state is broken (a backend terminated while
    # idle shows as either, depending on when its FATAL message is read): never reuse it.
    lost = (
        asyncpg.PostgresConnectionError,
        asyncpg.InterfaceError,
        asyncpg.InternalClientError,
        OSError,
    )
    raw = await connection.get_raw_connection()
    driver = raw.driver_connection
    assert driver is not None
    try:
        row: Record | None = await driver.fetchrow(sql, *args)
    except asyncpg.IntegrityConstraintViolationError as error:
        raise IntegrityError(sql, None, error, hide_parameters=True) from error
    except lost as error:
        await connection.invalidate(error)
        raise OperationalError(
            sql, None, error, hide_parameters=True, connection_invalidated=True
        ) from error
    except asyncpg.PostgresError as error:
        raise DBAPIError(sql, None, error, hide_parameters=True) from error
    return row
