"""The outbox relay: publishes the auth service's `auth_outbox` rows to the bus.

Login and logout write their event into `auth_outbox` in their own transaction; this
background task (started in the auth app's lifespan) moves those rows to the broker:

- It claims up to `batch_size` unsent rows, oldest first, publishes them with their
  `event_id` as the AMQP `message_id`, up to `max_in_flight` at once (each publish
  waits for its broker confirm: one at a time capped the relay at a few hundred rows
  a second), and sets `published_at` on the confirmed ones in the transaction that
  claimed them. Rows of one batch may reach the broker in any order; consumers order
  each user's events by `seq`, not by arrival. On PostgreSQL the claim is `FOR UPDATE
  SKIP LOCKED`: several auth instances each take different rows and never publish one
  row twice at once. SQLite (embedded, one process) has one relay and no row locks.
- A failed publish (`PublishFailed`, or any error from the bus) adds 1 to the row's
  `attempts` and keeps the error in `last_error`; after it no new publish of the batch
  starts (the broker is likely gone), those in flight finish, the confirmed rows are
  still marked, and the relay waits an exponential backoff capped at `backoff_max`
  (`BACKOFF_MAX`, 5 s: events are at most that late after the broker returns, where a
  30 s cap made them 12 s late after a 120 s outage, issue 15 §9). Unconfirmed rows stay
  unsent and go out first when the broker is back: an outage delays events, never
  loses them.
- Delivery is at least once: if the process dies between the broker's confirm and the
  commit, the row is published again. Consumers dedupe on `event_id`/`message_id`.
- It wakes at once when the service sets `wake` (after each login/logout commit) and
  otherwise polls every `poll_interval` seconds, which also picks up rows written by
  other instances.
- Published rows are kept for `retention` (default 7 days: what was sent and when can
  be checked), then deleted by a small pruning step run every `prune_interval`, in
  chunks, so the table stays bounded.
- `stop()` lets the current batch finish (no new publish starts, those in flight end,
  what was confirmed is committed) for up to `stop_timeout` seconds, then cancels it; a
  cancelled batch rolls back and its rows are simply published again later.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import Protocol

from agora.core.background import running
from agora.core.metrics import OUTBOX_DEPTH
from agora.db.engine import Database, utcnow
from agora.services.auth.models import OutboxEvent
from agora.services.auth.repository import OutboxRepository

log = logging.getLogger("agora.outbox")

PRUNE_CHUNK = 1000


# A retry costs one connection attempt to the broker; waiting longer only delays
# the catch-up once it is back.
BACKOFF_MAX = 5.0


class Publisher(Protocol):
    """The one thing the relay needs of a `ports.bus.Bus`."""

    async def publish(self, routing_key: str, body: bytes, *, message_id: str) -> None: ...


@dataclass(frozen=True)
class BatchResult:
    published: int
    claimed: int
    error: str | None = None


class OutboxRelay:
    def __init__(
        self,
        db: Database,
        bus: Publisher,
        *,
        poll_interval: float = 1.0,
        batch_size: int = 100,
        max_in_flight: int = 32,
        wake: asyncio.Event | None = None,
        retention: timedelta = timedelta(days=7),
        prune_interval: float = 3600.0,
        backoff_base: float = 0.5,
        backoff_max: float = BACKOFF_MAX,
        stop_timeout: float = 5.0,
    ) -> None:
        self.db = db
        self.bus = bus
        self.poll_interval = poll_interval
        self.batch_size = batch_size
        self.max_in_flight = max_in_flight
        self.wake = wake or asyncio.Event()
        self.retention = retention
        self.prune_interval = prune_interval
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.stop_timeout = stop_timeout
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self._task is None:
            self._stopping.clear()
            self._task = asyncio.create_task(self._run(), name="outbox-relay")

    @property
    def alive(self) -> bool:
        return running(self._task)

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        self._stopping.set()
        try:
            await asyncio.wait_for(asyncio.shield(task), self.stop_timeout)
        except TimeoutError:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def publish_batch(self) -> BatchResult:
        """Claim, publish and mark one batch; the unit the loop repeats."""
        async with self.db.transaction() as session:
            outbox = OutboxRepository(session)
            rows = await outbox.claim_unsent(self.batch_size)
            confirmed, failed = await self._publish_rows(rows)
            for row_id, error in failed.items():
                await outbox.record_failure(row_id, error)
            await outbox.mark_published(confirmed, utcnow())
        return BatchResult(len(confirmed), len(rows), next(iter(failed.values()), None))

    async def _publish_rows(self, rows: list[OutboxEvent]) -> tuple[list[int], dict[int, str]]:
        """Publish concurrently, bounded; the ids confirmed, and the errors by row id."""
        slots = asyncio.Semaphore(self.max_in_flight)
        confirmed: list[int] = []
        failed: dict[int, str] = {}

        async def publish(row: OutboxEvent) -> None:
            async with slots:
                if failed or self._stopping.is_set():
                    return  # stays unsent: the next batch (or relay) takes it
                try:
                    await self.bus.publish(
                        row.routing_key, row.payload.encode(), message_id=row.event_id
                    )
                except Exception as exc:  # PublishFailed or a transport error: retry later
                    failed[row.id] = f"{type(exc).__name__}: {exc}"
                else:
                    confirmed.append(row.id)

        await asyncio.gather(*(publish(row) for row in rows))
        return confirmed, failed

    async def prune(self) -> int:
        """Delete rows published longer than `retention` ago; returns how many."""
        cutoff = utcnow() - self.retention
        total = 0
        while not self._stopping.is_set():
            async with self.db.transaction() as session:
                deleted = await OutboxRepository(session).prune_published_before(
                    cutoff, PRUNE_CHUNK
                )
            total += deleted
            if deleted < PRUNE_CHUNK:
                break
        return total

    async def _run(self) -> None:
        failures = 0
        next_prune = 0.0
        loop = asyncio.get_running_loop()
        while not self._stopping.is_set():
            # Cleared before the claim: a login committed during the batch sets it again
            # and the next pass picks its row up at once.
            self.wake.clear()
            try:
                result = await self.publish_batch()
                if loop.time() >= next_prune:
                    next_prune = loop.time() + self.prune_interval
                    if pruned := await self.prune():
                        log.info("pruned published outbox rows", extra={"rows": pruned})
            except Exception as exc:  # database unreachable: keep the task alive
                log.exception("outbox relay pass failed")
                result = BatchResult(0, 0, repr(exc))
            if result.error is not None or result.claimed < self.batch_size:
                await self._measure_depth()  # on each poll, and while the broker is away
            if result.error is not None:
                failures += 1
                delay = min(self.backoff_max, self.backoff_base * 2 ** (failures - 1))
                log.warning(
                    "outbox publish failed; retrying",
                    extra={"error": result.error, "retry_in": delay, "failures": failures},
                )
                await self._sleep(delay, wakeable=False)
                continue
            failures = 0
            if result.claimed >= self.batch_size:
                continue  # more rows are waiting
            await self._sleep(self.poll_interval, wakeable=True)

    async def _measure_depth(self) -> None:
        try:
            async with self.db.transaction() as session:
                OUTBOX_DEPTH.set(await OutboxRepository(session).count_unsent())
        except Exception:  # the database is away: the pass above already said so
            log.debug("outbox depth not measured", exc_info=True)

    async def _sleep(self, seconds: float, *, wakeable: bool) -> None:
        """Wait `seconds`, or less if stopping (or, when wakeable, if woken)."""
        waits = [asyncio.ensure_future(self._stopping.wait())]
        if wakeable:
            waits.append(asyncio.ensure_future(self.wake.wait()))
        try:
            await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waits:
                waiter.cancel()
