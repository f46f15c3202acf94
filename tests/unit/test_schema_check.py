"""`schema_is_current`: a new database is not, a migrated one is, an older one is not."""

from __future__ import annotations

import asyncio
from pathlib import Path

from agora.db.engine import Database
from agora.db.migrate import (
    applied_revisions,
    downgrade,
    head_revisions,
    schema_is_current,
    upgrade,
)


async def test_the_schema_check_follows_the_migrations(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'schema.db'}"
    database = Database(url)
    try:
        assert await applied_revisions(database) == ()
        assert not await schema_is_current(database)
        await asyncio.to_thread(upgrade, url)  # Alembic runs its own loop
        assert await applied_revisions(database) == head_revisions()
        assert await schema_is_current(database)
        await asyncio.to_thread(downgrade, url, "-1")
        assert not await schema_is_current(database)
    finally:
        await database.close()
