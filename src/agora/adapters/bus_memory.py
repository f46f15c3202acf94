"""The embedded bus: an in-process topic exchange feeding one queue.

Same contract as the RabbitMQ backend (see `ports.bus`): ack on return, dead-letter on
PoisonMessage, requeue with a delay on any other error, handlers run concurrently up to
`prefetch`, and an unroutable publish raises PublishFailed. One node only: messages in
flight live in memory, so the outbox (which marks an event sent only after `publish`
returns) is what keeps events across a crash of the whole process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from dataclasses import replace

from agora.ports.bus import DeadLetter, Delivery, Handler, PoisonMessage, PublishFailed, Topology

__all__ = ["DeadLetter", "MemoryBus", "topic_matches"]

log = logging.getLogger("agora.bus.memory")

RETRY_DELAY = 0.5
CLOSE_GRACE = 5.0


def topic_matches(pattern: str, routing_key: str) -> bool:
    """AMQP topic matching: `*` is one word, `#` zero or more."""
    words = [
        r"[^.]+" if w == "*" else r".*" if w == "#" else re.escape(w) for w in pattern.split(".")
    ]
    regex = r"\.".join(words).replace(r".*\.", r"(?:.*\.)?").replace(r"\..*", r"(?:\..*)?")
    return re.fullmatch(regex, routing_key) is not None


class MemoryBus:
    def __init__(self, topology: Topology | None = None) -> None:
        self.topology = topology or Topology()
        self._queue: asyncio.Queue[Delivery] = asyncio.Queue()
        self._dead_letters: list[DeadLetter] = []
        self._consumer: asyncio.Task[None] | None = None
        self._handling: set[asyncio.Task[None]] = set()
        self._retries: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        return None

    async def publish(self, routing_key: str, body: bytes, *, message_id: str) -> None:
        if not any(topic_matches(p, routing_key) for p in self.topology.routing_keys):
            # Like RabbitMQ's mandatory flag: the caller keeps an event nobody would get.
            raise PublishFailed(f"no queue is bound to {routing_key!r}")
        self._queue.put_nowait(Delivery(body, routing_key, message_id))

    async def consume(self, handler: Handler, *, prefetch: int = 100) -> None:
        if self._consumer is not None:
            raise RuntimeError("the memory bus has one consumer")
        self._consumer = asyncio.create_task(
            self._run(handler, asyncio.Semaphore(prefetch)), name="memory-bus-consumer"
        )

    async def ping(self) -> None:
        return None  # in this process: always there

    @property
    def consuming(self) -> bool:
        return self._consumer is not None and not self._consumer.done()

    def pending(self) -> int:
        return self._queue.qsize() + len(self._retries) + len(self._handling)

    async def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        return self._dead_letters[:limit]

    async def _run(self, handler: Handler, slots: asyncio.Semaphore) -> None:
        while True:
            await slots.acquire()
            delivery = await self._queue.get()
            task = asyncio.create_task(self._handle(handler, delivery))
            self._handling.add(task)
            task.add_done_callback(self._handling.discard)
            task.add_done_callback(lambda _: slots.release())

    async def _handle(self, handler: Handler, delivery: Delivery) -> None:
        try:
            await handler(delivery)
        except PoisonMessage as exc:
            log.warning("dead-lettered", extra={"reason": str(exc)})
            self._dead_letters.append(DeadLetter(delivery, str(exc)))
        except asyncio.CancelledError:
            # Closed mid-handler: keep the message, as a broker would requeue it.
            self._queue.put_nowait(replace(delivery, redelivered=True))
            raise
        except Exception:
            log.exception("handler failed; message requeued")
            self._requeue_later(replace(delivery, redelivered=True))
        finally:
            self._queue.task_done()

    def _requeue_later(self, delivery: Delivery) -> None:
        async def later() -> None:
            try:
                await asyncio.sleep(RETRY_DELAY)
            finally:  # also on close: the message waits for the next consumer
                self._queue.put_nowait(delivery)

        task = asyncio.create_task(later())
        self._retries.add(task)
        task.add_done_callback(self._retries.discard)

    async def close(self) -> None:
        """Stop taking messages, give running handlers a grace period, keep the rest."""
        if self._consumer is not None:
            self._consumer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._consumer
            self._consumer = None
        if self._handling:
            await asyncio.wait(self._handling, timeout=CLOSE_GRACE)
        for task in (*self._handling, *self._retries):
            task.cancel()
        await asyncio.gather(*self._handling, *self._retries, return_exceptions=True)
