"""Audit trail: every security decision becomes one structured event.

Events go to the `agora.core.audit` logger as one JSON line each, then to an optional sink:
every service app stores them in its database's `audit_events` table
(`agora.adapters.audit_database.database_sink`, wired in `web.app.build_service_app`). A failing
sink is logged and never fails the caller. A caller whose event belongs to a database
change can instead store the entry in that change's transaction
(`adapters.audit_database.add_audit_events`) and only `log` it here: the row then exists exactly
when the change does, at no extra transaction.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from agora.core.metrics import count_audit_event

AuditSink = Callable[[dict[str, Any]], Awaitable[None]]

_log = logging.getLogger("agora.audit")


class Audit:
    def __init__(self, service: str, sink: AuditSink | None = None) -> None:
        self.service = service
        self._sink = sink

    def entry(self, event: str, **fields: Any) -> dict[str, Any]:
        """The event as it is logged and stored (`record` does both)."""
        return {
            "event": event,
            "service": self.service,
            "at": datetime.now(UTC).isoformat(),
            **fields,
        }

    def log(self, entry: dict[str, Any]) -> None:
        """The JSON line only: for a caller that stores the entry itself, in its own
        transaction (`adapters.audit_database.add_audit_events`), as the event consumer does."""
        _log.info("audit", extra={"audit": entry})
        count_audit_event(entry)  # refusals and blocks, by reason (/metrics)

    async def record(self, event: str, **fields: Any) -> None:
        entry = self.entry(event, **fields)
        self.log(entry)
        if self._sink is not None:
            try:
                await self._sink(entry)
            except Exception:  # the log line above already holds the event
                _log.exception("audit sink failed", extra={"audit": entry})
