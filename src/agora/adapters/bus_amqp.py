"""The RabbitMQ bus (aio-pika): the `ports.bus` contract over a real broker.

Topology, declared idempotently at every (re)connection:

    exchange (topic, durable) --routing keys--> queue (quorum, durable)
                                                  | x-dead-letter-exchange
    dead-letter exchange (fanout, durable) -----> dead-letter queue (classic, durable)

Delivery guarantees: messages are persistent and published on a confirm channel with
`mandatory`, so `publish` returns only once the broker owns the message in a queue. A
lost confirm is retried, which can duplicate a message: consumers dedupe on
`message_id`. Consumers ack only after the handler returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aio_pika
import aiormq
from aio_pika.abc import (
    AbstractIncomingMessage,
    AbstractRobustChannel,
    AbstractRobustConnection,
    AbstractRobustExchange,
    AbstractRobustQueue,
)
from aio_pika.exceptions import CONNECTION_EXCEPTIONS, MessageProcessError
from yarl import URL

from agora.ports.bus import (
    BusUnavailable,
    DeadLetter,
    Delivery,
    Handler,
    PoisonMessage,
    PublishFailed,
    Topology,
)

log = logging.getLogger("agora.bus.amqp")

REASON_HEADER = "x-agora-reason"
CONNECT_TIMEOUT = 5.0
START_BACKOFF = (0.5, 30.0)  # first and longest pause between start attempts, seconds
REQUEUE_DELAY = (0.5, 30.0)  # same for a message whose handler failed
CLOSE_GRACE = 5.0
FAILURES = (*CONNECTION_EXCEPTIONS, TimeoutError)


@dataclass(frozen=True)
class TlsFiles:
    """PEM files for `amqps://`: the CA that signed the broker, our client cert and key."""

    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None

    def __bool__(self) -> bool:
        return any((self.ca_file, self.cert_file, self.key_file))

    def ssl_context(self) -> ssl.SSLContext:
        """Verifies the broker (system CAs unless `ca_file`); presents a client cert if set."""
        context = ssl.create_default_context(cafile=self.ca_file)
        if self.cert_file:
            context.load_cert_chain(self.cert_file, self.key_file)
        return context


class AmqpBus:
    def __init__(
        self,
        url: str,
        topology: Topology | None = None,
        *,
        tls: TlsFiles | None = None,
        publish_timeout: float = 5.0,
        publish_attempts: int = 4,
        reconnect_interval: float = 2.0,
    ) -> None:
        scheme = URL(url).scheme
        if tls and scheme != "amqps":
            # Certificates beside a plain URL mean credentials would cross the wire in clear.
            raise ValueError("AMQP TLS files are set but the URL is not amqps://")
        self.topology = topology or Topology()
        self._url = url
        self._tls = (tls or TlsFiles()) if scheme == "amqps" else None
        self._publish_timeout = publish_timeout
        self._publish_attempts = publish_attempts
        self._ssl: ssl.SSLContext | None = None
        self._reconnect_interval = reconnect_interval
        self._last_error = ""  # why the last connection attempt failed (for `ping`)
        self._reset()

    def _reset(self) -> None:
        self._connection: AbstractRobustConnection | None = None
        self._publisher: AbstractRobustChannel | None = None
        self._exchange: AbstractRobustExchange | None = None
        self._dead_letter_exchange: AbstractRobustExchange | None = None
        self._queue_arguments: dict[str, Any] = {}
        self._connected = asyncio.Event()
        self._connector: asyncio.Task[None] | None = None
        self._handler: Handler | None = None
        self._prefetch = 100
        self._consumer: tuple[AbstractRobustQueue, str] | None = None
        self._handling: set[asyncio.Task[Any]] = set()

    # --- connection ---------------------------------------------------------------

    async def start(self) -> None:
        """Connect and declare the topology; if the broker is down, keep trying in the
        background and return.

        Why not raise: a service must come up without its broker. Auth keeps accepting
        logins (events wait in the outbox), publications keeps answering from the
        database and cache, and both catch up once the broker is back. Each failed
        attempt is logged, and `publish` fails within its timeout meanwhile.
        """
        if self._connector is not None or self._connection is not None:
            return
        if self._tls is not None and self._ssl is None:
            # Unreadable certificates are a configuration error: fail now, not forever.
            self._ssl = await asyncio.to_thread(self._tls.ssl_context)
        try:
            await self._connect()
        except FAILURES as exc:
            self._last_error = repr(exc)
            log.warning("RabbitMQ unreachable at start, retrying in background: %r", exc)
            self._connector = asyncio.create_task(self._connect_in_background())

    async def _connect_in_background(self) -> None:
        pause, longest = START_BACKOFF
        while True:
            # Jitter keeps many instances from reconnecting in lockstep.
            await asyncio.sleep(pause * random.uniform(0.8, 1.2))  # noqa: S311
            try:
                await self._connect()
            except FAILURES as exc:
                self._last_error = repr(exc)
                log.warning("RabbitMQ still unreachable (next try in %.1fs): %r", pause, exc)
                pause = min(pause * 2, longest)
            else:
                log.info("RabbitMQ connected")
                self._connector = None
                return

    async def _connect(self) -> None:
        # After this first connection, aio-pika reconnects by itself every
        # reconnect_interval and restores channels, topology and consumers.
        connection = await aio_pika.connect_robust(
            self._url,
            ssl_context=self._ssl,
            timeout=CONNECT_TIMEOUT,
            reconnect_interval=self._reconnect_interval,
            client_properties={"connection_name": f"agora {self.topology.queue}"},
        )
        try:
            self._queue_arguments = await self._accepted_queue_arguments(connection)
            publisher = await connection.channel(publisher_confirms=True, on_return_raises=True)
            await self._declare(publisher)
            # Last await before the state is set: a `consume` that runs while we are
            # suspended above is seen here; one that runs later sees the connection.
            consumer = await self._subscribe(connection) if self._handler else None
        except BaseException:
            await connection.close()  # a failed attempt leaves nothing open behind it
            raise
        self._connection, self._publisher, self._consumer = connection, publisher, consumer
        self._connected.set()

    async def _accepted_queue_arguments(
        self, connection: AbstractRobustConnection
    ) -> dict[str, Any]:
        """Quorum where the broker supports it, else a classic durable queue.

        Tried on a throwaway low-level channel: a refused declaration closes the channel,
        and a robust channel would race to reopen itself underneath us.
        """
        classic: dict[str, Any] = {"x-dead-letter-exchange": self.topology.dead_letter_exchange}
        quorum = {**classic, "x-queue-type": "quorum"}
        assert connection.transport is not None
        probe = await connection.transport.connection.channel(publisher_confirms=False)
        try:
            await probe.queue_declare(self.topology.queue, durable=True, arguments=quorum)
            return quorum
        except aiormq.exceptions.ChannelClosed as exc:
            log.warning("broker refused a quorum queue, using a classic one: %r", exc)
            return classic
        finally:
            if not probe.is_closed:
                await probe.close()

    async def _declare(self, channel: AbstractRobustChannel) -> None:
        """The whole topology, by publishers too: with `mandatory`, a publish before the
        consumer ever started would otherwise be refused for want of a queue."""
        t = self.topology
        self._exchange = await channel.declare_exchange(
            t.exchange, aio_pika.ExchangeType.TOPIC, durable=True
        )
        # Fanout: whatever the broker or we dead-letter lands in the DLQ, any routing key.
        self._dead_letter_exchange = await channel.declare_exchange(
            t.dead_letter_exchange, aio_pika.ExchangeType.FANOUT, durable=True
        )
        # Classic, not quorum: reading it (`dead_letters`) returns the messages, and a
        # quorum queue counts each return toward a delivery limit that would drop them.
        dead_letters = await channel.declare_queue(t.dead_letter_queue, durable=True)
        await dead_letters.bind(self._dead_letter_exchange, "")
        queue = await channel.declare_queue(t.queue, durable=True, arguments=self._queue_arguments)
        for key in t.routing_keys:
            await queue.bind(self._exchange, key)

    # --- publishing ---------------------------------------------------------------

    async def publish(self, routing_key: str, body: bytes, *, message_id: str) -> None:
        message = aio_pika.Message(
            body,
            message_id=message_id,
            content_type="application/json",
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._publish_timeout
        pause = 0.1
        error: BaseException | None = None
        for attempt in range(1, self._publish_attempts + 1):
            try:
                # The whole attempt, including waiting out a reconnection, has one deadline.
                async with asyncio.timeout_at(deadline):
                    exchange = await self._ready_exchange()
                    # Raises on a nack (DeliveryError) and on a return (PublishError).
                    await exchange.publish(message, routing_key, mandatory=True)
                return
            except FAILURES as exc:
                error = exc
                if attempt == self._publish_attempts or loop.time() + pause >= deadline:
                    break
                log.info("publish attempt %d failed, retrying: %r", attempt, exc)
                await asyncio.sleep(pause)
                pause *= 2
        raise PublishFailed(f"{routing_key} {message_id}: {error!r}") from error

    async def _ready_exchange(self) -> AbstractRobustExchange:
        await self._connected.wait()
        assert self._publisher is not None and self._exchange is not None
        await self._publisher.ready()  # waits while the robust connection reconnects
        return self._exchange

    # --- consuming ----------------------------------------------------------------

    async def consume(self, handler: Handler, *, prefetch: int = 100) -> None:
        if self._handler is not None:
            raise RuntimeError("one consumer per bus")
        self._handler, self._prefetch = handler, prefetch
        if self._connection is not None:
            self._consumer = await self._subscribe(self._connection)
        # else: the background connector starts consuming once the broker is reachable.

    async def _subscribe(
        self, connection: AbstractRobustConnection
    ) -> tuple[AbstractRobustQueue, str]:
        # A channel of its own: the prefetch applies to it, and a publish error that
        # closes the publisher channel does not interrupt the deliveries.
        channel = await connection.channel(publisher_confirms=False)
        await channel.set_qos(prefetch_count=self._prefetch)
        queue = await channel.declare_queue(
            self.topology.queue, durable=True, arguments=self._queue_arguments
        )
        # Robust queue: after a reconnection the consumer is registered again.
        tag = await queue.consume(self._on_message)
        return queue, tag

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        # aiormq runs each delivery in a task of its own: up to `prefetch` at once.
        assert self._handler is not None
        task = asyncio.current_task()
        assert task is not None
        self._handling.add(task)
        try:
            await self._settle(message, self._handler)
        except (*FAILURES, MessageProcessError) as exc:
            # The channel went away before the ack: the broker redelivers the message.
            log.warning("could not settle message %s: %r", message.message_id, exc)
        finally:
            self._handling.discard(task)

    async def _settle(self, message: AbstractIncomingMessage, handler: Handler) -> None:
        try:
            await handler(_delivery(message))
        except PoisonMessage as exc:
            await self._dead_letter(message, str(exc))
        except Exception:
            log.exception("handler failed; message %s requeued", message.message_id)
            # Quorum queues count deliveries: back off harder the more a message failed,
            # so a dead database does not spin the CPU.
            count = _int(message.headers.get("x-delivery-count"))
            first, longest = REQUEUE_DELAY
            await asyncio.sleep(min(first * 2 ** min(count, 8), longest))
            await message.nack(requeue=True)
        else:
            await message.ack()

    async def _dead_letter(self, message: AbstractIncomingMessage, reason: str) -> None:
        """A copy carrying the reason goes to the dead-letter exchange, then the original
        is acked.

        A plain reject would dead-letter it too, but AMQP has no field for the reason.
        The copy is confirmed before the ack, so a crash in between redelivers the
        original (a duplicate in the DLQ, never a loss). If the copy cannot be confirmed
        the original is rejected: the broker dead-letters it (with `x-death`) anyway.
        """
        copy = aio_pika.Message(
            message.body,
            headers={**message.headers, REASON_HEADER: reason[:1000]},
            message_id=message.message_id,
            content_type=message.content_type,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        )
        try:
            async with asyncio.timeout(self._publish_timeout):
                await self._ready_exchange()
                assert self._dead_letter_exchange is not None
                await self._dead_letter_exchange.publish(
                    copy, message.routing_key or "", mandatory=True
                )
        except FAILURES as exc:
            log.warning("dead-letter copy failed (%r); rejecting: %s", exc, reason)
            await message.reject(requeue=False)
        else:
            log.warning("dead-lettered %s: %s", message.message_id, reason)
            await message.ack()

    # --- operations -----------------------------------------------------------------

    async def ping(self) -> None:
        """A channel opened and closed on the live connection: one round trip that a
        broker gone, or one that stopped answering, does not complete."""
        connection = self._connection
        if connection is None or connection.is_closed or connection.transport is None:
            last = f" (last attempt: {self._last_error})" if self._last_error else ""
            raise BusUnavailable(f"not connected to RabbitMQ{last}")
        try:
            probe = await connection.transport.connection.channel(publisher_confirms=False)
            await probe.close()
        except FAILURES as exc:
            raise BusUnavailable(f"RabbitMQ unavailable: {exc!r}") from exc

    @property
    def consuming(self) -> bool:
        # Registered on a connection; aio-pika registers it again after a reconnection.
        return self._handler is not None and self._consumer is not None

    async def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        """Reads without removing: unacked gets return to the queue when the channel closes."""
        if self._connection is None:
            raise ConnectionError("not connected to RabbitMQ")
        found: list[DeadLetter] = []
        async with self._connection.channel(publisher_confirms=False) as channel:
            queue = await channel.get_queue(self.topology.dead_letter_queue, ensure=False)
            while len(found) < limit:
                message = await queue.get(fail=False)
                if message is None:
                    break
                found.append(DeadLetter(_delivery(message), _reason(message)))
        return found

    async def close(self) -> None:
        """Stop consuming, let running handlers finish (bounded), then disconnect.

        Messages not acked by then go back to the queue when the connection closes.
        """
        if self._connector is not None:
            self._connector.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._connector
        if self._consumer is not None:
            queue, tag = self._consumer
            with contextlib.suppress(*FAILURES):
                await asyncio.wait_for(queue.cancel(tag), CLOSE_GRACE)
        if self._handling:
            await asyncio.wait(self._handling, timeout=CLOSE_GRACE)
        for task in self._handling:
            task.cancel()
        await asyncio.gather(*self._handling, return_exceptions=True)
        if self._connection is not None:
            await self._connection.close()
        self._reset()


def _delivery(message: AbstractIncomingMessage) -> Delivery:
    return Delivery(
        body=message.body,
        routing_key=message.routing_key or "",
        message_id=message.message_id,
        redelivered=bool(message.redelivered),
        headers=dict(message.headers),
    )


def _reason(message: AbstractIncomingMessage) -> str:
    """Ours if we dead-lettered it, else the broker's (`rejected`, `expired`, ...)."""
    reason = message.headers.get(REASON_HEADER)
    if reason is not None:
        return reason.decode() if isinstance(reason, bytes) else str(reason)
    deaths = message.headers.get("x-death")
    if isinstance(deaths, list) and deaths and isinstance(deaths[0], dict):
        return f"broker: {deaths[0].get('reason', 'unknown')!s}"
    return "unknown"


def _int(value: object) -> int:
    return value if isinstance(value, int) else 0
