"""The auth outbox and its relay, on SQLite and PostgreSQL.

Login/logout write their event in their own transaction; the relay publishes each row
exactly once per success, keeps rows through a broker outage, and on PostgreSQL two
relays never publish one row twice.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import delete, select, update

from agora.adapters.bus_amqp import AmqpBus
from agora.adapters.bus_memory import MemoryBus
from agora.core.settings import Settings
from agora.db.engine import Database, utcnow
from agora.ports.bus import Delivery, PublishFailed, Topology
from agora.runtime.backends import build_backends
from agora.security.passwords import PasswordHasher
from agora.services.auth.app import create_app as create_auth_app
from agora.services.auth.models import OutboxEvent, User
from agora.services.auth.outbox_relay import BACKOFF_MAX, OutboxRelay
from agora.services.auth.repository import OutboxRepository
from tests.support.services import delete_topology
from tests.support.users import PASSWORD, register_and_login
from tests.support.waiting import eventually


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    """The test database with an empty outbox (PostgreSQL's is shared by the run)."""
    database = Database(database_url)
    async with database.transaction() as session:
        await session.execute(delete(OutboxEvent))
    yield database
    await database.close()


async def rows_of(db: Database, user_id: str) -> list[tuple[OutboxEvent, dict[str, Any]]]:
    async with db.sessions() as session:
        rows = (await session.execute(select(OutboxEvent).order_by(OutboxEvent.id))).scalars()
        parsed = [(row, orjson.loads(row.payload)) for row in rows]
    return [(row, body) for row, body in parsed if body["user_id"] == user_id]


async def add_rows(db: Database, count: int) -> list[str]:
    event_ids = [str(uuid.uuid4()) for _ in range(count)]
    async with db.transaction() as session:
        outbox = OutboxRepository(session)
        for n, event_id in enumerate(event_ids):
            body = {"event": "connected", "user_id": str(n), "event_id": event_id, "seq": 1}
            await outbox.add(event_id, "user.connected", orjson.dumps(body).decode())
    return event_ids


async def all_rows(db: Database) -> list[OutboxEvent]:
    async with db.sessions() as session:
        return list((await session.execute(select(OutboxEvent).order_by(OutboxEvent.id))).scalars())


class RecordingBus:
    """A bus whose broker can be switched off (or refuse some messages), recording every
    confirmed publish and how many publishes were in flight at most."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.up = True
        self.refused: set[str] = set()
        self.published: list[str] = []
        self.in_flight = 0
        self.most_in_flight = 0

    async def publish(self, routing_key: str, body: bytes, *, message_id: str) -> None:
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self.delay)
        finally:
            self.in_flight -= 1
        if not self.up:
            raise PublishFailed("broker unreachable")
        if message_id in self.refused:
            raise PublishFailed("nacked")
        assert orjson.loads(body)["event_id"] == message_id
        self.published.append(message_id)


# --- the outbox write ----------------------------------------------------------------


async def test_login_writes_one_connected_event(embedded: httpx.AsyncClient, db: Database) -> None:
    before = utcnow()
    user, _ = await register_and_login(embedded)
    [(row, body)] = await rows_of(db, str(user["id"]))
    assert row.routing_key == "user.connected"
    assert set(body) == {"event", "user_id", "name", "email", "event_id", "occurred_at", "seq"}
    assert body["event"] == "connected" and body["user_id"] == user["id"]
    assert body["name"] == user["name"] and body["email"] == user["email"]
    assert body["event_id"] == row.event_id == str(uuid.UUID(body["event_id"]))
    occurred = datetime.fromisoformat(body["occurred_at"])
    assert occurred.utcoffset() == timedelta(0)
    assert before <= occurred <= utcnow()
    assert body["seq"] == 1
    # Compact JSON, exactly what the relay publishes.
    assert row.payload == orjson.dumps(body).decode() and ": " not in row.payload


async def test_seq_counts_each_users_events_and_logout_is_disconnected(
    embedded: httpx.AsyncClient, db: Database
) -> None:
    alice, token = await register_and_login(embedded)
    bob, _ = await register_and_login(embedded)
    again = await embedded.post(
        "/auth/api/login", json={"login": alice["login"], "password": PASSWORD}
    )
    assert again.status_code == 200
    # Every session ends (one logout would leave the other live: no event).
    out = await embedded.post("/auth/api/logout/all", headers={"Authorization": f"Bearer {token}"})
    assert out.status_code == 200

    alice_events = await rows_of(db, str(alice["id"]))
    assert [(b["event"], b["seq"]) for _, b in alice_events] == [
        ("connected", 1),
        ("connected", 2),
        ("disconnected", 3),
    ]
    row, body = alice_events[-1]
    assert row.routing_key == "user.disconnected"
    assert set(body) == {"event", "user_id", "event_id", "occurred_at", "seq"}
    assert [b["seq"] for _, b in await rows_of(db, str(bob["id"]))] == [1]


async def test_failed_login_writes_no_event(embedded: httpx.AsyncClient, db: Database) -> None:
    user, _ = await register_and_login(embedded)
    wrong = await embedded.post("/auth/api/login", json={"login": user["login"], "password": "x"})
    assert wrong.status_code == 401
    assert len(await rows_of(db, str(user["id"]))) == 1


async def test_login_that_rehashes_writes_hash_and_event_together(
    embedded: httpx.AsyncClient, db: Database, settings: Settings
) -> None:
    user, _ = await register_and_login(embedded)
    user_id = int(str(user["id"]))
    weaker = await PasswordHasher(1, 32, 1).hash(PASSWORD)  # below the configured cost
    async with db.transaction() as session:
        await session.execute(update(User).where(User.id == user_id).values(password_hash=weaker))
    response = await embedded.post(
        "/auth/api/login", json={"login": user["login"], "password": PASSWORD}
    )
    assert response.status_code == 200
    async with db.sessions() as session:
        stored = await session.get(User, user_id)
    assert stored is not None and stored.password_hash != weaker
    configured = PasswordHasher(
        settings.argon2_time_cost, settings.argon2_memory_cost, settings.argon2_parallelism
    )
    assert not configured.needs_rehash(stored.password_hash)
    assert [b["seq"] for _, b in await rows_of(db, str(user["id"]))] == [1, 2]


async def test_concurrent_logins_of_one_user_get_distinct_seqs(
    embedded: httpx.AsyncClient, db: Database
) -> None:
    user, _ = await register_and_login(embedded)
    credentials = {"login": user["login"], "password": PASSWORD}
    answers = await asyncio.gather(
        # 5: the login throttle lets at most that many attempts of one login run at once.
        *(embedded.post("/auth/api/login", json=credentials) for _ in range(5))
    )
    assert all(a.status_code == 200 for a in answers), [(a.status_code, a.text) for a in answers]
    assert sorted(b["seq"] for _, b in await rows_of(db, str(user["id"]))) == list(range(1, 7))


async def test_the_auth_app_relays_a_login_at_once(
    settings: Settings, database_url: str, db: Database
) -> None:
    # A poll interval far beyond the test's patience: only the wake-up can deliver in time.
    config = settings.model_copy(update={"database_url": database_url, "outbox_poll_interval": 60})
    backends = build_backends(config)
    app = create_auth_app(config, backends)  # alone: the bus's one consumer is this test
    received: asyncio.Queue[Delivery] = asyncio.Queue()

    async def handler(delivery: Delivery) -> None:
        received.put_nowait(delivery)

    await backends.start()
    try:
        async with app.router.lifespan_context(app):
            await backends.bus.consume(handler)
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                user, _ = await register_and_login(client)
                delivery = await asyncio.wait_for(received.get(), 3)
    finally:
        await backends.close()
    [(row, body)] = await rows_of(db, str(user["id"]))
    assert delivery.routing_key == "user.connected"
    assert delivery.message_id == row.event_id and delivery.body == row.payload.encode()
    assert body["event"] == "connected" and row.published_at is not None


# --- the relay -------------------------------------------------------------------------


async def test_relay_publishes_in_order_and_marks_rows(db: Database) -> None:
    event_ids = await add_rows(db, 5)
    bus = MemoryBus()
    received: list[Delivery] = []

    async def handler(delivery: Delivery) -> None:
        received.append(delivery)

    await bus.consume(handler)
    relay = OutboxRelay(db, bus, batch_size=3)
    assert (await relay.publish_batch()).published == 3
    assert (await relay.publish_batch()).published == 2
    assert (await relay.publish_batch()).claimed == 0
    await eventually(lambda: asyncio.sleep(0, len(received) == 5))
    await bus.close()
    assert [d.message_id for d in received] == event_ids
    assert all(d.routing_key == "user.connected" for d in received)
    assert all(row.published_at is not None for row in await all_rows(db))


async def test_retry_waits_never_exceed_the_cap_however_long_the_outage(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 15 §9: after a long outage the next retry is at most BACKOFF_MAX (5 s)
    away, so events catch up within seconds of the broker's return (was 30 s)."""
    bus = RecordingBus()
    bus.up = False
    relay = OutboxRelay(db, bus, poll_interval=0.05)  # the default backoff
    waits: list[float] = []

    async def recorded(seconds: float, *, wakeable: bool) -> None:
        if not wakeable:
            waits.append(seconds)
        await asyncio.sleep(0)

    monkeypatch.setattr(relay, "_sleep", recorded)
    await add_rows(db, 1)
    await relay.start()
    try:
        await eventually(lambda: asyncio.sleep(0, len(waits) >= 12))
    finally:
        await relay.stop()
    assert waits[:4] == [0.5, 1.0, 2.0, 4.0]
    assert max(waits) == BACKOFF_MAX == 5.0


async def test_broker_outage_delays_events_and_loses_none(db: Database) -> None:
    bus = RecordingBus()
    bus.up = False
    relay = OutboxRelay(db, bus, poll_interval=0.05, backoff_base=0.01, backoff_max=0.05)
    await relay.start()
    try:
        event_ids = await add_rows(db, 5)
        relay.wake.set()

        async def retried() -> bool:
            rows = await all_rows(db)
            return rows[0].attempts >= 2

        await eventually(retried)
        rows = await all_rows(db)
        assert all(row.published_at is None for row in rows)
        assert "PublishFailed" in (rows[0].last_error or "")
        assert bus.published == []

        bus.up = True

        async def drained() -> bool:
            return all(row.published_at is not None for row in await all_rows(db))

        await eventually(drained)
    finally:
        await relay.stop()
    assert bus.published == event_ids  # each once, in order


async def test_stop_mid_batch_keeps_what_was_published(db: Database) -> None:
    event_ids = await add_rows(db, 40)
    bus = RecordingBus(delay=0.01)
    relay = OutboxRelay(db, bus, poll_interval=60, max_in_flight=2)
    await relay.start()
    await eventually(lambda: asyncio.sleep(0, len(bus.published) >= 5))
    await relay.stop()
    published_rows = [r.event_id for r in await all_rows(db) if r.published_at is not None]
    assert published_rows == bus.published and len(bus.published) < 40
    # A fresh relay sends the rest, and nothing twice.
    while (await OutboxRelay(db, bus).publish_batch()).claimed:
        pass
    assert bus.published == event_ids


async def test_a_concurrent_batch_marks_only_the_confirmed_rows(db: Database) -> None:
    event_ids = await add_rows(db, 10)
    bus = RecordingBus(delay=0.02)
    bus.refused = {event_ids[3], event_ids[7]}  # nacked while the others are confirmed
    relay = OutboxRelay(db, bus, max_in_flight=10)
    result = await relay.publish_batch()
    assert bus.most_in_flight == 10  # all ten were waiting for their confirm at once
    assert (result.claimed, result.published) == (10, 8)
    assert result.error is not None and "nacked" in result.error
    rows = {row.event_id: row for row in await all_rows(db)}
    assert sorted(bus.published) == sorted(set(event_ids) - bus.refused)
    for event_id in event_ids:
        row = rows[event_id]
        if event_id in bus.refused:
            assert row.published_at is None and row.attempts == 1
            assert "nacked" in (row.last_error or "")
        else:
            assert row.published_at is not None and row.attempts == 0
    # The broker takes them now: the next batch sends only those two, nothing twice.
    bus.refused = set()
    assert (await relay.publish_batch()).published == 2
    assert Counter(bus.published) == Counter(event_ids)


async def test_after_a_failure_no_new_publish_starts(db: Database) -> None:
    event_ids = await add_rows(db, 6)
    bus = RecordingBus()
    bus.refused = {event_ids[1]}
    result = await OutboxRelay(db, bus, max_in_flight=1).publish_batch()
    # One at a time: the first is confirmed, the second refused, the rest not tried.
    assert (result.claimed, result.published) == (6, 1)
    rows = await all_rows(db)
    assert [r.attempts for r in rows] == [0, 1, 0, 0, 0, 0]
    assert [r.published_at is not None for r in rows] == [True] + [False] * 5


async def test_prune_drops_only_old_published_rows(db: Database) -> None:
    old_sent, old_unsent, recent_sent = await add_rows(db, 3)
    long_ago = datetime.now(UTC) - timedelta(days=8)
    async with db.transaction() as session:
        await session.execute(
            update(OutboxEvent)
            .where(OutboxEvent.event_id == old_sent)
            .values(published_at=long_ago)
        )
        await session.execute(
            update(OutboxEvent)
            .where(OutboxEvent.event_id == old_unsent)
            .values(created_at=long_ago)
        )
        await session.execute(
            update(OutboxEvent)
            .where(OutboxEvent.event_id == recent_sent)
            .values(published_at=utcnow())
        )
    assert await OutboxRelay(db, RecordingBus(), retention=timedelta(days=7)).prune() == 1
    assert [r.event_id for r in await all_rows(db)] == [old_unsent, recent_sent]


@pytest.mark.postgres
async def test_two_relays_on_postgres_publish_each_row_once(postgres_url: str) -> None:
    first, second = Database(postgres_url), Database(postgres_url)
    try:
        async with first.transaction() as session:
            await session.execute(delete(OutboxEvent))
        event_ids = await add_rows(first, 200)
        bus = RecordingBus(delay=0.001)
        relays = [OutboxRelay(d, bus, batch_size=20) for d in (first, second)]
        counts = [0, 0]

        async def drain(n: int) -> None:
            while (result := await relays[n].publish_batch()).claimed:
                counts[n] += result.published

        await asyncio.gather(drain(0), drain(1))
        assert Counter(bus.published) == Counter(event_ids)  # all 200, each exactly once
        assert counts[0] > 0 and counts[1] > 0  # both relays really worked side by side
        assert all(row.published_at is not None for row in await all_rows(first))
    finally:
        await first.close()
        await second.close()


@pytest.mark.rabbitmq
async def test_relay_through_rabbitmq_survives_an_unreachable_broker(
    db: Database, amqp_url: str, amqp_suffix: str
) -> None:
    topology = Topology().suffixed(amqp_suffix)
    event_ids = await add_rows(db, 30)
    down = AmqpBus("amqp://guest:guest@127.0.0.1:1/", topology, publish_timeout=0.3)
    await down.start()
    try:
        result = await OutboxRelay(db, down).publish_batch()
    finally:
        await down.close()
    assert result.published == 0 and result.error is not None
    rows = await all_rows(db)
    assert rows[0].attempts == 1 and all(r.published_at is None for r in rows)

    bus = AmqpBus(amqp_url, topology)
    received: list[Delivery] = []

    async def handler(delivery: Delivery) -> None:
        received.append(delivery)

    await bus.start()
    try:
        await bus.consume(handler)
        while (await OutboxRelay(db, bus, batch_size=8).publish_batch()).claimed:
            pass
        await eventually(lambda: asyncio.sleep(0, len(received) >= 30))
        await asyncio.sleep(0.2)  # room for a duplicate to show up, if there were one
    finally:
        await bus.close()
        await delete_topology(amqp_url, topology)
    assert [d.message_id for d in received] == event_ids
    assert all(orjson.loads(d.body)["event_id"] == d.message_id for d in received)
    assert all(r.published_at is not None for r in await all_rows(db))
