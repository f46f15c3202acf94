"""Single statements on a few asyncpg connections of their own, beside SQLAlchemy's pool.

For the hottest statements only (a message's send, issue 13). Through SQLAlchemy a
one-statement read cost about 260 µs of CPU, of which asyncpg's own call is 90-100: the
execution path (execution context, DBAPI adapter, greenlet hop, result wrapper) and the
pool's checkout and return. Here the statement goes straight to one of at most
`HOT_CONNECTIONS` asyncpg connections, prepared once per connection by asyncpg's
statement cache.

The connections are held here, not in an `asyncpg.Pool`: its acquire and release cost
90-140 µs of CPU and 200-300 µs of latency per statement (a shielded task and an idle
timer on every release; docs/benchmarks.md, "Issue 13, fifth round"), as much as the
statement itself. What this holder does is small: an idle connection is reused (the
last one back first: it is the warm one) unless it has been idle `MAX_IDLE_SECONDS`
(then it is closed: a server or a proxy may have dropped it meanwhile), a new one is
opened while fewer than the maximum are, and otherwise the statement waits for one to
come back, in order.

Each statement is its own transaction (autocommit), so a connection comes back with
nothing to undo. One that does not come back clean is closed, never handed out again:
lost (the server or the network went away), caught in a transaction (a `BEGIN` in the
SQL), or interrupted (the caller was cancelled mid-statement: its answer may still be
on the wire). A statement the server refuses leaves its connection good.

Errors keep SQLAlchemy's classes, so callers catch what they would catch otherwise: a
constraint is an `IntegrityError`; a lost connection is an `OperationalError` with
`connection_invalidated`, as is a server that cannot be reached; anything else the
server refuses is a `DBAPIError`. Parameters are never put in the error
(`hide_parameters`, issue 11 §4). asyncpg is imported when first used: it is the
`postgres` extra, absent from an embedded-only install.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import TYPE_CHECKING, Any

from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

if TYPE_CHECKING:
    from asyncpg import Connection, Record

HOT_CONNECTIONS = 4  # one statement takes a few hundred µs: enough for one event loop
CONNECT_TIMEOUT = 10.0
MAX_IDLE_SECONDS = 300.0  # an idle connection older than this is closed, not reused
# Query options of a SQLAlchemy URL that are its asyncpg adapter's, not asyncpg's.
SQLALCHEMY_OPTIONS = ("prepared_statement_cache_size", "prepared_statement_name_func")


class AsyncpgStatements:
    """`fetchrow` on at most `max_size` asyncpg connections, opened when first needed."""

    def __init__(self, url: str, *, max_size: int = HOT_CONNECTIONS) -> None:
        # What SQLAlchemy's asyncpg dialect passes to `asyncpg.connect` for this URL (so
        # `?ssl=...` and the rest mean the same on both pools), less its own options.
        parsed = make_url(url)
        _, self.connect_kwargs = parsed.get_dialect()().create_connect_args(parsed)
        for option in SQLALCHEMY_OPTIONS:
            self.connect_kwargs.pop(option, None)
        self.max_size = max_size
        self.opened = 0  # connections open or opening, idle or in use
        self._idle: list[tuple[Connection, float]] = []  # with when it came back
        self._waiting: deque[asyncio.Future[None]] = deque()  # statements waiting for room
        self._closed = False

    async def fetchrow(self, sql: str, *args: Any) -> Record | None:
        """The first row of `sql` run with `args`, in its own transaction."""
        rows = await self.fetch(sql, *args)
        return rows[0] if rows else None

    async def fetch(self, sql: str, *args: Any) -> list[Record]:
        """The rows of `sql` run with `args`, in its own transaction."""
        import asyncpg

        try:
            connection = await self._take()
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
            raise OperationalError(
                sql, None, error, hide_parameters=True, connection_invalidated=True
            ) from error
        try:
            rows: list[Record] = await connection.fetch(sql, *args)
        except asyncpg.PostgresError as error:
            self._give_back(connection)  # refused by the server: the connection is fine
            if isinstance(error, asyncpg.IntegrityConstraintViolationError):
                raise IntegrityError(sql, None, error, hide_parameters=True) from error
            raise DBAPIError(sql, None, error, hide_parameters=True) from error
        except BaseException as error:  # lost, or interrupted: never used again
            self._drop(connection)
            if isinstance(error, (OSError, asyncpg.InterfaceError, asyncpg.InternalClientError)):
                raise OperationalError(
                    sql, None, error, hide_parameters=True, connection_invalidated=True
                ) from error
            raise
        self._give_back(connection)
        return rows

    async def _take(self) -> Connection:
        import asyncpg

        self._closed = False  # used again after `close`
        while True:
            while self._idle:
                connection, since = self._idle.pop()
                if time.monotonic() - since < MAX_IDLE_SECONDS:
                    return connection
                self._drop(connection)  # may have been dropped by the server or a proxy
            if self.opened < self.max_size:
                self.opened += 1
                try:
                    return await asyncpg.connect(**self.connect_kwargs, timeout=CONNECT_TIMEOUT)
                except BaseException:
                    self.opened -= 1
                    self._wake_one()  # a waiter may open one in its place
                    raise
            waiter = asyncio.get_running_loop().create_future()
            self._waiting.append(waiter)
            try:
                await waiter
            except BaseException:
                if waiter.done() and not waiter.cancelled():
                    self._wake_one()  # woken, then cancelled: pass the turn on
                elif waiter in self._waiting:
                    self._waiting.remove(waiter)
                raise

    def _give_back(self, connection: Connection) -> None:
        if self._closed or connection.is_closed() or connection.is_in_transaction():
            self._drop(connection)
            return
        self._idle.append((connection, time.monotonic()))
        self._wake_one()

    def _drop(self, connection: Connection) -> None:
        connection.terminate()
        self.opened -= 1
        self._wake_one()

    def _wake_one(self) -> None:
        while self._waiting:
            waiter = self._waiting.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    async def close(self) -> None:
        """Close the idle connections; those in use close when they come back (unless a
        statement comes first: then the holder is in use again)."""
        self._closed = True
        idle, self._idle = self._idle, []
        for connection, _ in idle:
            self.opened -= 1
            await connection.close(timeout=CONNECT_TIMEOUT)
