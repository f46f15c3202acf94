"""Bus port: publish events to a topic exchange and consume a queue bound to it.

Backends: `adapters.bus_memory.MemoryBus` (embedded: an in-process topic exchange with
the same ack/dead-letter semantics) and `adapters.bus_amqp.AmqpBus` (RabbitMQ via
aio-pika: durable topic exchange, quorum queue, dead-letter exchange and queue,
persistent messages, publisher confirms, manual acks, reconnection).

Handler contract (both backends):
- returns normally        -> the message is acked (only then);
- raises `PoisonMessage`  -> the message is dead-lettered with the reason, never retried;
- raises anything else    -> the message is requeued and redelivered later (transient
                             failure, e.g. database down), with `redelivered=True`.
Handlers for different messages run concurrently, up to `prefetch` at once, and a
message may be delivered more than once (dedupe on `message_id`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class Topology:
    exchange: str = "user.events"
    queue: str = "publications.user-events"
    routing_keys: tuple[str, ...] = ("user.connected", "user.disconnected")
    dead_letter_exchange: str = "user.events.dlx"
    dead_letter_queue: str = "publications.user-events.dlq"

    def suffixed(self, suffix: str) -> Topology:
        """The same topology under names of its own (tests, side-by-side deployments)."""
        return Topology(
            exchange=self.exchange + suffix,
            queue=self.queue + suffix,
            routing_keys=self.routing_keys,
            dead_letter_exchange=self.dead_letter_exchange + suffix,
            dead_letter_queue=self.dead_letter_queue + suffix,
        )


@dataclass(frozen=True)
class Delivery:
    body: bytes
    routing_key: str
    message_id: str | None = None
    redelivered: bool = False
    headers: dict[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class DeadLetter:
    """A message in the dead-letter queue and why it was put there."""

    delivery: Delivery
    reason: str


class PoisonMessage(Exception):
    """Raised by a handler for a message that can never be processed."""


Handler = Callable[[Delivery], Awaitable[None]]


class PublishFailed(Exception):
    """The broker did not confirm the message (nack, timeout, or unreachable)."""


class BusUnavailable(Exception):
    """The broker cannot be reached now (readiness: `Bus.ping`)."""


class Bus(Protocol):
    topology: Topology

    async def start(self) -> None:
        """Connect and declare the topology (idempotent)."""

    async def publish(self, routing_key: str, body: bytes, *, message_id: str) -> None:
        """Publish a persistent message and wait for the broker's confirm.

        Raises PublishFailed if it cannot be confirmed, including when no queue is
        bound to `routing_key` (an unroutable event would otherwise be lost); the
        caller (the outbox relay) keeps the event and tries again later.
        """

    async def consume(self, handler: Handler, *, prefetch: int = 100) -> None:
        """Start delivering the topology's queue to `handler` in the background."""

    async def ping(self) -> None:
        """Whether the broker answers now (readiness); raises `BusUnavailable` if not.
        The embedded bus always answers."""

    @property
    def consuming(self) -> bool:
        """True while the consumer given to `consume` is registered and its deliveries
        run (False before `consume`, after `close`, and if the consumer task died)."""

    async def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        """The oldest messages of the dead-letter queue, left in place (ops, tests)."""

    async def close(self) -> None: ...
