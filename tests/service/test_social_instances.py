"""Two social instances on the local Redis (pub/sub, presence, cache), each under its own
real uvicorn server: tickets are single-use across them, chat and presence cross them,
a logout on one closes sockets on the other."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import orjson
import pytest
from sqlalchemy import select
from websockets.exceptions import ConnectionClosed

from agora.adapters.audit_database import AuditEvent
from agora.core.settings import Settings
from agora.db.engine import Database
from tests.service.social_harness import (
    Client,
    closed_with,
    migrated,
    open_socket,
    receive,
    receive_until,
    refusal,
    send,
    social_settings,
    two_instances,
)

pytestmark = [pytest.mark.redis, pytest.mark.timeout(60)]


@dataclass
class Pair:
    a: str  # every service (auth included)
    b: str  # the social service alone
    http: httpx.AsyncClient


@pytest.fixture
async def pair(tmp_path: Path, redis_url: str, redis_namespace: str) -> AsyncIterator[Pair]:
    settings = await migrated(social_settings(tmp_path))
    async with two_instances(settings, redis_url, redis_namespace, "social") as (
        a,
        b,
        http,
    ):
        yield Pair(a, b, http)


async def test_a_ticket_is_used_once_across_instances(pair: Pair) -> None:
    alice = await Client.register(pair.a, pair.http)
    ticket = await alice.ticket(pair.a)
    ws = await open_socket(pair.b, ticket)  # issued by A, redeemed by B
    assert (await receive(ws))["userId"] == alice.user_id
    assert await refusal(pair.a, ticket) == (
        {"type": "error", "message": "Token already used"},
        4409,
    )
    await ws.close()


async def test_chat_and_presence_cross_instances(pair: Pair) -> None:
    alice = await Client.register(pair.a, pair.http)
    bob = await Client.register(pair.a, pair.http)
    watcher = await alice.socket(pair.a)
    await send(watcher, {"type": "presence.watch", "users": [bob.user_id]})
    assert await receive(watcher) == {"type": "presence", "online": []}

    bob_on_b = await bob.socket(pair.b)
    assert await receive(watcher) == {"type": "presence.join", "userId": bob.user_id}
    bob_on_a = await bob.socket(pair.a)  # a second device, on the other instance: no join

    await send(watcher, {"type": "chat", "to": bob.user_id, "content": "à travers"})
    ack = await receive(watcher)
    assert ack["type"] == "ack"
    for device in (bob_on_a, bob_on_b):
        assert await receive_until(device, "chat") == {
            "type": "chat",
            "from": alice.user_id,
            "fromLogin": alice.login,
            "content": "à travers",
            "id": ack["id"],
            "sentAt": ack["sentAt"],
        }
    await bob_on_a.close()
    await bob_on_b.close()
    assert await receive(watcher) == {"type": "presence.leave", "userId": bob.user_id}
    await watcher.close()


async def test_logout_on_one_instance_closes_the_socket_on_the_other(pair: Pair) -> None:
    alice = await Client.register(pair.a, pair.http)
    ws = await alice.socket(pair.b)
    response = await pair.http.post(
        pair.a + "/auth/api/logout", headers={"Authorization": f"Bearer {alice.token}"}
    )
    assert response.status_code == 200
    assert await receive(ws) == {"type": "error", "message": "Session ended"}
    assert await closed_with(ws) == (4410, "Session ended")


async def audit_events(settings: Settings, event: str) -> list[dict[str, object]]:
    database = Database(settings.resolved_database_url)  # the one both instances write
    try:
        async with database.sessions() as session:
            rows = await session.scalars(select(AuditEvent).where(AuditEvent.event == event))
            return [orjson.loads(row.data) for row in rows.all()]
    finally:
        await database.close()


async def test_a_flood_over_two_instances_is_blocked_within_the_stated_bound(
    tmp_path: Path, redis_url: str, redis_namespace: str
) -> None:
    """On Redis each instance counts frames itself and sends its counts in batches
    (B = a tenth of the limit here: 10). One user sending on a device on each instance
    gets at most the limit plus 2 x (B - 1) frames through (docs/security.md), then is
    closed with 4429 everywhere, blocked on both, and the block is audited once."""
    limit, batch, instances = 100, 10, 2
    settings = await migrated(
        social_settings(tmp_path, social_messages_per_window=limit, rate_limit_flush_interval=5)
    )
    async with two_instances(settings, redis_url, redis_namespace, "social") as (a, b, http):
        alice = await Client.register(a, http)
        devices = [await alice.socket(a), await alice.socket(b)]
        echoed = 0
        open_devices = list(devices)
        for n in range(3 * limit):
            if not open_devices:
                break
            ws = open_devices[n % len(open_devices)]
            try:
                await send(ws, {"type": "chat", "content": f"m{n}"})
                frame = await receive(ws)
            except ConnectionClosed:
                open_devices.remove(ws)
                continue
            if frame["type"] == "echo":
                echoed += 1
            else:
                assert frame == {"type": "error", "message": "Too many messages"}
                assert await closed_with(ws) == (4429, "Too many messages")
                open_devices.remove(ws)
        assert not open_devices
        assert limit <= echoed <= limit + instances * (batch - 1)
        for base_url in (a, b):  # a new socket on either instance is still blocked
            again = await alice.socket(base_url)
            await send(again, {"type": "chat", "content": "let me in"})
            assert await receive(again) == {"type": "error", "message": "Too many messages"}
            assert (await closed_with(again))[0] == 4429
    blocks = await audit_events(settings, "social.rate_limited")
    assert [(e["scope"], e["user_id"], e["level"]) for e in blocks] == [
        ("messages", alice.user_id, 1)
    ]
