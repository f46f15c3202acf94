"""Publications service, event side: consumer, ordering, dedupe, cache, activity, sweeper.

Runs on SQLite and PostgreSQL with the embedded cache and bus (and once on Redis).
Audit events are checked in the `audit_events` table, where the service stores them.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import orjson
import pytest
from sqlalchemy import text

from agora.adapters.cache_memory import MemoryCache
from agora.db.engine import Database, utcnow
from agora.ports.bus import Delivery, PoisonMessage
from agora.ports.cache import CacheUnavailable
from agora.services.publications.deps import PublicationsServices
from agora.services.publications.models import ProcessedEvent
from agora.services.publications.status import cache as status_cache
from agora.services.publications.status.cache import UserStatusCache
from agora.services.publications.status.service import UserStatusService
from tests.service.publications_stack import (
    OpenStack,
    Stack,
    UnreachableCache,
    new_user,
)
from tests.support.waiting import eventually

# --- the consumer ------------------------------------------------------------------------


async def test_foreign_connected_then_disconnected(stack: Stack) -> None:
    user = new_user()
    await stack.deliver(
        {"event": "connected", "user_id": user, "name": "John Doe", "email": "john@example.com"}
    )
    row = await stack.row(user)
    assert row is not None and row.status == "connected"
    assert (row.name, row.email) == ("John Doe", "john@example.com")
    assert row.last_activity_at is not None
    cached = await stack.cached(user)
    assert cached is not None
    assert cached == {
        "status": "connected",
        "name": "John Doe",
        "email": "john@example.com",
        "last_activity_at": row.last_activity_at.isoformat(),
    }
    ttl = await stack.backends.cache.ttl(f"user:{user}")
    assert ttl is not None and 3590 < ttl <= 3600

    await stack.deliver({"event": "disconnected", "user_id": user})
    row = await stack.row(user)
    assert row is not None and row.status == "disconnected"
    assert row.name == "John Doe"  # a disconnect carries no profile and erases none
    assert await stack.cached(user) is None
    assert await stack.audits(user) == ["user.connected_applied", "user.disconnected_applied"]


async def test_the_same_event_twice_changes_once(stack: Stack) -> None:
    user = new_user()
    await stack.connect(user, event_id="evt-a-" + user)
    await stack.deliver({"event": "disconnected", "user_id": user, "event_id": "evt-b-" + user})
    # A redelivery of the first event: without dedupe it would reconnect the user.
    await stack.connect(user, event_id="evt-a-" + user)
    row = await stack.row(user)
    assert row is not None and row.status == "disconnected"
    assert await stack.cached(user) is None
    assert await stack.audits(user) == ["user.connected_applied", "user.disconnected_applied"]
    async with stack.db.sessions() as session:
        stored = await session.get(ProcessedEvent, "evt-a-" + user)
    assert stored is not None


async def test_amqp_message_id_dedupes_a_bare_body(stack: Stack) -> None:
    user = new_user()
    bare = {"event": "connected", "user_id": user, "name": "N", "email": "n@example.com"}
    await stack.deliver(bare, message_id="msg-1-" + user)
    await stack.deliver({"event": "disconnected", "user_id": user}, message_id="msg-2-" + user)
    await stack.deliver(bare, message_id="msg-1-" + user)
    row = await stack.row(user)
    assert row is not None and row.status == "disconnected"


async def test_an_older_event_never_overwrites_a_newer_one(stack: Stack) -> None:
    user = new_user()
    # The disconnect (seq 2) overtakes the connect (seq 1) it follows.
    await stack.deliver({"event": "disconnected", "user_id": user, "seq": 2})
    await stack.connect(user, seq=1)
    row = await stack.row(user)
    assert row is not None and row.status == "disconnected"
    assert await stack.cached(user) is None
    # A newer login still gets through.
    await stack.connect(user, seq=3)
    row = await stack.row(user)
    assert row is not None and row.status == "connected"
    assert await stack.cached(user) is not None


async def test_occurred_at_orders_events_without_seq(stack: Stack) -> None:
    user = new_user()
    await stack.deliver(
        {"event": "disconnected", "user_id": user, "occurred_at": "2026-11-21T10:05:00Z"}
    )
    await stack.connect(user, occurred_at="2026-11-21T10:00:00Z")
    row = await stack.row(user)
    assert row is not None and row.status == "disconnected"
    await stack.connect(user, occurred_at="2026-11-21T10:06:00Z")
    row = await stack.row(user)
    assert row is not None and row.status == "connected"


async def test_without_seq_or_time_the_later_arrival_wins(stack: Stack) -> None:
    user = new_user()
    await stack.connect(user, seq=5)
    await stack.deliver({"event": "disconnected", "user_id": user})  # another publisher
    row = await stack.row(user)
    assert row is not None and row.status == "disconnected"
    await stack.connect(user, seq=4)  # older than the last numbered event: still ignored
    row = await stack.row(user)
    assert row is not None and row.status == "disconnected"


async def test_poison_messages_are_dead_lettered_while_others_flow(stack: Stack) -> None:
    user = new_user()
    bus = stack.backends.bus
    for body in (b"{broken", b'{"event": "exploded", "user_id": "1"}', b'{"event": "connected"}'):
        await bus.publish("user.connected", body, message_id=uuid.uuid4().hex)
    await bus.publish(
        "user.connected", orjson.dumps({"event": "connected", "user_id": user}), message_id="ok"
    )

    async def applied() -> bool:
        return await stack.row(user) is not None

    await eventually(applied)
    reasons = [letter.reason for letter in await bus.dead_letters()]
    assert reasons == ["body is not valid JSON", "unknown event 'exploded'", "missing user_id"]


async def test_a_redelivery_repairs_a_cache_write_that_never_happened(stack: Stack) -> None:
    user = new_user()
    await stack.connect(user, event_id="c-" + user)
    await stack.deliver({"event": "disconnected", "user_id": user, "event_id": "d-" + user})
    # As if the process died after the disconnect's commit, before its cache delete.
    await stack.backends.cache.set(f"user:{user}", b'{"status": "connected"}', 3600)
    await stack.deliver({"event": "disconnected", "user_id": user, "event_id": "d-" + user})
    assert await stack.cached(user) is None


async def test_events_apply_with_the_cache_down(open_stack: OpenStack) -> None:
    stack = await open_stack(cache=UnreachableCache())
    user = new_user()
    await stack.connect(user)  # returns (the bus acks): the database has it
    row = await stack.row(user)
    assert row is not None and row.status == "connected"
    await stack.deliver({"event": "disconnected", "user_id": user})
    row = await stack.row(user)
    assert row is not None and row.status == "disconnected"


class FlakyCache(MemoryCache):
    """The embedded cache, made unreachable while `down` is set."""

    down = False

    async def get(self, key: str) -> bytes | None:
        if self.down:
            raise CacheUnavailable("down")
        return await super().get(key)

    async def set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        if self.down:
            raise CacheUnavailable("down")
        await super().set(key, value, ttl)


async def test_the_cache_is_used_again_once_it_is_back(
    open_stack: OpenStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(status_cache, "SKIP_AFTER_FAILURE", 0.05)
    flaky = FlakyCache()
    stack = await open_stack(cache=flaky)
    user = new_user()
    flaky.down = True
    await stack.connect(user)
    assert await stack.status.check_active(user)  # answered by the database
    flaky.down = False
    assert await stack.cached(user) is None
    await asyncio.sleep(0.06)
    assert await stack.status.check_active(user)
    assert (await stack.cached(user) or {}).get("status") == "connected"  # refilled


async def test_status_reaches_redis_with_its_ttl(
    open_stack: OpenStack, redis_url: str, redis_namespace: str
) -> None:
    from agora.adapters.cache_redis import RedisCache

    stack = await open_stack(cache=RedisCache(redis_url, namespace=redis_namespace))
    user = new_user()
    await stack.connect(user)
    ttl = await stack.backends.cache.ttl(f"user:{user}")
    assert ttl is not None and 0 < ttl <= 3600
    assert (await stack.cached(user) or {}).get("status") == "connected"
    await stack.deliver({"event": "disconnected", "user_id": user})
    assert await stack.cached(user) is None


# --- activity ------------------------------------------------------------------------------


async def test_activity_writes_the_database_at_most_once_per_interval(
    open_stack: OpenStack,
) -> None:
    stack = await open_stack(activity_write_interval=600)
    user = new_user()
    await stack.connect(user)
    await stack.backends.cache.expire(f"user:{user}", 10)
    # The database says "idle for an hour", the cache says "written just now": no write.
    await stack.set_activity(user, 3600)
    stale = (await stack.row(user)).last_activity_at  # type: ignore[union-attr]
    assert await stack.status.check_active(user)
    assert (await stack.row(user)).last_activity_at == stale  # type: ignore[union-attr]
    ttl = await stack.backends.cache.ttl(f"user:{user}")
    assert ttl is not None and ttl > 3500  # but the TTL was pushed back
    # Once the cached write time is older than the interval, one write happens...
    old = (utcnow() - timedelta(seconds=900)).isoformat()
    await stack.backends.cache.set(
        f"user:{user}", orjson.dumps({"status": "connected", "last_activity_at": old}), 3600
    )
    assert await stack.status.check_active(user)
    written = (await stack.row(user)).last_activity_at  # type: ignore[union-attr]
    assert written is not None and utcnow() - written < timedelta(seconds=5)
    assert (await stack.cached(user) or {})["last_activity_at"] == written.isoformat()
    # ...and the next requests do not write again.
    for _ in range(3):
        assert await stack.status.check_active(user)
    assert (await stack.row(user)).last_activity_at == written  # type: ignore[union-attr]


async def test_a_cache_miss_is_answered_by_the_database_and_refilled(stack: Stack) -> None:
    user = new_user()
    await stack.connect(user)
    await stack.backends.cache.delete(f"user:{user}")
    assert await stack.status.check_active(user)
    assert (await stack.cached(user) or {}).get("status") == "connected"


async def test_the_activity_write_drops_a_key_the_database_disagrees_with(stack: Stack) -> None:
    user = new_user()
    await stack.connect(user)
    await stack.deliver({"event": "disconnected", "user_id": user})
    # A key left behind by a delete that failed while the cache was unreachable.
    await stack.backends.cache.set(f"user:{user}", b'{"status": "connected"}', 3600)
    assert not await stack.status.check_active(user)
    assert await stack.cached(user) is None


# --- idle sweeping ---------------------------------------------------------------------------


async def test_the_sweeper_disconnects_idle_users(open_stack: OpenStack) -> None:
    stack = await open_stack(idle_timeout=1)
    idle, busy = new_user(), new_user()
    await stack.connect(idle)
    await stack.connect(busy)
    await stack.set_activity(idle, 5)
    swept = await stack.status.sweep_idle()
    assert idle in swept and busy not in swept
    assert (await stack.row(idle)).status == "disconnected"  # type: ignore[union-attr]
    assert (await stack.row(busy)).status == "connected"  # type: ignore[union-attr]
    assert await stack.cached(idle) is None and await stack.cached(busy) is not None
    assert (await stack.audits(idle))[-1] == "user.idle_disconnected"
    assert idle not in await stack.status.sweep_idle()


async def test_concurrent_sweepers_disconnect_each_user_once(
    open_stack: OpenStack, database_url: str
) -> None:
    stack = await open_stack(idle_timeout=1)
    users = [new_user() for _ in range(20)]
    for user in users:
        await stack.connect(user)
        await stack.set_activity(user, 5)
    other_db = Database(database_url)  # a second instance: its own engine and pool
    try:
        other = UserStatusService(
            other_db,
            UserStatusCache(stack.backends.cache, 3600),
            stack.app.context.audit,
            idle_timeout=1,
            activity_write_interval=60,
        )
        first, second = await asyncio.gather(stack.status.sweep_idle(), other.sweep_idle())
    finally:
        await other_db.close()
    ours = set(users)
    assert not (set(first) & set(second) & ours)
    assert (set(first) | set(second)) >= ours
    for user in users[:3]:
        assert (await stack.audits(user)).count("user.idle_disconnected") == 1


async def test_the_sweeper_runs_in_the_app_lifespan(open_stack: OpenStack) -> None:
    stack = await open_stack(idle_timeout=1, idle_sweep_interval=0.05)
    user = new_user()
    await stack.connect(user)
    await stack.set_activity(user, 5)

    async def swept() -> bool:
        row = await stack.row(user)
        return row is not None and row.status == "disconnected"

    await eventually(swept)
    assert await stack.cached(user) is None


# --- batches ---------------------------------------------------------------------------------


def body(kind: str, user: str, **extra: Any) -> dict[str, Any]:
    profile = {"name": f"N {user}", "email": f"{user}@example.com"} if kind == "connected" else {}
    return {"event": kind, "user_id": user, **profile, **extra}


def delivery_of(event: dict[str, Any], message_id: str | None = None) -> Delivery:
    return Delivery(orjson.dumps(event), f"user.{event['event']}", message_id)


def record_batches(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The size of every `apply_events` call (one per batch, or per event when retried)."""
    sizes: list[int] = []
    apply_events = stack.status.apply_events

    async def recording(events: Any) -> list[bool]:
        sizes.append(len(events))
        return await apply_events(events)

    monkeypatch.setattr(stack.status, "apply_events", recording)
    return sizes


async def deliver_together(stack: Stack, deliveries: list[Delivery]) -> list[Any]:
    """As the bus does under load: every handler running at once."""
    handle = stack.app.provided(PublicationsServices).user_events.handle
    return await asyncio.gather(*(handle(d) for d in deliveries), return_exceptions=True)


async def test_one_batch_applies_each_users_events_in_order_and_counts_duplicates_once(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    sizes = record_batches(stack, monkeypatch)
    a, b, c, d = (new_user() for _ in range(4))
    await stack.connect(d, seq=1, event_id=f"{d}-1")  # an earlier batch
    deliveries = [
        # a: connected, then disconnected; the connect delivered twice (same event_id).
        delivery_of(body("connected", a, seq=1, event_id=f"{a}-1")),
        delivery_of(body("disconnected", a, seq=2, event_id=f"{a}-2")),
        delivery_of(body("connected", a, seq=1, event_id=f"{a}-1")),
        # b: the newest event (seq 3) arrives first; the older ones must not win.
        delivery_of(body("connected", b, seq=3, event_id=f"{b}-3")),
        delivery_of(body("disconnected", b, seq=2, event_id=f"{b}-2")),
        delivery_of(body("connected", b, seq=1, event_id=f"{b}-1")),
        # c: a foreign publisher's bare events, deduped on the AMQP message id.
        delivery_of(body("disconnected", c), message_id=f"{c}-m1"),
        delivery_of(body("connected", c), message_id=f"{c}-m2"),
        delivery_of(body("connected", c), message_id=f"{c}-m2"),
        # d: a redelivery of the earlier batch's event, then a newer one.
        delivery_of(body("connected", d, seq=1, event_id=f"{d}-1")),
        delivery_of(body("disconnected", d, seq=2, event_id=f"{d}-2")),
    ]
    assert await deliver_together(stack, deliveries) == [None] * len(deliveries)
    assert sizes == [1, len(deliveries)]  # the earlier event, then all in ONE batch

    expected = {a: "disconnected", b: "connected", c: "connected", d: "disconnected"}
    for user, status in expected.items():
        row = await stack.row(user)
        assert row is not None and row.status == status, user
        cached = await stack.cached(user)
        if status == "connected":
            assert cached is not None and cached["status"] == "connected"
            assert cached["last_activity_at"] == row.last_activity_at.isoformat()  # type: ignore[union-attr]
        else:
            assert cached is None, user
    assert await stack.audits(a) == ["user.connected_applied", "user.disconnected_applied"]
    assert await stack.audits(b) == ["user.connected_applied"]  # seq 2 and 1 were older
    assert await stack.audits(c) == ["user.disconnected_applied", "user.connected_applied"]
    assert await stack.audits(d) == ["user.connected_applied", "user.disconnected_applied"]


async def test_duplicates_across_batches_change_once(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    sizes = record_batches(stack, monkeypatch)
    users = [new_user() for _ in range(3)]
    first = [delivery_of(body("connected", u, seq=1, event_id=f"{u}-1")) for u in users]
    assert await deliver_together(stack, first) == [None] * 3
    # The whole first batch redelivered, mixed with the users' logouts.
    second = [delivery_of(body("disconnected", u, seq=2, event_id=f"{u}-2")) for u in users]
    assert await deliver_together(stack, [*first, *second]) == [None] * 6
    assert sizes == [3, 6]
    for user in users:
        assert (await stack.row(user)).status == "disconnected"  # type: ignore[union-attr]
        assert await stack.cached(user) is None
        assert await stack.audits(user) == ["user.connected_applied", "user.disconnected_applied"]


async def test_a_poison_message_does_not_touch_the_others_of_its_batch(stack: Stack) -> None:
    users = [new_user() for _ in range(3)]
    deliveries = [delivery_of(body("connected", u)) for u in users]
    deliveries.insert(1, Delivery(b'{"event": "connected", "user_id": "bad id"}', "user.x"))
    outcomes = await deliver_together(stack, deliveries)
    assert isinstance(outcomes[1], PoisonMessage)
    assert outcomes[:1] + outcomes[2:] == [None] * 3
    for user in users:
        assert (await stack.row(user)).status == "connected"  # type: ignore[union-attr]


async def refuse_user_rows(db: Database, user_id: str, sqlstate: str = "P0001") -> None:
    """A trigger that makes the database refuse any write of `user_id`'s row."""
    async with db.transaction() as session:
        if db.is_postgres:
            await session.execute(
                text(
                    "CREATE FUNCTION refuse_user() RETURNS trigger LANGUAGE plpgsql AS $$"
                    f" BEGIN IF NEW.user_id = '{user_id}' THEN"
                    f" RAISE EXCEPTION 'refused by the test' USING ERRCODE = '{sqlstate}';"
                    " END IF; RETURN NEW; END $$"
                )
            )
            await session.execute(
                text(
                    "CREATE TRIGGER refuse_user BEFORE INSERT OR UPDATE ON pub_users"
                    " FOR EACH ROW EXECUTE FUNCTION refuse_user()"
                )
            )
        else:
            for operation in ("INSERT", "UPDATE"):
                await session.execute(
                    text(
                        f"CREATE TRIGGER refuse_user_{operation} BEFORE {operation} ON pub_users"
                        f" WHEN NEW.user_id = '{user_id}'"
                        " BEGIN SELECT RAISE(ABORT, 'refused by the test'); END"
                    )
                )


async def accept_user_rows(db: Database) -> None:
    async with db.transaction() as session:
        if db.is_postgres:
            await session.execute(text("DROP TRIGGER IF EXISTS refuse_user ON pub_users"))
            await session.execute(text("DROP FUNCTION IF EXISTS refuse_user()"))
        else:
            for operation in ("INSERT", "UPDATE"):
                await session.execute(text(f"DROP TRIGGER IF EXISTS refuse_user_{operation}"))


async def test_a_failing_batch_is_retried_event_by_event(
    stack: Stack, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    sizes = record_batches(stack, monkeypatch)
    good, bad, other = new_user(), new_user(), new_user()
    deliveries = [
        delivery_of(body("connected", good, event_id=f"{good}-1")),
        delivery_of(body("connected", bad, event_id=f"{bad}-1")),
        delivery_of(body("connected", other, event_id=f"{other}-1")),
    ]
    await refuse_user_rows(stack.db, bad)
    try:
        with caplog.at_level(logging.WARNING, logger="agora.publications.consumer"):
            outcomes = await deliver_together(stack, deliveries)
    finally:
        await accept_user_rows(stack.db)
    assert sizes == [3, 1, 1, 1]  # the batch failed, then each event alone
    assert any("applying them one by one" in r.getMessage() for r in caplog.records)
    assert outcomes[0] is None and outcomes[2] is None
    # Not poison: the bus requeues it, and nothing of it was committed (not even its
    # dedup key), so the redelivery applies it once the database takes it.
    assert isinstance(outcomes[1], Exception) and not isinstance(outcomes[1], PoisonMessage)
    for user in (good, other):
        assert (await stack.row(user)).status == "connected"  # type: ignore[union-attr]
        assert await stack.cached(user) is not None
        assert await stack.audits(user) == ["user.connected_applied"]
    assert await stack.row(bad) is None and await stack.audits(bad) == []
    await stack.app.provided(PublicationsServices).user_events.handle(deliveries[1])
    assert (await stack.row(bad)).status == "connected"  # type: ignore[union-attr]


async def test_data_the_database_refuses_is_dead_lettered(stack: Stack) -> None:
    if not stack.db.is_postgres:
        pytest.skip("SQLSTATE error classes are PostgreSQL's")
    good, bad = new_user(), new_user()
    await refuse_user_rows(stack.db, bad, sqlstate="22023")  # a "data exception"
    try:
        outcomes = await deliver_together(
            stack, [delivery_of(body("connected", good)), delivery_of(body("connected", bad))]
        )
    finally:
        await accept_user_rows(stack.db)
    assert outcomes[0] is None
    assert isinstance(outcomes[1], PoisonMessage)
    assert "refused" in str(outcomes[1])


class GatedDatabase:
    """The service's database, holding every transaction's commit until `opened`."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.sessions = db.sessions
        self.committing = asyncio.Event()
        self.opened = asyncio.Event()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Any]:
        async with self.db.transaction() as session:
            yield session
            self.committing.set()
            await self.opened.wait()


async def test_a_handler_returns_only_after_the_commit_and_the_cache_write(
    stack: Stack,
) -> None:
    gate = GatedDatabase(stack.db)
    stack.status.db = gate  # type: ignore[assignment]
    users = [new_user() for _ in range(3)]
    handle = stack.app.provided(PublicationsServices).user_events.handle
    handlers = [asyncio.create_task(handle(delivery_of(body("connected", u)))) for u in users]
    await asyncio.wait_for(gate.committing.wait(), 5)
    await asyncio.sleep(0.05)  # time enough for a handler that did not wait to return
    assert not any(task.done() for task in handlers)  # the bus would not have acked
    for user in users:
        assert await stack.cached(user) is None  # nor was anything cached before the commit
    gate.opened.set()
    await asyncio.wait_for(asyncio.gather(*handlers), 5)
    for user in users:
        assert (await stack.row(user)).status == "connected"  # type: ignore[union-attr]
        assert (await stack.cached(user) or {}).get("status") == "connected"


async def test_events_survive_a_restarted_database(stack: Stack) -> None:
    if not stack.db.is_postgres:
        pytest.skip("SQLite has no server to restart")
    await stack.connect(new_user())  # the pool now holds a connection
    # What a PostgreSQL restart does to the pool: every server connection is gone.
    admin = Database(stack.db.url)  # from outside the service's pool
    try:
        async with admin.transaction() as session:
            killed = await session.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            )
            assert killed.all()  # the service's pooled connection among them
    finally:
        await admin.close()
    user = new_user()
    await stack.connect(user)  # the dead connection fails once, the retry gets a new one
    assert (await stack.row(user)).status == "connected"  # type: ignore[union-attr]
