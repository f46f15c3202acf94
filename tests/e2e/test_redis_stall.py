"""A hung Redis (connections open, no answer: SIGSTOP) against real processes: each
request pays at most one Redis call budget, then the circuit breaker fails every Redis
call fast and each feature takes its degraded path (issue 15 §2, docs/operations.md).

`agora cluster` (auth, publications, messaging) behind nginx on PostgreSQL and RabbitMQ;
Redis through a proxy the test hangs.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from agora.adapters.redis_client import CALL_BUDGET
from agora.runtime.cluster import Cluster
from tests.e2e.gateway import cluster, require_nginx
from tests.e2e.messaging_deployment import direct_conversation, person, send_rest
from tests.e2e.processes import Deployment, bearer, deployment
from tests.e2e.stalled_redis import StalledRedis
from tests.support.services import require_rabbitmq, require_redis
from tests.support.users import PASSWORD

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

# One budget for the request that meets the hang (or a probe), and slack for a loaded
# machine. Without the breaker: a send took 10 s, a login 4 s (issue 15).
BOUND = CALL_BUDGET + 1.0


@pytest.fixture(scope="module")
def deployed(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Deployment, Cluster, StalledRedis]]:
    redis_url, amqp_url = require_redis(), require_rabbitmq()
    require_nginx()
    root = tmp_path_factory.mktemp("e2e-redis-stall")
    counts = {"auth": 1, "publications": 1, "social": 0, "messaging": 1}
    with (
        StalledRedis(redis_url).running() as redis,
        deployment(root, redis_url=redis.url, amqp_url=amqp_url) as services,
        cluster(services, counts) as started,
    ):
        yield services, started, redis


@pytest.fixture
async def client(
    deployed: tuple[Deployment, Cluster, StalledRedis],
) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=deployed[1].url, timeout=30) as http:
        yield http


async def timed(request: object) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = await request  # type: ignore[misc]
    return response, time.monotonic() - started


async def test_with_redis_hung_requests_take_at_most_one_budget(
    deployed: tuple[Deployment, Cluster, StalledRedis], client: httpx.AsyncClient
) -> None:
    services, _, redis = deployed
    alice, bob = await person(client, "stla"), await person(client, "stlb")
    conversation = await direct_conversation(client, alice, bob)
    await services.wait_status(alice.id, "connected")
    redis.hang()
    try:
        # Each process meets the hang once (one budget), whatever the request.
        for who in (alice, bob):
            await client.get("/api/publications", headers=bearer(who.token))
            await send_rest(client, who, conversation, f"warm-{who.id}", "warm")
        await client.post("/auth/api/login", json={"login": bob.login, "password": "wrong"})
        timings: dict[str, float] = {}
        for n in range(3):
            sent, timings[f"send {n}"] = await timed(
                send_rest(client, alice, conversation, f"stall-{n}", f"pendant le gel {n}")
            )
            assert sent.status_code == 201, sent.text  # stored; the push comes on catch-up
            read, timings[f"publications {n}"] = await timed(
                client.get("/api/publications", headers=bearer(alice.token))
            )
            assert read.status_code == 200, read.text  # status from the database
            logged, timings[f"login {n}"] = await timed(
                client.post("/auth/api/login", json={"login": alice.login, "password": PASSWORD})
            )
            assert logged.status_code == 200, logged.text  # throttled per process
            me, timings[f"me {n}"] = await timed(
                client.get("/auth/api/me", headers=bearer(alice.token))
            )
            assert me.status_code == 200, me.text  # revocation from the database
        slow = {what: round(seconds, 2) for what, seconds in timings.items() if seconds > BOUND}
        print("timings during the hang:", {k: round(v, 3) for k, v in timings.items()})
        assert not slow, slow
    finally:
        redis.release()
    # Back: the breakers' probes close them within a second or so.
    sent = await send_rest(client, bob, conversation, "after", "après")
    assert sent.status_code == 201, sent.text
