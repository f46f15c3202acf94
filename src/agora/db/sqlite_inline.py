"""Short SQLite work on the event loop's own thread, for the hottest statements (issue 13).

aiosqlite runs every statement in a thread of its own: each statement, commit and
rollback is a hop there and back (a queue, a thread wake-up, a wake-up of the loop).
A message's send is about 70 µs of SQLite work, but six such hops made it 350-650 µs of
CPU and most of its latency (measured in docs/benchmarks.md, "the send on the loop's
thread"). Here the same work runs directly on a connection of the loop's thread, which
is safe only because nothing on it can wait:

- **no lock waits**: `busy_timeout` is 0 on this connection, so when another connection
  (another process, or aiosqlite's pool during a long transaction) holds SQLite's write
  lock, the work fails at once with `SQLITE_BUSY` before anything is done, and the
  caller runs it again where waiting is allowed (`Busy`; `Database.run_sqlite` does);
- **no checkpoints**: `wal_autocheckpoint` is 0 on this connection (a checkpoint copies
  the WAL into the database file and syncs it, milliseconds of disk). `commits_since_
  checkpoint` tells the owner when to checkpoint from a thread instead;
- **short work only**: single-row statements on indexed keys. Anything that scans goes
  through SQLAlchemy, off the loop.

Reads never wait in WAL mode. Durability is the pool's: WAL with `synchronous=NORMAL`
(a commit is in the WAL at once, synced at the next checkpoint).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from sqlalchemy.exc import DBAPIError, IntegrityError

T = TypeVar("T")

# What a unit of work gets: run one statement with named parameters, get its rows.
Execute = Callable[[str, Mapping[str, Any]], list[Any]]


class Busy(Exception):
    """Another connection holds the lock this work needs: nothing was done; run it
    where waiting is allowed."""


def _is_busy(error: sqlite3.Error) -> bool:
    code = getattr(error, "sqlite_errorcode", None)
    return code is not None and code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


class InlineSqlite:
    """One connection to a SQLite file, used only from the event loop's thread."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.commits_since_checkpoint = 0
        self._connection: sqlite3.Connection | None = None

    def _connect(self) -> sqlite3.Connection:
        if self._connection is None:
            # isolation_level=None: no implicit BEGIN, transactions are explicit below.
            connection = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            connection.execute("PRAGMA busy_timeout=0")
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=NORMAL")
            connection.execute("PRAGMA foreign_keys=ON")
            connection.execute("PRAGMA wal_autocheckpoint=0")
            self._connection = connection
        return self._connection

    def run(self, work: Callable[[Execute], T], *, write: bool) -> T:
        """`work` on this connection, in one `BEGIN IMMEDIATE` transaction when it
        writes (committed when it returns, rolled back when it raises). Raises `Busy`
        when the lock is held elsewhere (nothing done); SQLite's errors come out as
        SQLAlchemy's, as through the pool."""
        try:
            connection = self._connect()
            if not write:
                return work(_executor(connection))
            connection.execute("BEGIN IMMEDIATE")
            try:
                result = work(_executor(connection))
                connection.execute("COMMIT")
            except BaseException:
                connection.execute("ROLLBACK")
                raise
        except sqlite3.Error as error:
            if _is_busy(error):
                raise Busy(str(error)) from error
            wrapped = IntegrityError if isinstance(error, sqlite3.IntegrityError) else DBAPIError
            raise wrapped("inline SQLite work", None, error, hide_parameters=True) from error
        self.commits_since_checkpoint += 1
        return result

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


def _executor(connection: sqlite3.Connection) -> Execute:
    def execute(sql: str, params: Mapping[str, Any]) -> list[Any]:
        return connection.execute(sql, params).fetchall()

    return execute
