"""A chat is acknowledged only once it is on its way to the recipient's devices (issue
15 §3): with this instance's pub/sub subscription reconnecting (publishing works, but
nothing comes back to this instance), a chat to a user on the same instance gets a
retryable error frame, never an ack for a chat that is never delivered.

Real processes: `agora cluster` (auth, one social) on PostgreSQL, RabbitMQ and Redis
through a proxy that cuts and refuses the instance's subscription connection.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from agora.runtime.cluster import Cluster
from tests.e2e.gateway import Socket, cluster, require_nginx, ticket
from tests.e2e.processes import deployment, login, register
from tests.e2e.stalled_redis import StalledRedis
from tests.support.services import require_rabbitmq, require_redis

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

DELIVERY_SECONDS = 3.0


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Cluster, StalledRedis]]:
    redis_url, amqp_url = require_redis(), require_rabbitmq()
    require_nginx()
    root = tmp_path_factory.mktemp("e2e-chat-ack")
    counts = {"auth": 1, "publications": 0, "social": 1, "messaging": 0}
    with (
        StalledRedis(redis_url).running() as redis,
        deployment(root, redis_url=redis.url, amqp_url=amqp_url) as services,
        # The chat's reach (shared conversations) is not what this tests: anyone.
        cluster(services, counts, AGORA_SOCIAL_CHAT_REACH="anyone") as started,
    ):
        yield started, redis


@pytest.fixture
async def client(deployed: tuple[Cluster, StalledRedis]) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=deployed[0].url, timeout=10) as http:
        yield http


async def chats_of(socket: Socket, seconds: float) -> list[str]:
    """The contents of the chats `socket` receives within `seconds`."""
    got: list[str] = []
    while True:
        try:
            frame = await socket.receive(timeout=seconds)
        except TimeoutError:
            return got
        if frame.get("type") == "chat":
            got.append(frame["content"])


async def test_no_ack_for_a_chat_this_instance_cannot_deliver(
    deployed: tuple[Cluster, StalledRedis], client: httpx.AsyncClient
) -> None:
    started, redis = deployed
    alice_user, bob_user = await register(client, "acka"), await register(client, "ackb")
    alice_ticket = await ticket(client, await login(client, alice_user))
    bob_ticket = await ticket(client, await login(client, bob_user))
    async with (
        await Socket.open(started.ws_url, alice_ticket) as alice,
        await Socket.open(started.ws_url, bob_ticket) as bob,
    ):
        await alice.receive_type("connected")
        await bob.receive_type("connected")

        async def send(content: str) -> dict[str, object]:
            await alice.send({"type": "chat", "to": bob_user["id"], "content": content,
                              "id": content})  # fmt: skip
            while True:
                frame = await alice.receive()
                if frame.get("type") in ("ack", "error"):
                    return frame

        assert (await send("before"))["type"] == "ack"
        assert await chats_of(bob, DELIVERY_SECONDS) == ["before"]

        redis.deafen()  # the instance's subscription drops and cannot come back
        await asyncio.sleep(0.5)
        answers = {f"during {n}": await send(f"during {n}") for n in range(5)}
        delivered = await chats_of(bob, DELIVERY_SECONDS)
        acked = [content for content, frame in answers.items() if frame["type"] == "ack"]
        assert acked == delivered, (answers, delivered)  # an ack means delivered
        refused = [frame for frame in answers.values() if frame["type"] == "error"]
        assert refused, answers
        assert all(frame.get("retry") is True for frame in refused), refused

        redis.undeafen()  # back: the client's retry goes through

        async def retried() -> bool:
            return (await send("retried"))["type"] == "ack"

        for _ in range(50):
            if await retried():
                break
            await asyncio.sleep(0.1)
        assert "retried" in await chats_of(bob, DELIVERY_SECONDS)
