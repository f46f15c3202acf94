"""The database checks made before a process serves: migrating when asked, and refusing
a schema older (or newer) than the code, in one line that says what to run.

Without this an unmigrated PostgreSQL database starts "fine" and answers 500 on the
first register, with `relation ... does not exist` in the log.
"""

from __future__ import annotations

import asyncio
import logging

from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from agora.db.engine import Database
from agora.db.migrate import applied_revisions, head_revisions, schema_is_current, upgrade

log = logging.getLogger("agora.startup")

# The errors of a database that cannot be reached or refuses us: refused or timed out
# connections and unknown hosts are OSError; authentication, a missing database and the
# like come wrapped by SQLAlchemy.
UNREACHABLE = (OSError, DBAPIError)
# A database that does not answer (a dropped packet, not a refusal) is given up on after
# this long here: the process starts, and readiness reports the database.
SCHEMA_CHECK_SECONDS = 10.0


class DatabaseRefused(Exception):
    """A one-line reason not to go on, with the exit status to use."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def where(url: str) -> str:
    """host:port/name of a database URL, without the credentials."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return f"sqlite {parsed.database}"
    return f"{parsed.host or 'localhost'}:{parsed.port or 5432}/{parsed.database or ''}"


def failure(error: BaseException) -> str:
    """The driver's own reason, on one line."""
    reason = error.orig if isinstance(error, DBAPIError) and error.orig else error
    text = str(reason).strip().splitlines()
    return text[0] if text else type(reason).__name__


def unreachable(url: str, error: BaseException) -> DatabaseRefused:
    return DatabaseRefused(f"cannot reach the database at {where(url)}: {failure(error)}", 1)


def migrate(url: str) -> None:
    """`agora db upgrade` / `agora serve --migrate`: to the code's revision."""
    try:
        upgrade(url)
    except UNREACHABLE as error:
        raise unreachable(url, error) from None


def require_current_schema(url: str) -> None:
    """Refuse to serve on a schema that is not the code's. A database that cannot be
    reached now is not refused here: it is a backend being down, not a mistake to fix
    before starting (readiness reports it, and the schema, once it answers)."""
    try:
        current, applied = asyncio.run(asyncio.wait_for(_read(url), SCHEMA_CHECK_SECONDS))
    except UNREACHABLE as error:  # TimeoutError included
        log.warning("schema not checked: %s", unreachable(url, error))
        return
    if current:
        return
    expected = ", ".join(head_revisions())
    at = ", ".join(applied) or "no schema"
    raise DatabaseRefused(
        f"the database at {where(url)} is not at this version's schema (it has {at}, "
        f"the code needs {expected}): run `agora db upgrade` first, "
        "or start with `agora serve --migrate`",
        2,
    )


async def _read(url: str) -> tuple[bool, tuple[str, ...]]:
    database = Database(url)
    try:
        return await schema_is_current(database), await applied_revisions(database)
    finally:
        await database.close()
