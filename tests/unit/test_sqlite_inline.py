"""`Database.run_sqlite` (agora/db/sqlite_inline.py): short SQLite work on the loop's own
thread, and never a wait there: a held lock sends the work to a pooled connection, a
failing unit leaves nothing behind, and the WAL is still checkpointed."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy.exc import IntegrityError

from agora.db import engine
from agora.db.engine import Database
from agora.db.sqlite_inline import Execute

pytestmark = pytest.mark.asyncio


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'inline.db'}")
    async with database.connection_transaction() as connection:
        await connection.exec_driver_sql("CREATE TABLE t (k TEXT PRIMARY KEY, v TEXT)")
    yield database
    await database.close()


INLINE, POOLED = 0, 5000  # busy_timeout of the connection the work ran on


def insert(k: str, v: str = "x"):  # type: ignore[no-untyped-def]
    """Inserts one row; answers the busy_timeout of the connection it ran on."""

    def work(execute: Execute) -> int:
        execute("INSERT INTO t (k, v) VALUES (:k, :v)", {"k": k, "v": v})
        return int(execute("PRAGMA busy_timeout", {})[0][0])

    return work


def count(execute: Execute) -> int:
    return int(execute("SELECT count(*) FROM t", {})[0][0])


async def test_work_runs_on_the_loops_thread_and_is_committed(db: Database) -> None:
    assert await db.run_sqlite(insert("a"), write=True) == INLINE
    async with db.single_read() as connection:  # another connection sees it
        assert (await connection.exec_driver_sql("SELECT v FROM t")).scalar() == "x"


async def test_a_held_write_lock_never_blocks_the_loop(db: Database, tmp_path: Path) -> None:
    """Another process's writer holds the lock for 0.6 s: the write waits for it on a
    pooled connection while the loop keeps running, then commits."""
    holder = sqlite3.connect(tmp_path / "inline.db", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    holder.execute("INSERT INTO t (k, v) VALUES ('held', 'x')")
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    ticker = asyncio.create_task(tick())
    loop = asyncio.get_running_loop()
    loop.call_later(0.6, holder.execute, "COMMIT")
    started = time.monotonic()
    ran_on = await db.run_sqlite(insert("b"), write=True)
    waited = time.monotonic() - started
    ticker.cancel()
    holder.close()
    assert ran_on == POOLED
    assert waited >= 0.5
    assert ticks >= 20  # the loop ran all along (a blocked loop ticks once)
    assert await db.run_sqlite(count, write=False) == 2


async def test_a_failing_unit_is_rolled_back_whole(db: Database) -> None:
    await db.run_sqlite(insert("a"), write=True)

    def two_then_a_duplicate(execute: Execute) -> None:
        execute("INSERT INTO t (k, v) VALUES ('b', 'x')", {})
        execute("INSERT INTO t (k, v) VALUES ('a', 'again')", {})

    with pytest.raises(IntegrityError):  # SQLAlchemy's class, as through the pool
        await db.run_sqlite(two_then_a_duplicate, write=True)

    def fails_after_a_write(execute: Execute) -> None:
        execute("INSERT INTO t (k, v) VALUES ('c', 'x')", {})
        raise RuntimeError("a bug after the first statement")

    with pytest.raises(RuntimeError):
        await db.run_sqlite(fails_after_a_write, write=True)
    assert await db.run_sqlite(count, write=False) == 1  # 'a' only
    await db.run_sqlite(insert("d"), write=True)  # the connection is usable again
    assert await db.run_sqlite(count, write=False) == 2


async def test_the_wal_is_checkpointed_off_the_loop(
    db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The inline connection never checkpoints; every CHECKPOINT_EVERY commits a pooled
    connection does, so the WAL file stops growing (without it: ~4 KB per commit)."""
    monkeypatch.setattr(engine, "CHECKPOINT_EVERY", 50)
    wal = tmp_path / "inline.db-wal"
    for i in range(1500):
        await db.run_sqlite(insert(f"k{i}", "v" * 500), write=True)
        if i % 50 == 0:
            await asyncio.sleep(0.02)  # lets the checkpoint run
    assert os.path.getsize(wal) < 1_500_000, os.path.getsize(wal)
    assert await db.run_sqlite(count, write=False) == 1500


async def test_an_in_memory_database_runs_the_work_on_the_pool() -> None:
    database = Database("sqlite+aiosqlite://")
    try:
        async with database.connection_transaction() as connection:
            await connection.exec_driver_sql("CREATE TABLE t (k TEXT PRIMARY KEY, v TEXT)")
        assert await database.run_sqlite(insert("a"), write=True) == POOLED
        assert await database.run_sqlite(count, write=False) == 1
    finally:
        await database.close()
