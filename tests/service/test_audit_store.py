"""Audit events are stored in `audit_events`, and storing never breaks the caller."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import select

from agora.adapters.audit_database import (
    AuditEvent,
    add_audit_events,
    database_sink,
    store_audit_event,
)
from agora.core.audit import Audit
from agora.db.engine import Database, utcnow
from tests.support.users import register_and_login, unique_login


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    database = Database(database_url)
    yield database
    await database.close()


async def stored_since(db: Database, event: str, since: datetime) -> list[dict[str, Any]]:
    async with db.sessions() as session:
        rows = await session.execute(
            select(AuditEvent)
            .where(AuditEvent.event == event, AuditEvent.at >= since)
            .order_by(AuditEvent.id)
        )
        return [{**orjson.loads(r.data), "_user_id": r.user_id} for r in rows.scalars()]


async def test_failed_login_is_stored(embedded: httpx.AsyncClient, db: Database) -> None:
    since = utcnow()
    login = unique_login("nobody")
    response = await embedded.post("/auth/api/login", json={"login": login, "password": "x"})
    assert response.status_code == 401
    [entry] = [e for e in await stored_since(db, "auth.login_failed", since) if e["login"] == login]
    assert entry["service"] == "auth" and entry["event"] == "auth.login_failed"
    assert "password" not in entry


async def test_rejected_token_is_stored(embedded: httpx.AsyncClient, db: Database) -> None:
    since = utcnow()
    response = await embedded.get("/auth/api/me", headers={"Authorization": "Bearer not.a.jwt"})
    assert response.status_code == 401
    [entry] = await stored_since(db, "auth.rejected", since)
    assert entry["status"] == 401 and entry["path"] == "/auth/api/me"
    assert entry["reason"] and entry["service"] == "auth"


async def test_login_event_is_indexed_by_user(embedded: httpx.AsyncClient, db: Database) -> None:
    since = utcnow()
    user, _ = await register_and_login(embedded)
    [entry] = [
        e for e in await stored_since(db, "auth.login", since) if e["login"] == user["login"]
    ]
    assert entry["_user_id"] == user["id"] and entry["jti"]


async def test_values_json_has_no_type_for_are_kept_as_text(db: Database) -> None:
    at = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    marker = unique_login("odd")
    await store_audit_event(
        db,
        {
            "event": "test.odd",
            "service": "test",
            "at": at.isoformat(),
            "when": at,
            "file": Path("/srv/keys"),
            "marker": marker,
            "user_id": 42,
        },
    )
    [entry] = [e for e in await stored_since(db, "test.odd", at) if e["marker"] == marker]
    assert entry["when"] == at.isoformat() and entry["file"] == "/srv/keys"
    assert entry["_user_id"] == "42"


async def test_a_failing_store_never_fails_the_caller(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A database without the table: every insert fails.
    broken = Database(f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}")
    try:
        audit = Audit("test", sink=database_sink(broken))
        with caplog.at_level(logging.ERROR, logger="agora.audit"):
            await audit.record("auth.rejected", status=401)
    finally:
        await broken.close()
    assert any(r.message == "audit sink failed" for r in caplog.records)


async def test_entries_added_in_a_transaction_share_its_fate(db: Database) -> None:
    audit = Audit("test")
    since = utcnow()
    kept, dropped = unique_login("kept"), unique_login("dropped")

    async def failed_change() -> None:
        async with db.transaction() as session:
            await add_audit_events(session, [audit.entry("test.tx", marker=dropped)])
            raise RuntimeError("the change failed")

    with pytest.raises(RuntimeError, match="the change failed"):
        await failed_change()
    async with db.transaction() as session:
        entries = [audit.entry("test.tx", marker=kept, user_id=n) for n in range(3)]
        await add_audit_events(session, entries)
    stored = await stored_since(db, "test.tx", since)
    assert [e["marker"] for e in stored if e["marker"] in (kept, dropped)] == [kept] * 3
    assert [e["_user_id"] for e in stored if e["marker"] == kept] == ["0", "1", "2"]
    assert all(e["service"] == "test" for e in stored)
