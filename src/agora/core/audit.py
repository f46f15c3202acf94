"""Audit trail: every security decision becomes one structured event.

Events go to the `agora.core.audit` logger as one JSON line each, then to an optional sink:
every service app stores them in its database's `audit_events` table
(`agora.adapters.audit_database.database_sink`, wired in `web.app.build_service_app`). A failing
sink is logged and never fails the caller. A caller whose event belongs to a database
change can instead store the entry in that change's transaction
(`adapters.audit_database.add_audit_events`) and only `log` it here: the row then exists exactly
when the change does, at no extra transaction.

What one request can make us write is bounded (issue 11 §3), so an attacker's bytes
never reach the disk at their own size:
- every string in an entry is cut to `MAX_FIELD_CHARS` (and lists to `MAX_LIST_ITEMS`);
- refusals of requests with no valid identity (`refusal`, the 401s) are counted per
  (event, source, reason, minute): the first `detail` of a bucket
  (`AGORA_AUDIT_REFUSAL_DETAIL_PER_MINUTE`, 10) are written as usual, the rest only
  counted, and once the minute is over one entry says how many there were in all
  (`count`, `aggregated: true`; `flush_refusals`, run periodically by the service).
  Past `MAX_REFUSAL_BUCKETS` sources in a minute, the rest share one bucket
  (`ip: "*"`), so the counter's memory is bounded too.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from agora.core.metrics import count_audit_event

AuditSink = Callable[[dict[str, Any]], Awaitable[None]]

_log = logging.getLogger("agora.audit")

MAX_FIELD_CHARS = 256
MAX_LIST_ITEMS = 32
MAX_REFUSAL_BUCKETS = 10_000
REFUSAL_DETAIL = 10
OVERFLOW_SOURCE = "*"
TRUNCATED = "…"


def bounded(value: Any, limit: int = MAX_FIELD_CHARS) -> Any:
    """`value` with every string cut to `limit` characters (marked with `…`), every list
    to `MAX_LIST_ITEMS` items; one level of nesting is enough for our entries."""
    if isinstance(value, str):
        return value if len(value) <= limit else value[: limit - 1] + TRUNCATED
    if isinstance(value, list | tuple):
        return [bounded(item, limit) for item in value[:MAX_LIST_ITEMS]]
    if isinstance(value, dict):
        return {bounded(str(k), 64): bounded(v, limit) for k, v in value.items()}
    return value


def minute_of(moment: datetime) -> datetime:
    return moment.replace(second=0, microsecond=0)


@dataclass
class _Bucket:
    count: int = 0


class RefusalCounter:
    """Anonymous refusals per (event, source, reason, minute): memory bounded by
    `max_buckets` (the overflow shares one bucket per event, reason and minute)."""

    def __init__(
        self, detail: int = REFUSAL_DETAIL, max_buckets: int = MAX_REFUSAL_BUCKETS
    ) -> None:
        self.detail = detail
        self.max_buckets = max_buckets
        self._buckets: dict[tuple[str, str, str, datetime], _Bucket] = {}

    def __len__(self) -> int:
        return len(self._buckets)

    def add(self, event: str, source: str | None, reason: str, at: datetime) -> bool:
        """Counts one refusal; True if it is among the first `detail` of its bucket (to be
        written in full)."""
        key = (event, source or "", reason, minute_of(at))
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self.max_buckets:
                key = (event, OVERFLOW_SOURCE, reason, key[3])
                bucket = self._buckets.setdefault(key, _Bucket())
            else:
                bucket = self._buckets[key] = _Bucket()
        bucket.count += 1
        return bucket.count <= self.detail

    def take(self, before: datetime | None) -> list[tuple[str, str, str, datetime, int]]:
        """The buckets of minutes that started before `before` (all of them if None),
        removed from the counter, with their counts: only those that went past `detail`
        (the others were written in full)."""
        done = [key for key in self._buckets if before is None or key[3] < minute_of(before)]
        counts = [(*key, self._buckets.pop(key).count) for key in done]
        return [bucket for bucket in counts if bucket[4] > self.detail]


class Audit:
    def __init__(
        self, service: str, sink: AuditSink | None = None, refusal_detail: int = REFUSAL_DETAIL
    ) -> None:
        self.service = service
        self._sink = sink
        self.refusals = RefusalCounter(refusal_detail)

    def entry(self, event: str, **fields: Any) -> dict[str, Any]:
        """The event as it is logged and stored (`record` does both), every field bounded."""
        return {
            "event": event,
            "service": self.service,
            "at": datetime.now(UTC).isoformat(),
            **{name: bounded(value) for name, value in fields.items()},
        }

    def log(self, entry: dict[str, Any]) -> None:
        """The JSON line only: for a caller that stores the entry itself, in its own
        transaction (`adapters.audit_database.add_audit_events`), as the event consumer does."""
        _log.info("audit", extra={"audit": entry})
        count_audit_event(entry)  # refusals and blocks, by reason (/metrics)

    async def record(self, event: str, **fields: Any) -> None:
        entry = self.entry(event, **fields)
        self.log(entry)
        await self._store(entry)

    async def _store(self, entry: dict[str, Any]) -> None:
        if self._sink is not None:
            try:
                await self._sink(entry)
            except Exception:  # the log line already holds the event
                _log.exception("audit sink failed", extra={"audit": entry})

    async def refusal(self, event: str, *, ip: str | None, reason: str, **fields: Any) -> None:
        """A refused request with no valid identity: counted in /metrics at once, written
        in full while its (source, reason, minute) bucket is under `detail`, then only
        counted (`flush_refusals` writes the count)."""
        if self.refusals.add(event, ip, reason, datetime.now(UTC)):
            await self.record(event, reason=reason, ip=ip, **fields)
        else:
            count_audit_event({"event": event, "service": self.service, "reason": reason})

    async def flush_refusals(self, everything: bool = False) -> int:
        """Writes one entry per bucket of a finished minute (of every minute with
        `everything`, at shutdown) that went past `detail`; returns how many."""
        taken = self.refusals.take(None if everything else datetime.now(UTC))
        for event, source, reason, minute, count in taken:
            entry = self.entry(
                event, reason=reason, ip=source or None, minute=minute.isoformat(),
                count=count, aggregated=True,
            )  # fmt: skip
            _log.info("audit", extra={"audit": entry})  # counted in /metrics as they came
            await self._store(entry)
        return len(taken)
