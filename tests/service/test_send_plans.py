"""The send's lookups on PostgreSQL stay one probe of the unique index on a fresh table.

asyncpg prepares each statement once per connection, and after a few runs PostgreSQL
keeps a generic plan for it, made with the statistics of that moment. On a table that
has none yet (a new database: the first minutes of a deployment, every benchmark run),
the unique (conversation, author, client id) index and the (conversation, version)
index cost the same, and several ways of writing "the earlier message of these client
ids" were planned on the latter: a scan of the whole conversation per send, kept after
the table had grown (docs/benchmarks.md, "sixth round"). Here the tables are empty
copies, never analyzed, shadowing the real ones (`pg_temp` comes first on the search
path), and the plan PostgreSQL keeps is read with `force_generic_plan`.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import asyncpg
import pytest

from agora.services.messaging.repository_send import STORE_MANY_PG, STORE_PG, check_pg

pytestmark = pytest.mark.postgres


@pytest.fixture
async def fresh_tables(postgres_url: str) -> AsyncIterator[asyncpg.Connection]:
    dsn = postgres_url.replace("postgresql+asyncpg://", "postgresql://")
    generic = {"plan_cache_mode": "force_generic_plan"}  # the plan kept after a few runs
    connection = await asyncpg.connect(dsn, server_settings=generic)
    try:
        for table in ("msg_conversations", "msg_members", "msg_messages"):
            await connection.execute(
                f"CREATE TEMP TABLE {table} (LIKE public.{table} INCLUDING ALL)"
            )
        yield connection
    finally:
        await connection.close()


async def generic_plan(connection: asyncpg.Connection, sql: str, *args: str) -> list[str]:
    statement = await connection.prepare(sql)
    placeholders = ", ".join(f"'{arg}'" for arg in args)
    rows = await connection.fetch(f"EXPLAIN EXECUTE {statement.get_name()}({placeholders})")
    return [row[0] for row in rows]


def lookups_of_messages(plan: list[str]) -> list[str]:
    """The index condition of each scan of msg_messages (a scan without one: "none")."""
    found = []
    for n, line in enumerate(plan):
        if re.search(r"Scan .*on msg_messages", line):
            following = plan[n + 1] if n + 1 < len(plan) else ""
            found.append(following.strip() if "Index Cond" in following else f"none: {line}")
    return found


@pytest.mark.parametrize("count", [1, 2, 16])
async def test_checks_probe_the_unique_index(fresh_tables: asyncpg.Connection, count: int) -> None:
    client_ids = [f"k{n}" for n in range(count)]
    plan = await generic_plan(fresh_tables, check_pg(count), "c", "u", *client_ids)
    lookups = lookups_of_messages(plan)
    assert len(lookups) == count, plan
    for lookup in lookups:  # conversation, author and client id: one entry of the index
        assert "conversation_id" in lookup and "author_id" in lookup, plan
        assert "client_id" in lookup, plan


async def test_stores_read_no_message(fresh_tables: asyncpg.Connection) -> None:
    """The stores insert; the unique index judges a resent client id (no lookup)."""
    one = await generic_plan(
        fresh_tables, STORE_PG, "c", "u", "k", "id", "text", "hi", "m", "2026-01-01"
    )
    many = await generic_plan(
        fresh_tables, STORE_MANY_PG, "c", "u", "{k}", "{id}", "{text}", "{hi}", "{m}",
        "{2026-01-01}",
    )  # fmt: skip
    assert lookups_of_messages(one) == [] and lookups_of_messages(many) == []
