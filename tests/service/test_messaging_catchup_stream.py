"""Streamed catch-ups (issue 13, docs/messaging.md §3.4): 1,000 missed messages of 1,000
characters come over the socket behind the join reply, in order, however large, with the
outbound queue's back-pressure; pushes sent meanwhile come after the stream's `sync:done`,
and a client that did not ask for the stream sees the reply it always had."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
import pytest_asyncio
from websockets.asyncio.client import connect

from tests.service.messaging_sockets import (
    direct,
    error_of,
    messaging_settings,
    open_device,
    rest_send,
    topic,
    ws_base,
)
from tests.service.social_harness import Client, Server, start
from tests.support.messaging_client import SOCKET_PATH

# One server and one filled conversation for the module: filling it is the slow part.
pytestmark = [pytest.mark.timeout(180), pytest.mark.asyncio(loop_scope="module")]

MISSED = 1000
CHARS = 1000
QUEUE_BYTES = 1_048_576  # the default outbound queue: 1,000 x 1,000 characters is more


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Server]:
    settings = messaging_settings(
        tmp_path_factory.mktemp("catchup"),
        messaging_sync_max_messages=MISSED,
        messaging_messages_per_hour=100_000,
        messaging_messages_per_ip_per_hour=100_000,
        ws_outbound_queue_bytes=QUEUE_BYTES,
    )
    async with start(settings) as running:
        yield running


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def missed(server: Server) -> tuple[Client, Client, str, list[dict[str, Any]]]:
    """Alice sent bob 1,000 messages of 1,000 characters while he was away."""
    alice, bob = await server.user(), await server.user()
    conversation_id = await direct(alice, bob)
    limit = asyncio.Semaphore(8)

    async def one(n: int) -> dict[str, Any]:
        async with limit:
            text = f"{n:05d} " + "x" * (CHARS - 6)
            body: dict[str, Any] = (await rest_send(alice, conversation_id, f"m{n}", text))[
                "message"
            ]
            return body

    sent = await asyncio.gather(*(one(n) for n in range(MISSED)))
    return alice, bob, conversation_id, sorted(sent, key=lambda m: m["seq"])


def recovered(reply: dict[str, Any], batches: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [*reply["messages"], *(m for batch in batches for m in batch["payload"]["messages"])]


async def test_a_thousand_long_messages_are_streamed_in_order(
    server: Server, missed: tuple[Client, Client, str, list[dict[str, Any]]]
) -> None:
    _, bob, conversation_id, sent = missed
    size = len(orjson.dumps(sent))
    assert size > QUEUE_BYTES  # one reply could not hold them: the old cap said recovered false
    device = await open_device(bob)
    user_topic = f"user:{bob.user_id}"
    reply = await device.join(
        user_topic, {"stream": True, "conversations": {conversation_id: {"last_seq": 0}}}
    )
    catchup = reply["conversations"][conversation_id]
    assert catchup["recovered"] is True and catchup["streamed"] == MISSED
    assert catchup["last_seq"] == MISSED
    done = await device.expect("sync:done", topic=user_topic, timeout=60)
    assert done["payload"] == {
        "conversation_id": conversation_id,
        "streamed": MISSED,
        "last_seq": MISSED,
        "last_version": catchup["last_version"],
    }
    batches = device.pushes("sync:batch", topic=user_topic)
    assert len(batches) > 1
    assert all(b["payload"]["conversation_id"] == conversation_id for b in batches)
    # Each frame is bounded: a quarter of the queue at most, here 64 KiB.
    assert max(len(orjson.dumps(b)) for b in batches) <= 64 * 1024 + 200
    got = recovered(catchup, batches)
    assert [m["seq"] for m in got] == list(range(1, MISSED + 1))
    assert got == sent  # every message whole, text included
    # The same on a conversation topic.
    again = await device.join(topic(conversation_id), {"last_seq": 0, "stream": True})
    assert again["streamed"] == MISSED and again["messages"] == []
    await device.expect("sync:done", topic=topic(conversation_id), timeout=60)
    batches = device.pushes("sync:batch", topic=topic(conversation_id))
    assert [m["seq"] for m in recovered(again, batches)] == list(range(1, MISSED + 1))
    await device.close()


async def test_without_stream_the_reply_is_what_it_was(
    server: Server, missed: tuple[Client, Client, str, list[dict[str, Any]]]
) -> None:
    """A client that does not ask for the stream gets the one reply it always had:
    too large a catch-up is `recovered: false` (page over REST), and nothing follows."""
    _, bob, conversation_id, sent = missed
    device = await open_device(bob)
    reply = await device.join(topic(conversation_id), {"last_seq": 0})
    assert reply["recovered"] is False and reply["messages"] == [] and "streamed" not in reply
    small = await device.join(topic(conversation_id), {"last_seq": MISSED - 3})
    assert [m["seq"] for m in small["messages"]] == [MISSED - 2, MISSED - 1, MISSED]
    # A small catch-up asked for as a stream still comes whole in the reply.
    streamed = await device.join(topic(conversation_id), {"last_seq": MISSED - 3, "stream": True})
    assert streamed["messages"] == small["messages"] and "streamed" not in streamed
    await device.expect_none("sync:batch", within=0.3)
    bad = await error_of(device, topic(conversation_id), "phx_join", {"stream": "yes"})
    assert bad["fields"] == {"stream": "stream is true or false"}
    await device.close()
    assert sent


async def slow_reader(base_url: str, ticket: str) -> Any:
    """A raw socket with a small receive buffer, set before it connects: what the server
    queues waits in its own outbound queue instead of the kernel's."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    host, port = base_url.removeprefix("http://").split(":")
    sock.connect((host, int(port)))
    return await connect(
        f"{ws_base(base_url)}{SOCKET_PATH}?token={ticket}", sock=sock, max_queue=2, proxy=None
    )


async def test_messages_sent_during_the_stream_come_after_it(
    server: Server, missed: tuple[Client, Client, str, list[dict[str, Any]]]
) -> None:
    """The rule: from the join on, pushes wait behind the catch-up; each comes once after
    the last `sync:done`, in the order sent. A message both in the catch-up and pushed
    (stored while the catch-up was read) is the same version twice: the client drops it."""
    alice, bob, conversation_id, sent = missed
    user_topic = f"user:{bob.user_id}"
    ws = await slow_reader(server.base_url, await bob.ticket())
    frames: list[dict[str, Any]] = []
    done_at: list[float] = []
    replied = asyncio.Event()
    join = {"stream": True, "conversations": {conversation_id: {"last_seq": 0}}}
    frame = {"topic": user_topic, "event": "phx_join", "ref": "1", "payload": join}
    await ws.send(orjson.dumps(frame).decode())

    async def read() -> None:
        async for raw in ws:
            frame = orjson.loads(raw)
            assert "event" in frame, frame  # an error frame: the socket is being closed
            frames.append(frame)
            if frame["event"] == "phx_reply":
                replied.set()
            if frame["event"] == "sync:batch":
                await asyncio.sleep(0.02)  # a slow phone: the stream waits for it
            if frame["event"] == "sync:done":
                done_at.append(time.monotonic())
            if frame["event"] == "message:new" and frame["payload"]["text"] == "live 19":
                return

    reader = asyncio.create_task(read())
    # Sent once the catch-up is read: a message stored before would make it 1,001, over
    # messaging_sync_max_messages (recovered: false, by design).
    await asyncio.wait_for(replied.wait(), 30)
    stored_at: list[float] = []
    live = []
    for n in range(20):  # while the stream is under way
        live.append((await rest_send(alice, conversation_id, f"live{n}", f"live {n}"))["message"])
        stored_at.append(time.monotonic())
    await asyncio.wait_for(reader, 60)
    await ws.close()
    assert done_at, "no sync:done"
    assert stored_at[0] < done_at[0], "the live messages were all sent after the stream"
    events = [f["event"] for f in frames if f["topic"] == user_topic]
    assert events[0] == "phx_reply"
    done = events.index("sync:done")
    assert "message:new" not in events[:done]  # nothing live in the middle of the stream
    assert set(events[1:done]) <= {"sync:batch", "presence_state", "presence_diff"}
    answer = next(f for f in frames if f["event"] == "phx_reply")
    reply = answer["payload"]["response"]["conversations"][conversation_id]
    batches = [f for f in frames if f["event"] == "sync:batch"]
    pushed = [f["payload"] for f in frames if f["event"] == "message:new"]
    assert [m["text"] for m in pushed][-20:] == [m["text"] for m in live]
    # Applied by version, as a client does: every message once, seqs without a gap.
    kept: dict[int, dict[str, Any]] = {}
    for message in [*recovered(reply, batches), *pushed]:
        kept.setdefault(message["version"], message)
    assert sorted(m["seq"] for m in kept.values()) == list(range(1, len(sent) + 21))
