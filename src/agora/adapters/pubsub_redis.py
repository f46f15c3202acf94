"""The Redis backend of the PubSub port: PUBLISH/SUBSCRIBE shared by every instance.

Each instance holds ONE subscription connection, owned by one reader task: it reads
messages, hands them to the handler one at a time, and when the connection drops (Redis
restart, failover, network cut, `CLIENT KILL`) it reconnects with backoff and subscribes
again to every channel this instance wants. The wanted channels are kept here, not in
Redis, so that resubscribing is one step that cannot forget a channel. Messages
published while the connection was down are lost, as the port says.

redis-py's own `PubSub` object is not used: it reconnects inside whichever call notices
the drop, from whatever task made it; here only the reader task reconnects.

PUBLISH goes through a small pool with the cache's short timeouts, so a dead Redis turns
into `PubSubUnavailable` within a couple of seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.connection import AbstractConnection
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff, NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

from agora.adapters.redis_breaker import breaker_for
from agora.adapters.redis_client import (
    CALL_BUDGET,
    SOCKET_TIMEOUT,
    redis_call,
    redis_client,
)
from agora.core.background import cancel_and_wait
from agora.ports.pubsub import MessageHandler, PubSubUnavailable

log = logging.getLogger("agora.pubsub.redis")

# Publishing is one command per message; a handful of connections carry a lot of them.
PUBLISH_CONNECTIONS = 20
# A subscription connection silent this long gets a PING; silent for as long again, it
# is taken for dead (a half-open TCP connection or a stuck Redis never sends an error).
PING_AFTER = 5.0
# Reconnect backoff: the first retry comes fast (a blip), later ones spread out with
# jitter so that many instances do not all hit a Redis that is coming back at once.
RECONNECT_BASE = 0.05
RECONNECT_CAP = 2.0
# How long subscribe() waits for Redis to confirm, so that a message published right
# after it returns is delivered; past this, the channel stays wanted and is subscribed
# again on the next reconnect.
ACK_WAIT = CALL_BUDGET


class RedisPubSub:
    def __init__(self, url: str, *, namespace: str = "") -> None:
        self._prefix = namespace.encode()
        self._redis = redis_client(url, max_connections=PUBLISH_CONNECTIONS)
        self._breaker = breaker_for(url)  # shared with every Redis adapter of the process
        # Shown by CLIENT LIST: which instance holds a subscription connection.
        self.client_name = f"agora-pubsub-{uuid.uuid4().hex[:12]}"
        # Only used to build the subscription connection from the URL (TLS, auth, db...);
        # the reader task reconnects itself, hence no retries and no health checks here.
        self._subscriber_pool = aioredis.ConnectionPool.from_url(
            url,
            client_name=self.client_name,
            socket_connect_timeout=SOCKET_TIMEOUT,
            socket_timeout=SOCKET_TIMEOUT,
            retry=Retry(NoBackoff(), 0),
            # RESP2: every reply, message or confirmation, is a plain array, whatever
            # the redis-py version's default protocol.
            protocol=2,
        )
        self._channels: set[str] = set()  # wanted, without the namespace
        self._connection: AbstractConnection | None = None  # set while subscribed
        self._send_lock = asyncio.Lock()  # one writer at a time on the connection
        self._acks: dict[bytes, list[asyncio.Future[None]]] = {}
        self._first_try = asyncio.Event()  # the reader's first connection attempt ended
        self._task: asyncio.Task[None] | None = None

    def _name(self, channel: str) -> bytes:
        return self._prefix + channel.encode()

    # --- the port ------------------------------------------------------------------

    async def start(self, handler: MessageHandler) -> None:
        if self._task is not None:
            raise RuntimeError("already started")
        # Wait for the first attempt and its confirmations, so that a publish right after
        # start() is heard; if Redis is down the reader keeps trying, start() goes on.
        with self._expecting_acks(list(self._channels)) as acks:
            self._task = asyncio.create_task(self._run(handler), name="redis-pubsub")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(CALL_BUDGET):
                    await self._first_try.wait()
                    if self._connection is not None and acks:
                        await asyncio.wait(acks)

    async def publish(self, channel: str, message: bytes) -> None:
        name = self._name(channel)
        command = lambda: self._redis.publish(name, message)  # noqa: E731
        await redis_call(command, PubSubUnavailable, self._breaker)

    async def publish_many(self, messages: Sequence[tuple[str, bytes]]) -> None:
        if not messages:
            return
        pipe = self._redis.pipeline(transaction=False)  # one round trip, not atomic
        for channel, message in messages:
            pipe.publish(self._name(channel), message)
        await redis_call(pipe.execute, PubSubUnavailable, self._breaker)

    async def subscribe(self, *channels: str) -> None:
        wanted = list(dict.fromkeys(channels))
        new = [channel for channel in wanted if channel not in self._channels]
        # Wanted already, by a call still waiting for Redis to confirm: wait for that
        # confirmation too instead of returning early.
        unconfirmed = [c for c in wanted if c not in new and self._name(c) in self._acks]
        if not new and not unconfirmed:
            return
        # Wanted first: a reconnect from now on includes them even if the send fails.
        self._channels.update(new)
        with self._expecting_acks(new + unconfirmed) as acks:
            sent = not new or await self._send("SUBSCRIBE", [self._name(c) for c in new])
            # Until Redis confirms, a PUBLISH from elsewhere may overtake the SUBSCRIBE. A
            # handler subscribing from inside the reader must not wait: the reader is
            # busy running that very handler.
            live = self._connection is not None
            if sent and live and asyncio.current_task() is not self._task:
                _, pending = await asyncio.wait(acks, timeout=ACK_WAIT)
                if pending:
                    log.warning("Redis did not confirm SUBSCRIBE within %s s", ACK_WAIT)

    async def unsubscribe(self, *channels: str) -> None:
        gone = [channel for channel in dict.fromkeys(channels) if channel in self._channels]
        if not gone:
            return
        # Dropped locally at once: the reader discards what is still in flight for them.
        self._channels.difference_update(gone)
        await self._send("UNSUBSCRIBE", [self._name(channel) for channel in gone])

    def listening(self) -> bool:
        return self._connection is not None  # None from a drop until resubscribed

    async def close(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None
        self._channels.clear()
        await self._redis.aclose()
        await self._subscriber_pool.aclose()

    # --- the subscription connection ---------------------------------------------------

    @contextlib.contextmanager
    def _expecting_acks(self, channels: list[str]) -> Iterator[list[asyncio.Future[None]]]:
        """Futures the reader resolves when Redis confirms these channels' SUBSCRIBE."""
        loop = asyncio.get_running_loop()
        expected = [(self._name(channel), loop.create_future()) for channel in channels]
        for name, ack in expected:
            self._acks.setdefault(name, []).append(ack)
        try:
            yield [ack for _, ack in expected]
        finally:
            for name, ack in expected:
                waiting = self._acks.get(name, [])
                if ack in waiting:
                    waiting.remove(ack)
                if not waiting:
                    self._acks.pop(name, None)

    async def _send(self, command: str, names: list[bytes]) -> bool:
        """Send on the live subscription connection; False if there is none right now."""
        async with self._send_lock:
            connection = self._connection
            # Never reconnect from here (send_command would): the reader owns that, and
            # it subscribes to every wanted channel when it is back.
            if connection is None or not connection.is_connected:
                return False
            try:
                await connection.send_command(command, *names, check_health=False)
            except Exception as exc:  # the reader sees the same drop and reconnects
                log.info("%s not sent, left to the reconnect: %r", command, exc)
                return False
            return True

    async def _run(self, handler: MessageHandler) -> None:
        backoff = ExponentialWithJitterBackoff(base=RECONNECT_BASE, cap=RECONNECT_CAP)
        failures = 0
        while True:
            connection: AbstractConnection = self._subscriber_pool.make_connection()
            try:
                await self._connect_and_subscribe(connection)
                self._first_try.set()
                failures = 0
                await self._read(connection, handler)
            # Anything from the connection (network, protocol, auth, a refused command):
            # the reader must outlive it, or this instance goes deaf for good.
            except Exception as exc:
                self._first_try.set()
                failures += 1
                # Loud once per outage, quiet while it lasts (one attempt every ~2 s).
                level = logging.WARNING if failures == 1 else logging.INFO
                log.log(level, "Redis subscription down (%r), reconnecting", exc)
            finally:
                self._connection = None
                with contextlib.suppress(Exception):
                    await connection.disconnect(nowait=True)
            await asyncio.sleep(backoff.compute(failures))

    async def _connect_and_subscribe(self, connection: AbstractConnection) -> None:
        await connection.connect()  # AUTH, SELECT and CLIENT SETNAME come from the URL
        async with self._send_lock:
            # Snapshot and publish the connection under the lock: a subscribe() running
            # now either is in this snapshot or sends on the new connection itself.
            names = [self._name(channel) for channel in self._channels]
            if names:
                await connection.send_command("SUBSCRIBE", *names, check_health=False)
            self._connection = connection
        self._breaker.succeeded()  # Redis answers again: the process's calls go through

    async def _read(self, connection: AbstractConnection, handler: MessageHandler) -> None:
        ping_unanswered = False
        while True:
            # push_request: under RESP3 (forced by a `protocol=3` URL) messages are push
            # frames, which redis-py hands back only when asked.
            reply = await connection.read_response(timeout=PING_AFTER, push_request=True)
            if reply is None:  # silence for PING_AFTER seconds (the read can resume)
                if ping_unanswered:
                    raise RedisConnectionError(f"no answer to PING within {PING_AFTER} s")
                async with self._send_lock:
                    await connection.send_command("PING", check_health=False)
                ping_unanswered = True
                continue
            ping_unanswered = False
            await self._dispatch(reply, handler)

    async def _dispatch(self, reply: Any, handler: MessageHandler) -> None:
        # RESP2 replies on a subscription connection: [b"message", channel, data],
        # [b"subscribe", channel, count], [b"unsubscribe", ...], [b"pong", b""]; b"PONG"
        # when no channel is subscribed.
        if not isinstance(reply, list) or len(reply) != 3:
            return
        kind, name, payload = reply
        if kind == b"subscribe":
            for ack in self._acks.get(name, []):
                if not ack.done():
                    ack.set_result(None)
            return
        if kind != b"message" or not name.startswith(self._prefix):
            return
        channel = name[len(self._prefix) :].decode()
        if channel not in self._channels:  # unsubscribed while the message was on its way
            return
        try:
            await handler(channel, payload)
        except Exception:  # one bad message must not stop the others
            log.exception("pub/sub handler failed on %s", channel)
