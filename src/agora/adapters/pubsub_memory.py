"""The embedded pub/sub: channels inside one process.

One node only: with a single instance every subscriber is local, so an in-process
queue gives the same delivery as Redis would. Messages are handed to the handler by
one task, in publish order, like a Redis subscription connection. A `publish_many` is
one item on the queue (a 50-member message is one hand-over, not 50).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from agora.core.background import cancel_and_wait
from agora.ports.pubsub import MessageHandler

log = logging.getLogger("agora.pubsub.memory")


class MemoryPubSub:
    def __init__(self) -> None:
        self._channels: set[str] = set()
        self._queue: asyncio.Queue[list[tuple[str, bytes]]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    async def start(self, handler: MessageHandler) -> None:
        if self._task is not None:
            raise RuntimeError("already started")
        self._task = asyncio.create_task(self._deliver(handler), name="memory-pubsub")

    async def _deliver(self, handler: MessageHandler) -> None:
        while True:
            for channel, message in await self._queue.get():
                try:
                    await handler(channel, message)
                except Exception:  # one bad message must not stop the others
                    log.exception("pub/sub handler failed on %s", channel)

    async def publish(self, channel: str, message: bytes) -> None:
        if channel in self._channels:
            self._queue.put_nowait([(channel, message)])

    async def publish_many(self, messages: Sequence[tuple[str, bytes]]) -> None:
        subscribed = [item for item in messages if item[0] in self._channels]
        if subscribed:
            self._queue.put_nowait(subscribed)

    async def subscribe(self, *channels: str) -> None:
        self._channels.update(channels)

    async def unsubscribe(self, *channels: str) -> None:
        self._channels.difference_update(channels)

    def listening(self) -> bool:
        return True  # in process: nothing to lose on the way

    async def close(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None
        self._channels.clear()
