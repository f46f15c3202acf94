"""The users of a SIGKILLed social instance show offline within the presence TTL plus
the recheck interval (issue 15 §8, docs/operations.md): real `agora cluster` processes,
two social instances on Redis, one of them killed with a user online."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from agora.runtime.cluster import Cluster
from tests.e2e.gateway import Socket, cluster, require_nginx, ticket
from tests.e2e.processes import Deployment, deployment, login, register
from tests.support.services import require_rabbitmq, require_redis

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

TTL = 6.0  # AGORA_PRESENCE_TTL
RECHECK = 3.0  # AGORA_PRESENCE_RECHECK_INTERVAL
SLACK = 4.0  # a loaded machine's scheduling, the frame's way to the client


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Deployment, Cluster]]:
    redis_url, amqp_url = require_redis(), require_rabbitmq()
    require_nginx()
    root = tmp_path_factory.mktemp("e2e-ghost")
    env = {
        "AGORA_PRESENCE_TTL": str(TTL),
        "AGORA_PRESENCE_RECHECK_INTERVAL": str(RECHECK),
        "AGORA_SOCIAL_CHAT_REACH": "anyone",  # presence.query's reach is not what this tests
    }
    counts = {"auth": 1, "publications": 0, "social": 2, "messaging": 0}
    with (
        deployment(root, redis_url=redis_url, amqp_url=amqp_url) as services,
        cluster(services, counts, **env) as started,
    ):
        yield services, started


@pytest.fixture
async def client(deployed: tuple[Deployment, Cluster]) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=deployed[1].url, timeout=10) as http:
        yield http


async def test_a_killed_instances_users_show_offline_within_ttl_plus_recheck(
    deployed: tuple[Deployment, Cluster], client: httpx.AsyncClient
) -> None:
    _, started = deployed
    watcher_user, ghost_user = await register(client, "watch"), await register(client, "ghost")
    watcher_ticket = await ticket(client, await login(client, watcher_user))
    ghost_ticket = await ticket(client, await login(client, ghost_user))
    survivor, doomed = started.instances["social.1"], started.instances["social.2"]
    ghost = await Socket.open(doomed.url.replace("http://", "ws://", 1), ghost_ticket)
    async with await Socket.open(
        survivor.url.replace("http://", "ws://", 1), watcher_ticket
    ) as watcher:
        await watcher.receive_type("connected")
        await ghost.receive_type("connected")
        await watcher.send({"type": "presence.watch", "users": [ghost_user["id"]]})
        online = (await watcher.receive_type("presence"))["online"]
        if online != [ghost_user["id"]]:
            # The welcome is queued before the device's presence is written (it must come
            # before any delivery), so "connected" can precede the write by a moment; the
            # watch is registered before its query, so the join then reaches the watcher.
            joined = await watcher.receive_type("presence.join", timeout=5)
            assert joined["userId"] == ghost_user["id"]
        assert doomed.process is not None
        doomed.process.kill()  # SIGKILL: no leave, no close
        killed_at = time.monotonic()
        left = await watcher.receive_type("presence.leave", timeout=TTL + RECHECK + SLACK + 5)
        elapsed = time.monotonic() - killed_at
        assert left["userId"] == ghost_user["id"]
        print(f"\nghost presence lasted {elapsed:.1f} s (bound {TTL + RECHECK:.0f} s + slack)")
        assert elapsed <= TTL + RECHECK + SLACK, elapsed
