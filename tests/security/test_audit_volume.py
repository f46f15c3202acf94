"""Anonymous requests cannot make us write their bytes to disk (issue 11 §3).

A flood of tokenless requests with 64 KB paths, as in the issue, against every service
in one process (SQLite, and PostgreSQL): what lands in `audit_events` and in the log
lines (audit and access) is bounded per request and, past the first few refusals of a
source and reason in a minute, a count. Rows older than the retention are deleted by
the services themselves. `bench/audit_bench.py` measures the bytes.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import func, select

import agora.web.app
from agora.adapters.audit_database import AuditEvent, add_audit_events, purge_audit_events
from agora.core.audit import MAX_FIELD_CHARS, Audit
from agora.core.logs import JsonFormatter
from agora.db.engine import Database, utcnow
from tests.security.support import running_agora
from tests.support.waiting import eventually

FLOOD = 300
LONG_PATH = "/api/publications/" + "A" * 65_000
DETAIL = 10


@pytest.fixture
def log_bytes() -> Iterator[io.StringIO]:
    """Every audit and access line, as the JSON lines a deployment writes."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    loggers = [logging.getLogger(name) for name in ("agora.audit", "agora.access")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
    yield stream
    for logger, level in zip(loggers, levels, strict=True):
        logger.removeHandler(handler)
        logger.setLevel(level)


async def rejected_rows(db: Database) -> list[dict[str, Any]]:
    async with db.sessions() as session:
        rows = await session.scalars(
            select(AuditEvent.data)
            .where(AuditEvent.event == "auth.rejected")
            .order_by(AuditEvent.id)
        )
        return [orjson.loads(data) for data in rows.all()]


async def test_a_flood_of_anonymous_refusals_writes_a_bounded_amount(
    tmp_path: Path, database_url: str, log_bytes: io.StringIO
) -> None:
    async with running_agora(
        tmp_path, database_url=database_url, audit_refusal_detail_per_minute=DETAIL
    ) as agora:
        db = agora.publications.context.backends.database
        before = len(await rejected_rows(db))
        for _ in range(FLOOD):
            response = await agora.client.get(LONG_PATH)
            assert response.status_code == 401
        # Within the minute: the first DETAIL in full, the rest only counted so far.
        rows = (await rejected_rows(db))[before:]
        # The flood may straddle a minute (2 x DETAIL), and the first minute's count be
        # written meanwhile.
        assert len(rows) <= 2 * DETAIL + 1, len(rows)
    # Stopping writes the counts (a running service writes them once the minute is over).
    rows = (await rejected_rows(db))[before:]
    counted = [row for row in rows if row.get("aggregated")]
    detailed = [row for row in rows if not row.get("aggregated")]
    assert sum(row["count"] for row in counted) == FLOOD  # each count includes the detailed ones
    assert len(detailed) <= 2 * DETAIL and 1 <= len(counted) <= 2
    assert all(row["ip"] == "127.0.0.1" and row["reason"] for row in rows)
    for row in detailed:
        assert len(row["path"]) == MAX_FIELD_CHARS and row["path"].endswith("…")
    stored = sum(len(orjson.dumps(row)) for row in rows)
    assert stored < 20 * 1024, stored  # was 300 rows of 65 KB: 19.5 MB
    written = log_bytes.getvalue()
    assert "A" * (MAX_FIELD_CHARS + 1) not in written
    # One access line per request stays (bounded), audit lines only for the detailed few.
    assert len(written) < FLOOD * 1024, len(written)


async def test_the_counter_of_sources_is_bounded_in_memory() -> None:
    audit = Audit("test", refusal_detail=1)
    audit.refusals.max_buckets = 50
    for n in range(500):
        await audit.refusal("auth.rejected", ip=f"10.0.{n // 250}.{n % 250}", reason="missing")
    assert len(audit.refusals) == 51  # 50 sources, then one shared bucket "*"
    assert await audit.flush_refusals(everything=True) == 1  # only the "*" one went past 1


async def test_rows_past_the_retention_are_deleted(tmp_path: Path, database_url: str) -> None:
    async with running_agora(tmp_path, database_url=database_url) as agora:
        db = agora.auth.context.backends.database
        marker = f"retention-{tmp_path.name}"
        old = {"event": "test.retention", "service": "t", "marker": marker, "age": "old"}
        recent = {**old, "age": "recent"}
        async with db.transaction() as session:
            await add_audit_events(
                session,
                [{**old, "at": (utcnow() - timedelta(days=31)).isoformat()}, recent],
            )
        assert await purge_audit_events(db, timedelta(days=30)) >= 1
        async with db.sessions() as session:
            left = await session.scalars(
                select(AuditEvent.data).where(AuditEvent.event == "test.retention")
            )
            ages = [orjson.loads(data)["age"] for data in left if marker in data]
        assert ages == ["recent"]


async def test_every_service_purges_by_itself(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(agora.web.app, "AUDIT_PURGE_INTERVAL", 0.05)
    async with running_agora(tmp_path, audit_retention_days=1) as running:
        db = running.auth.context.backends.database
        async with db.transaction() as session:
            await add_audit_events(
                session,
                [{"event": "test.old", "service": "t",
                  "at": (utcnow() - timedelta(days=2)).isoformat()}],
            )  # fmt: skip

        async def purged() -> bool:
            async with db.sessions() as session:
                count = await session.scalar(
                    select(func.count()).where(AuditEvent.event == "test.old")
                )
            return count == 0

        await eventually(purged, timeout=10)
