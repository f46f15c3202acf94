"""Single statements on asyncpg's own small pool, beside SQLAlchemy's.

For the hottest statements only (a message's send, issue 13). Through SQLAlchemy a
one-statement read cost about 260 µs of CPU, of which asyncpg's own call is 90-100: the
execution path (execution context, DBAPI adapter, greenlet hop, result wrapper) and the
pool's checkout and return (measured in docs/benchmarks.md, "asyncpg's own pool"). Here
the statement goes straight to a connection of an asyncpg pool of at most
`HOT_CONNECTIONS`, prepared once per connection by asyncpg's statement cache. Each
statement is its own transaction (autocommit), so a connection comes back with nothing
to undo: no reset query on release (asyncpg's default is a round trip each time); a
transaction somehow left open is still rolled back by the pool. The SQL is written with
asyncpg's `$n` parameters, with casts where PostgreSQL cannot infer a type.

Errors keep SQLAlchemy's classes, so callers catch what they would catch otherwise: a
constraint is an `IntegrityError`; a lost connection is closed (never handed out again)
and raised as an `OperationalError` with `connection_invalidated`; anything else the
server refuses is a `DBAPIError`. Parameters are never put in the error
(`hide_parameters`, issue 11 §4). asyncpg is imported when first used: it is the
`postgres` extra, absent from an embedded-only install.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

if TYPE_CHECKING:
    from asyncpg import Connection, Pool, Record

HOT_CONNECTIONS = 4  # one statement takes a few hundred µs: enough for one event loop
CONNECT_TIMEOUT = 10.0
# Query options of a SQLAlchemy URL that are its asyncpg adapter's, not asyncpg's.
SQLALCHEMY_OPTIONS = ("prepared_statement_cache_size", "prepared_statement_name_func")


async def _nothing_to_reset(_connection: Connection) -> None:
    """Replaces asyncpg's default reset (a round trip on every release): a statement
    here leaves no session state. The pool still rolls back a transaction left open
    before calling this (asyncpg's `Connection._reset`)."""


class AsyncpgStatements:
    """`fetchrow` on a pool of asyncpg's own, opened at the first statement."""

    def __init__(self, url: str, *, max_size: int = HOT_CONNECTIONS) -> None:
        # What SQLAlchemy's asyncpg dialect passes to `asyncpg.connect` for this URL (so
        # `?ssl=...` and the rest mean the same on both pools), less its own options.
        parsed = make_url(url)
        _, self.connect_kwargs = parsed.get_dialect()().create_connect_args(parsed)
        for option in SQLALCHEMY_OPTIONS:
            self.connect_kwargs.pop(option, None)
        self.max_size = max_size
        self._pool: asyncio.Future[Pool] | None = None

    async def _opened(self) -> Pool:
        import asyncpg

        opening = self._pool
        if opening is None:
            opening = self._pool = asyncio.ensure_future(
                asyncpg.create_pool(
                    **self.connect_kwargs,
                    min_size=1,
                    max_size=self.max_size,
                    timeout=CONNECT_TIMEOUT,
                    reset=_nothing_to_reset,
                )
            )
        try:
            return await asyncio.shield(opening)
        except BaseException:
            if opening.done() and self._pool is opening:  # failed: the next one tries again
                self._pool = None
            raise

    async def fetchrow(self, sql: str, *args: Any) -> Record | None:
        """The first row of `sql` run with `args`, in its own transaction."""
        import asyncpg

        # The connection is gone or its protocol state is broken (a backend terminated
        # while idle shows as either, depending on when its FATAL message is read).
        lost = (
            asyncpg.PostgresConnectionError,
            asyncpg.InterfaceError,
            asyncpg.InternalClientError,
            OSError,
        )
        try:
            pool = await self._opened()
            async with pool.acquire() as connection:
                try:
                    row: Record | None = await connection.fetchrow(sql, *args)
                except lost:
                    connection.terminate()  # the pool opens a new one in its place
                    raise
        except asyncpg.IntegrityConstraintViolationError as error:
            raise IntegrityError(sql, None, error, hide_parameters=True) from error
        except (TimeoutError, *lost) as error:
            raise OperationalError(
                sql, None, error, hide_parameters=True, connection_invalidated=True
            ) from error
        except asyncpg.PostgresError as error:
            raise DBAPIError(sql, None, error, hide_parameters=True) from error
        return row

    async def close(self) -> None:
        if self._pool is None:
            return
        pool, self._pool = self._pool, None
        if pool.done() and not pool.cancelled() and pool.exception() is None:
            await pool.result().close()
        else:
            pool.cancel()
