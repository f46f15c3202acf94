"""A Redis the test can hang and release while real processes use it: the contract
suites' stalling proxy (tests/contract/redis_proxy.py), served from a thread of its own
so that it outlives any one test's event loop."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator

from tests.contract.redis_proxy import stalling_to, tcp_server


class StalledRedis:
    """`url` leads to the real Redis; `hang()` holds every byte (SIGSTOP), `release()`
    lets them go (SIGCONT)."""

    def __init__(self, redis_url: str) -> None:
        self._target = redis_url
        self._loop = asyncio.new_event_loop()
        self._flowing = asyncio.Event()
        self._stop = asyncio.Event()
        self._port: int | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="stalled-redis", daemon=True)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self._port}/0"

    def hang(self) -> None:
        self._loop.call_soon_threadsafe(self._flowing.clear)

    def release(self) -> None:
        self._loop.call_soon_threadsafe(self._flowing.set)

    def _serve(self) -> None:
        async def main() -> None:
            self._flowing.set()
            async with tcp_server(stalling_to(self._target, self._flowing)) as port:
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
