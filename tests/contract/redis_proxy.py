"""A TCP proxy that plays a Redis going away (and coming back) for the client under test,
for the Redis-backed contract suites. (Namespace clean-up: tests.support.services.)"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from urllib.parse import urlsplit

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@contextlib.asynccontextmanager
async def tcp_server(handle: Handler, port: int = 0) -> AsyncIterator[int]:
    """A local TCP server on `port` (0: any); leaving drops every open connection."""
    writers: set[asyncio.StreamWriter] = set()

    async def tracked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.add(writer)
        try:
            await handle(reader, writer)
        except (ConnectionError, OSError):
            pass
        finally:
            writers.discard(writer)
            writer.close()

    server = await asyncio.start_server(tracked, "127.0.0.1", port)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        for writer in list(writers):
            writer.transport.abort()
        await server.wait_closed()
        await asyncio.sleep(0.05)  # let the handlers see the abort and end


def forwarding_to(url: str) -> Handler:
    """A TCP proxy to the real Redis: stopping it is Redis going away for the client."""
    always = asyncio.Event()
    always.set()
    return stalling_to(url, always)


def stalling_to(url: str, flowing: asyncio.Event) -> Handler:
    """A proxy to the real Redis that holds every byte, both ways, while `flowing` is
    clear: a hung Redis (SIGSTOP), connections open and nothing answered; what was held
    goes on when it is set again, as after SIGCONT."""
    target = urlsplit(url)

    async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        try:
            while data := await source.read(65536):
                await flowing.wait()
                sink.write(data)
                await sink.drain()
        finally:
            sink.close()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(target.hostname, target.port)
        await asyncio.gather(
            pipe(reader, up_writer), pipe(up_reader, writer), return_exceptions=True
        )

    return handle


def cutting_to(url: str, cut: asyncio.Event) -> Handler:
    """A proxy to the real Redis that, once `cut` is set, drops the next connection a
    command comes in on, unanswered (and clears `cut`): a connection that died between
    the client taking it from its pool and reading the reply."""
    target = urlsplit(url)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(target.hostname, target.port)

        async def to_redis() -> None:
            while data := await reader.read(65536):
                if cut.is_set():
                    cut.clear()
                    writer.transport.abort()
                    break
                up_writer.write(data)
                await up_writer.drain()
            up_writer.close()

        async def from_redis() -> None:
            while data := await up_reader.read(65536):
                writer.write(data)
                await writer.drain()

        await asyncio.gather(to_redis(), from_redis(), return_exceptions=True)

    return handle
