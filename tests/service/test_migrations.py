"""Migrations and models agree, and every migration can be undone, on both databases."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection

from agora.db.engine import create_engine
from agora.db.migrate import downgrade, upgrade
from agora.runtime.metadata import metadata
from tests.support.databases import empty_postgres_database


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def empty_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database with no tables at all: a throwaway one on PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'migrations.db'}"
        return
    with empty_postgres_database("migrations") as url:
        yield url


async def _run(url: str, work: Any) -> Any:
    engine = create_engine(url)
    try:
        async with engine.begin() as connection:
            return await connection.run_sync(work)
    finally:
        await engine.dispose()


def _differences(connection: Connection) -> list[Any]:
    return list(compare_metadata(MigrationContext.configure(connection), metadata))


def _tables(connection: Connection) -> set[str]:
    return set(inspect(connection).get_table_names()) - {"alembic_version"}


def _indexes(connection: Connection, table: str) -> set[str]:
    return {str(index["name"]) for index in inspect(connection).get_indexes(table)}


async def _in_thread(fn: Any, *args: str) -> None:
    # Alembic's env.py runs its own event loop: keep it off this one.
    await asyncio.to_thread(fn, *args)


async def test_head_matches_the_models(empty_database_url: str) -> None:
    await _in_thread(upgrade, empty_database_url)
    assert await _run(empty_database_url, _differences) == []
    assert {"auth_users", "auth_outbox", "audit_events"} <= await _run(empty_database_url, _tables)
    outbox_indexes = await _run(empty_database_url, lambda c: _indexes(c, "auth_outbox"))
    assert "ix_auth_outbox_unpublished" in outbox_indexes


async def test_downgrade_to_base_and_back(empty_database_url: str) -> None:
    await _in_thread(upgrade, empty_database_url)
    await _in_thread(downgrade, empty_database_url, "base")
    assert await _run(empty_database_url, _tables) == set()
    await _in_thread(upgrade, empty_database_url)
    assert await _run(empty_database_url, _differences) == []


async def test_0002_keeps_existing_users_with_seq_zero(empty_database_url: str) -> None:
    await _in_thread(upgrade, empty_database_url, "0001")

    def add_user(connection: Connection) -> None:
        connection.execute(
            text(
                "INSERT INTO auth_users (login, login_key, email, email_key, name,"
                " password_hash, created_at) VALUES ('old', 'old', 'o@x.io', 'o@x.io', 'Old',"
                " 'h', CURRENT_TIMESTAMP)"
            )
        )

    await _run(empty_database_url, add_user)
    await _in_thread(upgrade, empty_database_url)
    rows = await _run(
        empty_database_url,
        lambda c: c.execute(text("SELECT login, event_seq FROM auth_users")).all(),
    )
    assert [tuple(row) for row in rows] == [("old", 0)]
    await _in_thread(downgrade, empty_database_url, "0001")
    logins = await _run(
        empty_database_url, lambda c: c.execute(text("SELECT login FROM auth_users")).all()
    )
    assert [tuple(row) for row in logins] == [("old",)]
