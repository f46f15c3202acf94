"""The `user.events` consumer: bus deliveries in, `UserStatusService.apply_events` calls out.

Accepts docs/contracts.md's bare body from any publisher
(`{"event": "connected", "user_id": "12345", "name": ..., "email": ...}`) and the auth
service's extra `event_id`, `occurred_at` and `seq`. A message that can never be
applied raises `PoisonMessage` with the reason (the bus dead-letters it; the queue
keeps flowing); a database error propagates (the bus requeues, it is redelivered).

Throughput comes from micro-batching: the bus runs up to `prefetch` handlers at once,
each parses its delivery and hands the event to a `MicroBatcher`, which applies up to
`batch_size` of them in one transaction (see `status.apply_events`) and answers each
handler only after the commit and the cache write. So a batch can only hold what the
prefetch lets in, and while one batch is applied the next one gathers from the same
window: keep `amqp_prefetch` at about twice `batch_size` (512 for 256, the defaults;
at 200, batches averaged ~90 events).

When a batch's transaction fails, its events are tried again one by one, each in a
transaction of its own, so one event the database refuses cannot hold back the others:
they are acked, it alone is requeued (or dead-lettered, if the database said its data
is invalid: that will not change on a retry). A lost connection is not the events'
fault: then every event of the batch is requeued at once instead.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy.exc import DBAPIError, InterfaceError

from agora.core.metrics import CONSUMER_LAG
from agora.ports.bus import Delivery, PoisonMessage
from agora.services.publications.models import CONNECTED, DISCONNECTED
from agora.services.publications.repository import UserEvent
from agora.services.publications.status.batcher import MicroBatcher
from agora.services.publications.status.service import UserStatusService

log = logging.getLogger("agora.publications.consumer")

EVENTS = frozenset({CONNECTED, DISCONNECTED})
# Ends up in the cache key `user:<id>`: printable, no spaces, bounded.
USER_ID = re.compile(r"[A-Za-z0-9_.:@-]{1,64}")
MAX_NAME = 200
MAX_EMAIL = 320
MAX_EVENT_ID = 128
# Enough to fill a batch under load; a trickle waits at most BATCH_WAIT seconds.
BATCH_SIZE = 256
BATCH_WAIT = 0.005
# A batch statement binds ~9 values per event: this stays far below the databases'
# bound-parameter limits (32,767 on PostgreSQL, 32,766 on SQLite).
MAX_BATCH_SIZE = 1000


def _text(body: dict[str, Any], field: str, limit: int) -> str | None:
    value = body.get(field)
    if value is None:
        return None
    if not isinstance(value, str):
        raise PoisonMessage(f"{field} must be a string")
    if len(value) > limit:
        raise PoisonMessage(f"{field} longer than {limit} characters")
    if "\x00" in value:  # PostgreSQL refuses NUL in text: it would fail on every retry
        raise PoisonMessage(f"{field} contains a NUL character")
    return value


def _user_id(body: dict[str, Any]) -> str:
    value = body.get("user_id")
    if value is None:
        raise PoisonMessage("missing user_id")
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise PoisonMessage("user_id must be a string or an integer")
    user_id = str(value)
    if not USER_ID.fullmatch(user_id):
        raise PoisonMessage("user_id must be 1-64 letters, digits or _.:@-")
    return user_id


def _seq(body: dict[str, Any]) -> int | None:
    value = body.get("seq")
    if value is None:
        return None
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**63:
        raise PoisonMessage("seq must be a non-negative integer")
    return value


def _occurred_at(body: dict[str, Any]) -> datetime | None:
    value = body.get("occurred_at")
    if value is None:
        return None
    if not isinstance(value, str):
        raise PoisonMessage("occurred_at must be an ISO 8601 string")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise PoisonMessage("occurred_at must be an ISO 8601 string") from None
    # A time without a zone is taken as UTC, as the contract says times are.
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def parse_event(delivery: Delivery) -> UserEvent:
    """Validate a delivery into a `UserEvent`, or raise `PoisonMessage(reason)`."""
    try:
        body = orjson.loads(delivery.body)
    except orjson.JSONDecodeError:
        raise PoisonMessage("body is not valid JSON") from None
    if not isinstance(body, dict):
        raise PoisonMessage("body is not a JSON object")
    kind = body.get("event")
    if kind not in EVENTS:
        shown = kind[:32] if isinstance(kind, str) else kind
        raise PoisonMessage(f"unknown event {shown!r}")
    event_id = body.get("event_id")
    if isinstance(event_id, int) and not isinstance(event_id, bool):
        event_id = str(event_id)
    event_id = _text({"event_id": event_id}, "event_id", MAX_EVENT_ID)
    message_id = delivery.message_id[:MAX_EVENT_ID] if delivery.message_id else None
    return UserEvent(
        kind=kind,
        user_id=_user_id(body),
        name=_text(body, "name", MAX_NAME),
        email=_text(body, "email", MAX_EMAIL),
        # Without either, the event is still safe to apply twice: a status is a state.
        dedup_key=event_id or message_id,
        seq=_seq(body),
        occurred_at=_occurred_at(body),
    )


class UserEventConsumer:
    def __init__(
        self,
        status: UserStatusService,
        *,
        batch_size: int = BATCH_SIZE,
        batch_wait: float = BATCH_WAIT,
    ) -> None:
        if not 1 <= batch_size <= MAX_BATCH_SIZE:
            raise ValueError(f"batch_size must be 1 to {MAX_BATCH_SIZE}")
        self.status = status
        self._batcher = MicroBatcher(self._apply, max_size=batch_size, max_wait=batch_wait)

    async def handle(self, delivery: Delivery) -> None:
        """The bus handler: returns (and the bus acks) only after commit and cache write.

        A cache that cannot be reached does not stop the ack: the database is the
        source of truth and every read falls back to it, and the cache is brought back
        in line by the next request's activity write (see `status`). Requeueing instead
        would hold every event hostage to the cache being up.
        """
        event = parse_event(delivery)
        if event.occurred_at is not None:
            CONSUMER_LAG.observe(max(0.0, time.time() - event.occurred_at.timestamp()))
        await self._batcher.submit(event)

    async def _apply(self, events: list[UserEvent]) -> Sequence[BaseException | None]:
        try:
            await self._attempt(events)
        except Exception as error:
            if len(events) == 1 or _connection_lost(error):
                return [_outcome(error)] * len(events)
            log.warning(
                "a batch of %d events failed (%r); applying them one by one", len(events), error
            )
            return await self._one_by_one(events)
        return [None] * len(events)

    async def _attempt(self, events: list[UserEvent]) -> None:
        try:
            await self.status.apply_events(events)
        except DBAPIError as error:
            if not error.connection_invalidated:
                raise
            # A connection that died in the pool (PostgreSQL restarted): SQLAlchemy has
            # just discarded every older pooled connection, so a retry gets a fresh one.
            # Safe even if the lost commit went through: the retry's events are then
            # redeliveries (deduped) and only bring the cache in line.
            log.info("database connection lost (%r); retrying at once", error.orig)
            await self.status.apply_events(events)

    async def _one_by_one(self, events: list[UserEvent]) -> list[BaseException | None]:
        outcomes: list[BaseException | None] = []
        for index, event in enumerate(events):
            try:
                await self._attempt([event])
            except Exception as error:
                if _connection_lost(error):  # the rest would only fail the same way
                    return outcomes + [error] * (len(events) - index)
                log.warning("event for user %s failed: %r", event.user_id, error)
                outcomes.append(_outcome(error))
            else:
                outcomes.append(None)
        return outcomes


def _connection_lost(error: Exception) -> bool:
    """The database could not be reached or the connection died: nothing event-specific."""
    if isinstance(error, DBAPIError) and error.connection_invalidated:
        return True
    return isinstance(error, OSError | TimeoutError | InterfaceError)


def _outcome(error: Exception) -> Exception:
    """What the bus gets for an event that failed on its own: the error (requeued), or
    `PoisonMessage` when the database refused the event's data (SQLSTATE class 22)."""
    sqlstate = getattr(getattr(error, "orig", None), "sqlstate", None)
    if isinstance(sqlstate, str) and sqlstate.startswith("22"):
        return PoisonMessage(f"the database refused the event: {error.orig}")  # type: ignore[attr-defined]
    return error
