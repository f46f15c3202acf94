"""A SIGTERM answers the socket requests the instance has read before it closes
(issue 15 §6, docs/operations.md): real `agora cluster` processes on PostgreSQL, Redis
and RabbitMQ; devices send messages back to back, several in flight each, and their
instance is stopped under that load. What the database holds afterwards is exactly what
was acknowledged: no send stored without its reply, none acknowledged and lost. The
social socket the same way: every chat its recipient (on another instance) got was
acknowledged to its sender, and every acknowledged chat reached the recipient."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import signal
import time
from collections import deque
from collections.abc import AsyncIterator, Iterator

import httpx
import orjson
import pytest
from websockets.exceptions import ConnectionClosed

from agora.runtime.cluster import Cluster
from tests.e2e.gateway import Socket, cluster, require_nginx, ticket
from tests.e2e.messaging_deployment import Person, device, direct_conversation, person
from tests.e2e.processes import Deployment, deployment, login, register, wait_until
from tests.support.messaging_client import Device
from tests.support.services import require_rabbitmq, require_redis

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(150)]

GRACE = 2.0  # AGORA_WS_CLOSE_GRACE (the default)
SENDERS = 6
IN_FLIGHT = 4  # requests each device has sent and not yet seen answered
SLACK = 6.0  # the lifespan's shutdown, the interpreter's exit, a loaded machine


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Deployment, Cluster]]:
    redis_url, amqp_url = require_redis(), require_rabbitmq()
    require_nginx()
    root = tmp_path_factory.mktemp("e2e-shutdown")
    env = {
        "AGORA_WS_CLOSE_GRACE": str(GRACE),
        "AGORA_SOCIAL_CHAT_REACH": "anyone",  # the reach is not what this tests
    }
    counts = {"auth": 1, "publications": 0, "social": 2, "messaging": 1}
    with (
        deployment(root, redis_url=redis_url, amqp_url=amqp_url) as services,
        cluster(services, counts, **env) as started,
    ):
        yield services, started


@pytest.fixture
async def client(deployed: tuple[Deployment, Cluster]) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=deployed[1].url, timeout=10) as http:
        yield http


@pytest.fixture
async def auth(deployed: tuple[Deployment, Cluster]) -> AsyncIterator[httpx.AsyncClient]:
    """The auth instance itself: a dozen logins in a few seconds are over nginx's login
    rate (1/s, burst 10), which is not what this tests."""
    async with httpx.AsyncClient(base_url=deployed[1].of("auth")[0].url, timeout=10) as http:
        yield http


async def test_sigterm_answers_every_send_it_stored(
    deployed: tuple[Deployment, Cluster], client: httpx.AsyncClient, auth: httpx.AsyncClient
) -> None:
    services, started = deployed
    instance = started.instances["messaging.1"]
    ws_base = instance.url.replace("http://", "ws://", 1)
    partner = await person(auth, "stop")
    people: list[Person] = [await person(auth, f"stop{n}") for n in range(SENDERS)]
    conversations = [await direct_conversation(client, who, partner) for who in people]
    devices: list[Device] = []
    for n, who in enumerate(people):
        devices.append(await device(client, who, ws_base, f"sender-{n}"))
        await devices[-1].join(f"conversation:{conversations[n]}")
    acknowledged: set[str] = set()
    refused: list[dict[str, object]] = []
    unanswered: list[str] = []  # sent, the socket closed before the reply
    counter = itertools.count()

    async def send_until_closed(sender: Device, topic: str) -> None:
        pending: deque[tuple[str, str]] = deque()
        while True:
            while not sender.closed.is_set() and len(pending) < IN_FLIGHT:
                client_id = f"{sender.name}-{next(counter)}"
                try:
                    ref = await sender.push(
                        topic, "message:send", {"client_id": client_id, "text": client_id}
                    )
                except ConnectionError:
                    break
                pending.append((client_id, ref))
            if not pending:
                return
            client_id, ref = pending.popleft()
            try:
                frame = await sender.reply(ref, timeout=3 * GRACE + SLACK)
            except ConnectionError:
                unanswered.append(client_id)  # closed before its answer: not stored
                continue
            if frame["payload"].get("status") == "ok":
                acknowledged.add(client_id)
            else:
                refused.append(frame["payload"])

    sending = [
        asyncio.create_task(send_until_closed(d, f"conversation:{c}"))
        for d, c in zip(devices, conversations, strict=True)
    ]

    async def busy() -> bool:
        return len(acknowledged) >= 80

    await wait_until(busy, timeout=30, what="80 acknowledged sends")
    instance.signal(signal.SIGTERM)
    stopped_at = time.monotonic()
    await asyncio.wait_for(asyncio.gather(*sending), timeout=2 * GRACE + SLACK + 5)
    assert instance.process is not None
    code = await asyncio.to_thread(instance.process.wait, 2 * GRACE + SLACK + 5)
    exited_after = time.monotonic() - stopped_at
    closes = sorted({d.connection.close_code for d in devices}, key=str)

    rows = await services.fetch(
        "SELECT client_id FROM msg_messages WHERE conversation_id = ANY($1::text[])",
        conversations,
    )
    stored = {row["client_id"] for row in rows}
    print(
        f"\n{len(acknowledged)} sends acknowledged, {len(unanswered)} unanswered, "
        f"{len(stored)} stored; process exited "
        f"{exited_after:.2f} s after SIGTERM (code {code}); closes {closes}"
    )
    assert not refused, refused
    assert unanswered, "no send was left in flight: the SIGTERM met no load"
    assert not sorted(stored - acknowledged), "stored, never acknowledged"
    assert not sorted(acknowledged - stored), "acknowledged, not stored"
    assert closes == [1012], closes
    # Answering what was read, then the close, each within the grace; then the lifespan.
    assert exited_after < 2 * GRACE + SLACK, exited_after
    instance.start()  # the cluster's instance back, as it found it

    async def serves() -> bool:
        return instance.answers()

    await wait_until(serves, timeout=20, what="messaging.1 back")


async def test_sigterm_acknowledges_every_chat_it_published(
    deployed: tuple[Deployment, Cluster], client: httpx.AsyncClient, auth: httpx.AsyncClient
) -> None:
    _, started = deployed
    stopping, staying = started.instances["social.2"], started.instances["social.1"]
    recipient_user = await register(auth, "hear")
    recipient_ticket = await ticket(client, await login(auth, recipient_user))
    senders = [await register(auth, f"chat{n}") for n in range(SENDERS)]
    tickets = [await ticket(client, await login(auth, user)) for user in senders]
    recipient = await Socket.open(staying.url.replace("http://", "ws://", 1), recipient_ticket)
    await recipient.receive_type("connected")
    sockets = [await Socket.open(stopping.url.replace("http://", "ws://", 1), t) for t in tickets]
    for sock in sockets:
        await sock.receive_type("connected")
    acknowledged: set[str] = set()
    received: set[str] = set()
    errors: list[dict[str, object]] = []
    counter = itertools.count()

    async def hear() -> None:
        with contextlib.suppress(ConnectionClosed):
            async for raw in recipient.connection:
                frame = orjson.loads(raw)
                if frame.get("type") == "chat":
                    received.add(frame["content"])

    async def chat_until_closed(sock: Socket, n: int) -> None:
        window = asyncio.Semaphore(IN_FLIGHT)

        async def answers() -> None:
            with contextlib.suppress(ConnectionClosed):
                async for raw in sock.connection:
                    frame = orjson.loads(raw)
                    if frame.get("type") == "ack":
                        acknowledged.add(frame["clientId"])
                        window.release()
                    elif frame.get("type") == "error" and frame.get("clientId"):
                        errors.append(frame)  # not the close's own error frame
                        window.release()

        reading = asyncio.create_task(answers())
        while not reading.done():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(window.acquire(), 0.5)
                client_id = f"chat{n}-{next(counter)}"
                frame = {"type": "chat", "to": recipient_user["id"], "content": client_id,
                         "id": client_id}  # fmt: skip
                try:
                    await sock.send(frame)
                except ConnectionClosed:
                    break
        await reading

    listening = asyncio.create_task(hear())
    chatting = [asyncio.create_task(chat_until_closed(s, n)) for n, s in enumerate(sockets)]

    async def busy() -> bool:
        return len(acknowledged) >= 80

    await wait_until(busy, timeout=30, what="80 acknowledged chats")
    stopping.signal(signal.SIGTERM)
    stopped_at = time.monotonic()
    await asyncio.wait_for(asyncio.gather(*chatting), timeout=2 * GRACE + SLACK + 5)
    assert stopping.process is not None
    await asyncio.to_thread(stopping.process.wait, 2 * GRACE + SLACK + 5)
    exited_after = time.monotonic() - stopped_at

    deadline = time.monotonic() + 5  # the bus's way to the other instance
    while not acknowledged <= received and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    await asyncio.sleep(0.5)  # a chat published but not acknowledged would be here now
    listening.cancel()
    await recipient.close()
    closes = sorted({s.connection.close_code for s in sockets}, key=str)
    print(
        f"\n{len(acknowledged)} chats acknowledged, {len(received)} delivered; process exited "
        f"{exited_after:.2f} s after SIGTERM; closes {closes}"
    )
    assert not errors, errors
    assert not sorted(received - acknowledged), "published, never acknowledged"
    assert not sorted(acknowledged - received), "acknowledged, never delivered"
    assert closes == [1012], closes
    assert exited_after < 2 * GRACE + SLACK, exited_after
    stopping.start()
