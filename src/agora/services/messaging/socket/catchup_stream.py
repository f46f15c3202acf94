"""Catch-ups too large for one join reply, sent behind it (docs/messaging.md §3.4).

A join whose payload has `"stream": true` is answered at once; a catch-up that does not
fit in the reply comes after it on the same topic, in version order:

    phx_reply    {"conversation_id", "recovered": true, "messages": [], "streamed": 1000, ...}
    sync:batch   {"conversation_id", "messages": [...]}      (each at most `limit` bytes)
    ...
    sync:done    {"conversation_id", "streamed": 1000, "last_seq", "last_version"}

One batch is queued at a time, and the next waits until the socket's outbound queue has
drained (`Connection.drained`): the catch-up is bounded by messaging_sync_max_messages,
never by the queue. The joining socket's pushes are held meanwhile (the caller's
`Held`), and come after the last `sync:done`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import orjson

from agora.realtime.connection import Connection, frame_cost
from agora.services.messaging.domain import Catchup
from agora.services.messaging.socket.protocol import push, push_serialized

SYNC_BATCH = "sync:batch"
SYNC_DONE = "sync:done"
BATCH_BYTES = 64 * 1024  # one frame of a streamed catch-up, at most (unless one message is more)


def streamed_reply(catchup: Catchup) -> dict[str, Any]:
    """The reply's entry for a catch-up that follows it: where it will stand, how many."""
    body = dataclasses.replace(catchup, messages=[]).to_json()
    body["streamed"] = len(catchup.messages)
    return body


def fits(catchup: Catchup, budget: int) -> bool:
    """Whether `catchup`'s JSON takes at most `budget` bytes; reads no further than that."""
    size = len(orjson.dumps(dataclasses.replace(catchup, messages=[]).to_json()))
    for message in catchup.messages:
        size += len(orjson.dumps(message.to_json())) + 1
        if size > budget:
            return False
    return size <= budget


def batches(catchup: Catchup, limit: int) -> Iterator[str]:
    """The `sync:batch` payloads of `catchup`, serialized, each at most `limit` bytes
    as the queue counts them (`frame_cost`), and at least one message."""
    head = f'{{"conversation_id":{orjson.dumps(catchup.conversation_id).decode()},"messages":['
    parts: list[str] = []
    size = 0
    for message in catchup.messages:
        part = orjson.dumps(message.to_json()).decode()
        cost = frame_cost(part) + 1
        if parts and size + cost > limit:
            yield head + ",".join(parts) + "]}"
            parts, size = [], 0
        parts.append(part)
        size += cost
    if parts:
        yield head + ",".join(parts) + "]}"


async def stream(conn: Connection, topic: str, catchups: list[Catchup], limit: int) -> None:
    """Queue each catch-up's batches on `conn`, one at a time as the queue drains, then
    its `sync:done`; stops when the socket closes (the client rejoins with its cursor)."""
    for catchup in catchups:
        for payload in batches(catchup, limit):
            if not conn.send(push_serialized(topic, SYNC_BATCH, payload)):
                return
            await conn.drained()
        done = {
            "conversation_id": catchup.conversation_id,
            "streamed": len(catchup.messages),
            "last_seq": catchup.last_seq,
            "last_version": catchup.last_version,
        }
        if not conn.send(push(topic, SYNC_DONE, done)):
            return
