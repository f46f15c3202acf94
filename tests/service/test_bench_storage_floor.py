"""`bench.messaging_storage_floor`'s one statement still fits the migrated schema and keeps
its guarantees (the bench refuses a wrong end state: seq gaps, duplicates, a resend)."""

from __future__ import annotations

import asyncio
import secrets
from datetime import UTC, datetime

import asyncpg
import psycopg
import pytest
from bench import messaging_storage_floor as floor
from bench.messaging_setup import postgres_database
from bench.publications_bench import PG_DSN

from tests.support.services import service_unavailable


def postgres() -> None:
    try:
        with psycopg.connect(PG_DSN, connect_timeout=2):
            pass
    except psycopg.Error as error:
        service_unavailable("PostgreSQL", error)


async def sends(dsn: str) -> tuple[list[int], int, int]:
    connection = await asyncpg.connect(dsn)
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=1)
    try:
        conversation = secrets.token_hex(8)
        [author] = await floor.seed(pool, conversation, 1)
        seqs = []
        for client_id in ("a", "b", "a", "c"):  # "a" again: the stored seq, nothing new
            row = await connection.fetchrow(
                floor.SEND, conversation, author, client_id, secrets.token_hex(8), "hi",
                datetime.now(UTC),
            )  # fmt: skip
            seqs.append(row["seq"])
        last = await connection.fetchval(
            "SELECT last_seq FROM msg_conversations WHERE id = $1", conversation
        )
        cursor = await connection.fetchval(
            "SELECT read_seq FROM msg_members WHERE conversation_id = $1 AND user_id = $2",
            conversation, author,
        )  # fmt: skip
        return seqs, last, cursor
    finally:
        await pool.close()
        await connection.close()


@pytest.mark.postgres
def test_one_statement_advances_the_seq_dedupes_and_moves_the_cursor() -> None:
    postgres()
    with postgres_database() as url:
        dsn = url.replace("postgresql+asyncpg://", "postgresql://", 1)
        seqs, last, cursor = asyncio.run(sends(dsn))
    assert seqs == [1, 2, 1, 3]
    assert last == 3
    assert cursor == 3


@pytest.mark.postgres
def test_the_benchmark_runs_and_checks_its_end_state(monkeypatch: pytest.MonkeyPatch) -> None:
    postgres()
    monkeypatch.setenv("BENCH_CHARTS", "off")  # a 0.5 s run never replaces the docs' chart
    floor.main(["--seconds", "0.5", "--senders", "2"])
