"""Who is active: events in, activity, idle sweeping; the database decides, the cache follows.

Two rules keep `user:<id>` from claiming "connected" for a user the database has
disconnected:

- Every cache write happens after the commit that decided it. A disconnect deletes
  the key after its commit; a "connected" write (event, refill, activity) re-reads the
  row after setting the key and deletes the key if the row is no longer connected.
  Whatever the interleaving, either the re-read sees the disconnect, or the disconnect's
  delete comes after the set: no stale key survives. Events come in batches (see
  `consumer`): one transaction per batch, then one cache round trip for all of the
  batch's connected users and one re-read of all of them, the same rule in bulk.
- A cache that cannot be reached is skipped, never fatal (see `status.cache`): reads
  fall back to the database, and the activity write below (at most once per
  `activity_write_interval`) re-checks the row, so a key left behind by a failed delete
  is dropped at the user's next write.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from agora.adapters.audit_database import add_audit_events
from agora.core.audit import Audit
from agora.db.engine import Database, utcnow
from agora.services.publications.repository import (
    UserEvent,
    UserStatus,
    UserStatusRepository,
)
from agora.services.publications.status.cache import CachedUser, UserStatusCache

log = logging.getLogger("agora.publications.status")

# A redelivery comes within minutes; after this long an event id is forgotten.
PROCESSED_EVENT_RETENTION = timedelta(days=7)


class UserStatusService:
    def __init__(
        self,
        db: Database,
        cache: UserStatusCache,
        audit: Audit,
        *,
        idle_timeout: float,
        activity_write_interval: float,
    ) -> None:
        self.db = db
        self.cache = cache
        self.audit = audit
        self.idle_timeout = timedelta(seconds=idle_timeout)
        self.activity_write_interval = timedelta(seconds=activity_write_interval)

    # --- events --------------------------------------------------------------------

    async def apply_events(self, events: Sequence[UserEvent]) -> list[bool]:
        """Apply events in arrival order, in ONE transaction; item i says whether event i
        changed anything (False: a redelivery, or older than what is stored).

        In the transaction: the dedup keys (one statement; a key twice in the batch
        counts once, for its first arrival), the upserts (see `repository.apply`) and
        the audit rows of the applied events. After the commit, and only then: the
        audit log lines and the cache writes for each touched user's final state. An
        exception means nothing was committed (the caller retries the events).
        """
        now = utcnow()
        entries: list[dict[str, Any]] = []
        async with self.db.transaction() as session:
            repository = UserStatusRepository(session)
            new_keys = await repository.mark_processed(
                {event.dedup_key for event in events if event.dedup_key is not None}, now
            )
            fresh = [_first_arrival(event, new_keys) for event in events]
            to_apply = [event for event, f in zip(events, fresh, strict=True) if f]
            rows = iter(await repository.apply(to_apply, now))
            results = [next(rows) if is_fresh else None for is_fresh in fresh]
            applied: dict[str, UserStatus] = {}  # each user's final state
            for event, is_fresh, row in zip(events, fresh, results, strict=True):
                if row is not None:
                    applied[event.user_id] = row
                    entries.append(
                        self.audit.entry(
                            f"user.{event.kind}_applied",
                            user_id=event.user_id,
                            event_id=event.dedup_key,
                        )
                    )
                elif is_fresh:
                    log.info("older event for user %s ignored", event.user_id)
                else:
                    log.info("duplicate event %s for user %s", event.dedup_key, event.user_id)
            await add_audit_events(session, entries)
            # A redelivery may follow a crash between an earlier commit and its cache
            # write: its user's cache is made to agree with the database again.
            repeated = {e.user_id for e, f in zip(events, fresh, strict=True) if not f}
            resync = await repository.get_many(repeated - applied.keys())
        for entry in entries:
            self.audit.log(entry)
        await self._publish(*applied.values(), *resync)
        return [row is not None for row in results]

    async def _publish(self, *statuses: UserStatus) -> None:
        """Make each `user:<id>` say what the committed status says (see the module rules):
        one cache round trip for the connected, one for the rest, and one re-read."""
        connected = [status for status in statuses if status.connected]
        gone = [status.user_id for status in statuses if not status.connected]
        if gone:
            await self.cache.drop(*gone)
        if not connected:
            return
        stored = await self.cache.put_connected_many(
            [(s.user_id, s.name, s.email, s.last_activity_at) for s in connected]
        )
        if not stored:
            return
        async with self.db.sessions() as session:
            still = await UserStatusRepository(session).connected_among(
                [status.user_id for status in connected]
            )
        stale = [status.user_id for status in connected if status.user_id not in still]
        if stale:
            await self.cache.drop(*stale)

    # --- requests ------------------------------------------------------------------

    async def check_active(self, user_id: str, issued_at: float | None = None) -> bool:
        """Is the user connected? Counts the request as activity if so.

        The cache answers first; on a miss (or a cache down) the database does, and a
        connected row refills the cache. The TTL is pushed back on every request (in the
        same round trip as the read); `last_activity_at` is written at most once per
        `activity_write_interval`, judged by the time the cache entry (or the row)
        carries, so the throttle holds across every instance without any local state.

        `issued_at` is the token's `iat`: a token issued after the user's last recorded
        disconnect (or with none recorded) comes from a login whose `connected` event
        may still be on its way, so it is let in (see `issued_after_disconnect`).
        """
        cached = await self.cache.get_connected(user_id)
        return await self.check_active_given(user_id, cached, issued_at)

    async def check_active_given(
        self, user_id: str, cached: CachedUser | None, issued_at: float | None = None
    ) -> bool:
        """`check_active` with `user:<id>` already read (and touched) by the caller, in
        one round trip with other keys: `cache.parse` of the raw value."""
        now = utcnow()
        if cached is not None:
            if not self._activity_due(cached.last_activity_at, now):
                return True
            return await self._record_activity(user_id, now)
        async with self.db.sessions() as session:
            status = await UserStatusRepository(session).get(user_id)
        if status is None or not status.connected:
            return issued_after_disconnect(status, issued_at)
        if self._activity_due(status.last_activity_at, now):
            return await self._record_activity(user_id, now)
        await self._publish(status)
        return True

    def _activity_due(self, last: datetime | None, now: datetime) -> bool:
        return last is None or now - last >= self.activity_write_interval

    async def _record_activity(self, user_id: str, now: datetime) -> bool:
        async with self.db.transaction() as session:
            status = await UserStatusRepository(session).record_activity(user_id, now)
        if status is None:  # disconnected meanwhile: whatever the cache said, it is gone
            await self.cache.drop(user_id)
            return False
        await self._publish(status)
        return True

    # --- idle sweeping ---------------------------------------------------------------

    async def sweep_idle(self) -> list[str]:
        """Disconnect users idle longer than `idle_timeout`; returns their ids."""
        now = utcnow()
        async with self.db.transaction() as session:
            repository = UserStatusRepository(session)
            swept = await repository.disconnect_idle(now - self.idle_timeout, now)
            pruned = await repository.prune_processed(now - PROCESSED_EVENT_RETENTION)
        if pruned:
            log.info("forgot %d processed event ids", pruned)
        if not swept:
            return []
        await self.cache.drop(*(user_id for user_id, _ in swept))
        for user_id, last_activity_at in swept:
            await self.audit.record(
                "user.idle_disconnected",
                user_id=user_id,
                last_activity_at=last_activity_at.isoformat() if last_activity_at else None,
            )
        return [user_id for user_id, _ in swept]


def issued_after_disconnect(status: UserStatus | None, issued_at: float | None) -> bool:
    """Does a token issued at `issued_at` belong to a session newer than the user's last
    disconnect? Login writes its `connected` event in the transaction that precedes the
    token, so such a token means the event is on its way; answering "connected" now
    saves the client a 403 in the ~100 ms the event takes. Nothing is written: the event
    makes the row connected when it arrives (and is applied as any other). Logged out or
    swept idle users hold only tokens issued before the disconnect: still refused.

    `iat` has whole seconds and the disconnect time more: a login in the very second
    of a disconnect waits for its event, never the reverse. The disconnect time is
    when it was recorded here (later than it happened): on the safe side too.
    """
    if issued_at is None:
        return False
    if status is None:
        return True  # no event ever applied: never disconnected
    return issued_at > status.updated_at.timestamp()


def _first_arrival(event: UserEvent, new_keys: set[str]) -> bool:
    """Fresh if never applied before and the first of its key in the batch (the key is
    taken out of `new_keys` so a second copy in the same batch counts as a duplicate)."""
    if event.dedup_key is None:
        return True  # nothing to dedupe on; a status is a state, safe to apply twice
    if event.dedup_key in new_keys:
        new_keys.discard(event.dedup_key)
        return True
    return False
