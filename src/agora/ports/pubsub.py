"""Pub/sub port: fire-and-forget fan-out between the instances of a service.

Used by the real-time sockets: a message for a user is published on that user's
channel, and every instance with a device of that user subscribed delivers it.
Nothing is stored: a message published while nobody listens is gone (the durable
paths are the database and the bus).

Backends: `adapters.memory_pubsub.MemoryPubSub` (embedded, one process) and
`adapters.redis_pubsub.RedisPubSub` (Redis PUBLISH/SUBSCRIBE on one connection per
instance, resubscribing after a reconnect).

Subscriptions are wanted state, not a transaction: `subscribe`/`unsubscribe` never fail
because the backend is down; the backend subscribes again when it is back (messages
published meanwhile are lost). `publish` does fail, with `PubSubUnavailable`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

MessageHandler = Callable[[str, bytes], Awaitable[None]]


class PubSubUnavailable(Exception):
    """The backend could not be reached in time; the message may not have gone out."""


class PubSub(Protocol):
    async def start(self, handler: MessageHandler) -> None:
        """Begin listening; `handler(channel, message)` is called for every message on a
        subscribed channel, one at a time per instance, in publish order per channel.

        The handler should be quick (hand the message over, do not wait on a client):
        while it runs, nothing else is read. An exception it raises is logged and the
        next message is delivered."""

    async def publish(self, channel: str, message: bytes) -> None:
        """Send to every instance subscribed to `channel` (this one included).

        Raises `PubSubUnavailable` when the backend cannot be reached."""

    async def publish_many(self, messages: Sequence[tuple[str, bytes]]) -> None:
        """`publish` for each (channel, message), in order, in one round trip: a message
        to the 50 members of a conversation is one call, not 50.

        Raises `PubSubUnavailable` when the backend cannot be reached (some may have
        gone out)."""

    def listening(self) -> bool:
        """Whether this instance hears its subscriptions now: False while its connection
        to the backend is down or being made again, when a message published (even by
        this instance) is not delivered here."""

    async def subscribe(self, *channels: str) -> None:
        """Idempotent; a channel subscribed twice is delivered once. Once it returns (the
        backend being up), a message published on the channel anywhere is delivered."""

    async def unsubscribe(self, *channels: str) -> None:
        """Not counted: one call ends the subscription, however many `subscribe` calls
        made it. Nothing published on the channel after it returns is delivered."""

    async def close(self) -> None: ...
