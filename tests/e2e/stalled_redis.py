"""A Redis the test can hang and release while real processes use it: the contract
suites' stalling proxy (tests/contract/redis_proxy.py), served from a thread of its own
so that it outlives any one test's event loop."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator

from tests.contract.redis_proxy import Handler, stalling_to, tcp_server

# What our pub/sub subscriber's connection says first (CLIENT SETNAME, pubsub_redis).
SUBSCRIBER_NAME = b"agora-pubsub-"


class StalledRedis:
    """`url` leads to the real Redis; `hang()` holds every byte (SIGSTOP), `release()`
    lets them go (SIGCONT); `deafen()` cuts the instances' pub/sub subscriptions and
    refuses them until `undeafen()`, while every other connection works: a subscription
    reconnecting while publishing works."""

    def __init__(self, redis_url: str) -> None:
        self._target = redis_url
        self._loop = asyncio.new_event_loop()
        self._flowing = asyncio.Event()
        self._stop = asyncio.Event()
        self._port: int | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="stalled-redis", daemon=True)
        self._deaf = False
        self._subscribers: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self._port}/0"

    def hang(self) -> None:
        self._loop.call_soon_threadsafe(self._flowing.clear)

    def release(self) -> None:
        self._loop.call_soon_threadsafe(self._flowing.set)

    def deafen(self) -> None:
        def cut() -> None:
            self._deaf = True
            for writer in list(self._subscribers):
                writer.transport.abort()

        self._loop.call_soon_threadsafe(cut)

    def undeafen(self) -> None:
        self._loop.call_soon_threadsafe(setattr, self, "_deaf", False)

    def _handler(self) -> Handler:
        forward = stalling_to(self._target, self._flowing)

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            first = await reader.read(65536)
            if SUBSCRIBER_NAME in first:
                if self._deaf:
                    writer.transport.abort()
                    return
                self._subscribers.add(writer)
            try:
                await forward(_Prepended(reader, first), writer)  # type: ignore[arg-type]
            finally:
                self._subscribers.discard(writer)

        return handle

    def _serve(self) -> None:
        async def main() -> None:
            self._flowing.set()
            async with tcp_server(self._handler()) as port:
                self._port = port
                self._ready.set()
                await self._stop.wait()

        self._loop.run_until_complete(main())

    @contextlib.contextmanager
    def running(self) -> Iterator[StalledRedis]:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the Redis proxy did not start")
        try:
            yield self
        finally:
            self.release()
            self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(10)


class _Prepended:
    """A StreamReader whose first read returns `first` (already read to look at it)."""

    def __init__(self, reader: asyncio.StreamReader, first: bytes) -> None:
        self._reader = reader
        self._first: bytes | None = first

    async def read(self, n: int = -1) -> bytes:
        if self._first is not None:
            first, self._first = self._first, None
            return first
        return await self._reader.read(n)
