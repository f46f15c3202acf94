"""A broker outage without stopping the broker: a TCP proxy in front of the machine's
RabbitMQ, which the processes under test connect through. `cut()` drops every
connection and refuses new ones (as a dead broker's host would), `restore()` accepts
them again on the same port, at once: unlike a restarted RabbitMQ node, whose own boot
takes seconds, the moment the broker is back is the test's to choose. Served from a
thread of its own, so that it outlives any one test's event loop."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

from tests.contract.redis_proxy import forwarding_to


class BrokerProxy:
    def __init__(self, amqp_url: str) -> None:
        self._target = amqp_url
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="broker-proxy",
                                        daemon=True)  # fmt: skip
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self.port = 0

    @property
    def url(self) -> str:
        """The broker's URL, through the proxy (same credentials and vhost)."""
        parts = urlsplit(self._target)
        credentials = parts.netloc.rsplit("@", 1)[0] + "@" if "@" in parts.netloc else ""
        return urlunsplit(parts._replace(netloc=f"{credentials}127.0.0.1:{self.port}"))

    def cut(self) -> None:
        self._run(self._close())

    def restore(self) -> None:
        self._run(self._listen())

    def _run(self, coro: object) -> None:
        asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)  # type: ignore[arg-type]

    async def _listen(self) -> None:
        forward = forwarding_to(self._target)

        async def tracked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self._writers.add(writer)
            try:
                await forward(reader, writer)
            except (ConnectionError, OSError):
                pass
            finally:
                self._writers.discard(writer)
                writer.close()

        self._server = await asyncio.start_server(tracked, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()
        await asyncio.sleep(0.05)  # the handlers see the abort and end

    @contextlib.contextmanager
    def running(self) -> Iterator[BrokerProxy]:
        self._thread.start()
        try:
            self.restore()
            yield self
        finally:
            with contextlib.suppress(Exception):
                self.cut()
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
