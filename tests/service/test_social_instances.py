"""Two social instances on the local Redis (pub/sub, presence, cache), each under its own
real uvicorn server: tickets are single-use across them, chat and presence cross them,
a logout on one closes sockets on the other."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

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
