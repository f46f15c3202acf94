"""Connections the server decided to end are gone, whatever the peer does (issue 15 §1:
a slow consumer cut, a missed pong), and nginx, not an instance, closes idle upstream
connections (issue 15 §7).

Real processes: `agora cluster` (one auth, one social) behind nginx on PostgreSQL,
Redis and RabbitMQ; the kernel's TCP table (/proc/net/tcp) says which connections exist.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from agora.runtime import nginx
from agora.runtime.cluster import Cluster
from tests.e2e.connections import DeafSocket, tcp_table
from tests.e2e.gateway import WS_PATH, Socket, cluster, require_nginx, ticket
from tests.e2e.processes import Deployment, deployment, login, register, wait_until
from tests.support.services import require_rabbitmq, require_redis

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

CLOSE_GRACE = 1.0  # AGORA_WS_CLOSE_GRACE of the instances below
CHAT_CHARS = 60_000  # big chats fill the deaf client's buffers in a few dozen frames
TIME_WAIT = "06"
# The pinging deployment's AGORA_WS_PING_INTERVAL / _TIMEOUT: the server gives up on a
# socket that has not answered its ping PING_INTERVAL + PING_TIMEOUT after it opened.
PING_INTERVAL, PING_TIMEOUT = 2.0, 8.0
FLOOD_BYTES = 7 * 1024 * 1024  # past the kernel's 4 MB send buffer: the transport holds the rest


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Deployment, Cluster]]:
    redis_url, amqp_url = require_redis(), require_rabbitmq()
    require_nginx()
    root = tmp_path_factory.mktemp("e2e-connections")
    env = {
        "AGORA_WS_CLOSE_GRACE": str(CLOSE_GRACE),
        "AGORA_WS_OUTBOUND_QUEUE_BYTES": "200000",
        "AGORA_SOCIAL_MAX_CONTENT_CHARS": str(CHAT_CHARS),
        "AGORA_SOCIAL_MESSAGES_PER_WINDOW": "100000",
        "AGORA_SOCIAL_CHAT_REACH": "anyone",  # the reach is not what this tests
    }
    with deployment(root, redis_url=redis_url, amqp_url=amqp_url) as services:
        counts = {"auth": 1, "publications": 0, "social": 1, "messaging": 0}
        with cluster(services, counts, **env) as started:
            yield services, started


@pytest.fixture(scope="module")
def pinging(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """Social with short protocol pings, and a queue that never cuts a slow consumer."""
    redis_url, amqp_url = require_redis(), require_rabbitmq()
    root = tmp_path_factory.mktemp("e2e-pings")
    env = {
        "AGORA_WS_CLOSE_GRACE": str(CLOSE_GRACE),
        "AGORA_WS_PING_INTERVAL": str(PING_INTERVAL),
        "AGORA_WS_PING_TIMEOUT": str(PING_TIMEOUT),
        "AGORA_WS_OUTBOUND_QUEUE_BYTES": str(32 * 1024 * 1024),
        "AGORA_SOCIAL_MAX_CONTENT_CHARS": str(CHAT_CHARS),
        "AGORA_SOCIAL_MESSAGES_PER_WINDOW": "100000",
        "AGORA_SOCIAL_CHAT_REACH": "anyone",
    }
    with deployment(root, redis_url=redis_url, amqp_url=amqp_url) as services:
        counts = {"auth": 1, "publications": 0, "social": 1, "messaging": 0}
        with cluster(services, counts, **env) as started:
            yield started


@pytest.fixture
def gateway(deployed: tuple[Deployment, Cluster]) -> Cluster:
    return deployed[1]


@pytest.fixture
async def client(gateway: Cluster) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=gateway.url, timeout=10) as http:
        yield http


async def test_a_cut_slow_consumer_loses_its_tcp_connection(
    gateway: Cluster, client: httpx.AsyncClient
) -> None:
    """A client that reads nothing is cut as a slow consumer; its connection (the
    server's descriptor and kernel buffer) is gone within the close grace, twice over."""
    social = gateway.of("social")[0]
    deaf_user, talker_user = await register(client, "deaf"), await register(client, "talk")
    deaf_ticket = await ticket(client, await login(client, deaf_user))
    talker_ticket = await ticket(client, await login(client, talker_user))
    deaf = DeafSocket(social.port, f"{WS_PATH}?token={deaf_ticket}")
    try:
        assert deaf.status_line.endswith("101 Switching Protocols"), deaf.status_line
        assert deaf.server_states() == ["ESTABLISHED"]
        ws_base = social.url.replace("http://", "ws://", 1)
        async with await Socket.open(ws_base, talker_ticket) as talker:
            await talker.receive_type("connected")
            chat = {"type": "chat", "to": deaf_user["id"], "content": "x" * CHAT_CHARS}
            # Chats until the server cuts the deaf client (it leaves presence once its
            # close has had its grace): its kernel buffers, then its queue, fill up.
            # A fast machine sends them all before the cut client's close grace is over:
            # then it leaves presence a little later, so that is waited for too.
            for _ in range(200):
                await talker.send(chat)
                await talker.receive_type("ack")
                if not await _online(talker, deaf_user["id"]):
                    break

            async def left_presence() -> bool:
                return not await _online(talker, deaf_user["id"])

            await wait_until(left_presence, timeout=2 * CLOSE_GRACE + 8,
                             what="the deaf client cut as a slow consumer")  # fmt: skip
            cut_at = time.monotonic()

        async def gone() -> bool:
            return not deaf.server_states()

        # The app's close grace, then the transport's abort grace; the rest is slack for
        # a loaded machine. Without the abort, it stays ESTABLISHED for minutes.
        bound = 2 * CLOSE_GRACE + 8
        await wait_until(gone, timeout=bound, what="the server's end of the cut connection",
                         logs=lambda: f"server end: {deaf.server_states()}")  # fmt: skip
        elapsed = time.monotonic() - cut_at
        assert elapsed < bound
        # The client side sees the connection reset, not a connection left open.
        assert deaf.read_to_end() == "reset"
    finally:
        deaf.close()


async def _online(talker: Socket, user_id: str) -> bool:
    """True while the recipient is online (social's presence answer)."""
    await talker.send({"type": "presence.query", "users": [user_id]})
    frame = await talker.receive_type("presence")
    return user_id in frame.get("online", [])


async def test_nginx_closes_idle_upstream_connections_before_the_instance_does(
    gateway: Cluster, client: httpx.AsyncClient
) -> None:
    """An idle keep-alive connection between nginx and an instance is closed by nginx
    (its end goes to TIME_WAIT), before uvicorn's keep-alive would: a request nginx sends
    on it can never meet the instance's close (a 502 on a POST)."""
    config = nginx.render()
    timeouts = {float(value) for value in re.findall(r"keepalive_timeout\s+(\d+)s;", config)}
    assert timeouts and max(timeouts) < nginx.APP_KEEP_ALIVE_SECONDS, timeouts
    auth = gateway.of("auth")[0]
    before = _time_waits(auth.port)
    response = await client.get("/auth/.well-known/jwks.json")
    assert response.status_code == 200, response.text

    async def closed() -> tuple[set[int], set[int]] | None:
        nginx_side, instance_side = _time_waits(auth.port)
        nginx_side, instance_side = nginx_side - before[0], instance_side - before[1]
        return (nginx_side, instance_side) if nginx_side or instance_side else None

    nginx_side, instance_side = await wait_until(
        closed, timeout=nginx.APP_KEEP_ALIVE_SECONDS + 10, what="the idle upstream closed"
    )
    assert nginx_side and not instance_side, (nginx_side, instance_side)


def _time_waits(port: int) -> tuple[set[int], set[int]]:
    """Connections to `port` in TIME_WAIT: (peer ports whose end closed first = the
    client's end, i.e. nginx closed; peer ports where the instance's end did)."""
    table = tcp_table()
    nginx_side = {e.local_port for e in table if e.remote_port == port and e.state == TIME_WAIT}
    instance_side = {e.remote_port for e in table if e.local_port == port and e.state == TIME_WAIT}
    return nginx_side, instance_side


async def test_a_client_that_never_answers_pings_loses_its_tcp_connection(
    pinging: Cluster,
) -> None:
    """A client that stops reading (so answers no ping) with the server's data in flight:
    the missed pong ends the socket, and the connection is aborted within the close grace
    of that decision. The window is shut only after the ping went out, so the kernel's
    TCP_USER_TIMEOUT (ping interval + timeout of a shut window) cannot be what ends it
    within the bound; without the abort, the close waits behind data the peer never takes."""
    async with httpx.AsyncClient(base_url=pinging.url, timeout=10) as client:
        deaf_user, talker_user = await register(client, "nopong"), await register(client, "flood")
        deaf_ticket = await ticket(client, await login(client, deaf_user))
        talker_ticket = await ticket(client, await login(client, talker_user))
    social = pinging.of("social")[0]
    deaf = DeafSocket(social.port, f"{WS_PATH}?token={deaf_ticket}")
    opened_at = time.monotonic()
    try:
        assert deaf.status_line.endswith("101 Switching Protocols"), deaf.status_line
        ws_base = social.url.replace("http://", "ws://", 1)
        async with await Socket.open(ws_base, talker_ticket) as talker:
            await talker.receive_type("connected")
            given_up = PING_INTERVAL + PING_TIMEOUT  # the pong's deadline, after the open
            # The ping went out long ago; the window is shut 2 s before its deadline.
            await asyncio.sleep(given_up - 2 - (time.monotonic() - opened_at))
            chat = {"type": "chat", "to": deaf_user["id"], "content": "x" * CHAT_CHARS}
            for _ in range(FLOOD_BYTES // CHAT_CHARS):
                await talker.send(chat)
                await talker.receive_type("ack")
            flooded_after = time.monotonic() - opened_at
            assert deaf.server_states() == ["ESTABLISHED"]

            async def gone() -> bool:
                return not deaf.server_states()

            # The abort comes CLOSE_GRACE after the missed pong; the kernel's user timeout
            # (a shut window for ping interval + timeout) could not come before
            # flooded_after + that, well past the bound.
            bound = given_up + CLOSE_GRACE + 3
            await wait_until(gone, timeout=bound + 30, what="the server's end of the socket",
                             logs=lambda: f"server end: {deaf.server_states()}")  # fmt: skip
            elapsed = time.monotonic() - opened_at
        print(
            f"\nflooded {flooded_after:.1f} s after the open; connection gone after "
            f"{elapsed:.1f} s (pong deadline {given_up:.0f} s, bound {bound:.0f} s)"
        )
        assert elapsed < bound, elapsed
        assert deaf.read_to_end() == "reset"
    finally:
        deaf.close()
