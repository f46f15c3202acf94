"""Alembic migrations run programmatically (`agora db upgrade`, tests), and the check
that a database is at the revision this code expects (startup, readiness)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection

from agora.db.engine import Database

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    """Blocking; call from a thread when an event loop is running."""
    command.upgrade(alembic_config(database_url), revision)


def downgrade(database_url: str, revision: str) -> None:
    command.downgrade(alembic_config(database_url), revision)


def head_revisions() -> tuple[str, ...]:
    """The revisions the code expects (`alembic heads`)."""
    return tuple(ScriptDirectory.from_config(alembic_config("sqlite://")).get_heads())


async def applied_revisions(database: Database) -> tuple[str, ...]:
    """The revisions the database is at (empty for a database never migrated)."""

    def read(connection: Connection) -> tuple[str, ...]:
        return tuple(MigrationContext.configure(connection).get_current_heads())

    async with database.engine.connect() as connection:
        return await connection.run_sync(read)


async def schema_is_current(database: Database) -> bool:
    """Whether the database is migrated to exactly what this code expects; raises the
    driver's error when the database cannot be reached."""
    return set(await applied_revisions(database)) == set(head_revisions())
