"""uvicorn's WebSocket protocol, with connections that really end once they should.

uvicorn ends a WebSocket with `transport.close()`, which waits until the write buffer
is flushed: a peer that reads nothing (its TCP window shut) keeps the descriptor and
megabytes of unsent kernel buffer for as long as it stays connected (issue 15 §1).
Here, every connection uvicorn or the app decided to end (the app returned, a close
was sent, a missed pong, a shutdown) is aborted after `abort_after` seconds if it is
still there: an RST, which frees the descriptor and the kernel's buffer at once,
instead of a FIN queued behind data the peer never takes. And each accepted socket
gets `TCP_USER_TIMEOUT`, so a peer that vanished without a word (data unacknowledged,
or a zero window, that long) is dropped by the kernel too.

A shutdown does not close an open socket at once, which lost the answers to the
requests the app was serving (issue 15 §6: sends stored, never acknowledged). The
protocol stops reading, and tells the app after the frames it has already read
(`codes.SERVER_RESTART`'s disconnect): the app answers them, sends what it queued, and
closes with 1012 itself (`realtime.connection.Connection.finish`). An app that has not
closed within `abort_after` is closed for (1012), then aborted `abort_after` later.

The app may also write text frames without the ASGI `send` (`connection.WRITE_FRAMES`
in the scope's extensions): straight to the transport, in one `transport.write`, with
no task and no coroutine per frame, whenever the transport takes them at once (not
paused); otherwise the app awaits `send` as usual. Without an extension negotiated
(`agora serve` turns permessage-deflate off) a server's text frame is a header and
the UTF-8 text: it is built here (`text_frame`, byte for byte `websockets`'s), once
for a frame fanned out to many sockets, instead of by `websockets` for each socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import socket
import struct
from asyncio import BaseTransport, TimerHandle
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, cast

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.protocol import State

from agora.realtime.codes import SERVER_RESTART
from agora.realtime.connection import WRITE_FRAMES

if TYPE_CHECKING:
    from uvicorn._types import ASGIReceiveEvent

LINGER_RESET = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends an RST
TEXT_FIN = 0x81  # FIN, opcode 1 (text): a whole text frame

_last_frame: tuple[str, bytes] = ("", bytes((TEXT_FIN, 0)))  # the last text framed, its frame


def text_frame(text: str) -> bytes:
    """One unmasked text frame, as a server sends it (RFC 6455 §5.2). The same text
    object sent to many sockets (a fan-out) is framed once: the last one is kept."""
    global _last_frame
    last = _last_frame  # one tuple, read and replaced whole
    if last[0] is text:
        return last[1]
    payload = text.encode()
    size = len(payload)
    if size < 126:
        frame = bytes((TEXT_FIN, size)) + payload
    elif size < 1 << 16:
        frame = struct.pack("!BBH", TEXT_FIN, 126, size) + payload
    else:
        frame = struct.pack("!BBQ", TEXT_FIN, 127, size) + payload
    _last_frame = (text, frame)
    return frame


class AbortingWebSocketProtocol(WebSocketsSansIOProtocol):
    """`WebSocketsSansIOProtocol` (uvicorn's default with `websockets` installed) whose
    ending connections are aborted after `abort_after` seconds."""

    def __init__(self, *args: Any, abort_after: float, user_timeout: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.abort_after = abort_after
        self.user_timeout = user_timeout
        self.abort_timer: TimerHandle | None = None
        self.drain_timer: TimerHandle | None = None  # from a shutdown to the app's close

    def connection_made(self, transport: BaseTransport) -> None:
        super().connection_made(transport)
        set_user_timeout(transport, self.user_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self.stop_draining()
        if self.abort_timer is not None:
            self.abort_timer.cancel()
            self.abort_timer = None
        super().connection_lost(exc)

    def abort_later(self) -> None:
        """From now on, the connection has `abort_after` seconds to go by itself."""
        if self.abort_timer is None and not self.disconnected:
            self.abort_timer = self.loop.call_later(self.abort_after, self.abort)

    def abort(self) -> None:
        self.abort_timer = None
        if not self.disconnected:
            # Linger 0: the kernel resets the connection and frees its unsent buffer,
            # instead of keeping it, orphaned in FIN_WAIT1, for as long as the peer acks.
            sock = self.transport.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RESET)
            self.transport.abort()  # connection_lost follows: the app sees a disconnect

    # Every way a connection ends in uvicorn: the app is done, a pong is missed, the server
    # shuts down. (A close the app sends is followed by the app's return: `run_asgi`.)
    async def run_asgi(self) -> None:
        self.scope["extensions"][WRITE_FRAMES] = self.write_frames  # type: ignore[assignment]
        try:
            await super().run_asgi()
        finally:
            self.stop_draining()
            self.abort_later()

    def write_frames(self, texts: Sequence[str]) -> bool:
        """Text frames out now, in one write, if the socket takes them now: open, no
        close sent, the transport not paused. False if not: nothing was written, and
        the app sends them with the ASGI `send`, which waits or raises as it should."""
        if (
            self.disconnected
            or self.close_sent
            or not self.writable.is_set()
            or not self.open_to_app()
            or self.transport.is_closing()
        ):
            return False
        conn = self.conn
        if conn.state is not State.OPEN:  # the peer's close came in: nothing more
            return False
        if conn.extensions:  # permessage-deflate: `websockets` compresses each frame
            for text in texts:
                conn.send_text(text.encode())
            self.transport.write(b"".join(conn.data_to_send()))
            return True
        if len(texts) == 1:
            self.transport.write(text_frame(texts[0]))
        else:
            self.transport.write(b"".join(map(text_frame, texts)))
        return True

    def start_keepalive(self) -> None:
        # Called once the upgrade is sent. uvicorn keeps the handshake's request and
        # response (headers, the path with its ticket) for the connection's life, though
        # it never reads them again: about 3 KB per idle socket (issue 13).
        self.request = self.response = None  # type: ignore[assignment]
        super().start_keepalive()

    def keepalive_timeout(self) -> None:
        super().keepalive_timeout()
        self.abort_later()

    def shutdown(self) -> None:
        if self.disconnected or self.close_sent or not self.open_to_app():
            super().shutdown()
            self.abort_later()
            return
        # Open: no new frame is read; the app answers those it has, then closes.
        self.stop_keepalive()
        if not self.read_paused:
            self.read_paused = True
            self.transport.pause_reading()
        self.queue.put_nowait(
            {
                "type": "websocket.disconnect",
                "code": SERVER_RESTART.code,
                "reason": SERVER_RESTART.message,
            }
        )
        self.drain_timer = self.loop.call_later(self.abort_after, self.drain_overdue)

    def open_to_app(self) -> bool:
        return self.handshake_complete and self.initial_response is None

    def drain_overdue(self) -> None:
        """The app did not close within the grace after a shutdown: close for it."""
        self.drain_timer = None
        if not self.disconnected and not self.close_sent:
            super().shutdown()
        self.abort_later()

    def stop_draining(self) -> None:
        if self.drain_timer is not None:
            self.drain_timer.cancel()
            self.drain_timer = None

    async def receive(self) -> ASGIReceiveEvent:
        if self.drain_timer is None:
            return await super().receive()
        return await self.queue.get()  # shutting down: reading stays paused


def set_user_timeout(transport: BaseTransport, seconds: float) -> None:
    """TCP_USER_TIMEOUT on the transport's socket, where the platform has it (Linux)."""
    sock = transport.get_extra_info("socket")
    option = getattr(socket, "TCP_USER_TIMEOUT", None)
    if sock is None or option is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.IPPROTO_TCP, option, int(seconds * 1000))


def websocket_protocol(*, abort_after: float, user_timeout: float) -> type[asyncio.Protocol]:
    """The protocol for uvicorn's `ws=`: a partial, which pickles by name for its workers."""
    factory = functools.partial(
        AbortingWebSocketProtocol, abort_after=abort_after, user_timeout=user_timeout
    )
    return cast(type[asyncio.Protocol], factory)
