"""One socket: its bounded outbound queue and the one task that writes to it.

Everything sent to a client goes through `send`, which only queues: fan-out from
pub/sub, echoes and acks never wait on a client. The queue is measured in bytes; a
frame that would take it past `max_queued_bytes` closes the connection as a slow
consumer instead of growing memory. `close` drops what is queued, and the writer
sends the error frame and the close; a client that takes nothing at all (its TCP
window shut) would hold those forever, so after `close_grace` seconds the writer is
cancelled and the connection ends anyway (the server's transport then holds at most
one buffer's worth until the kernel gives up on the peer).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections import deque

import orjson
from starlette.websockets import WebSocket, WebSocketDisconnect

from agora.realtime.codes import SLOW_CONSUMER, CloseReason


def frame_cost(frame: str) -> int:
    """Bytes a frame may take on the wire (UTF-8): exact for ASCII, a ceiling otherwise."""
    return len(frame) if frame.isascii() else 4 * len(frame)


def error_frame(message: str) -> str:
    return orjson.dumps({"type": "error", "message": message}).decode()


class Connection:
    __slots__ = (
        "_cut",
        "_drained",
        "_queue",
        "_wake",
        "_writer",
        "close_grace",
        "closing",
        "device_id",
        "ip",
        "login",
        "max_queued_bytes",
        "opened_at",
        "queued_bytes",
        "session_iat",
        "session_jti",
        "user_id",
        "watching",
        "ws",
    )

    def __init__(
        self,
        ws: WebSocket,
        *,
        user_id: str,
        login: str,
        session_jti: str,
        session_iat: int,
        ip: str | None,
        max_queued_bytes: int,
        close_grace: float,
    ) -> None:
        self.ws = ws
        self.user_id = user_id
        self.login = login
        self.session_jti = session_jti
        self.session_iat = session_iat
        self.ip = ip
        self.device_id = uuid.uuid4().hex
        self.max_queued_bytes = max_queued_bytes
        self.close_grace = close_grace
        self.opened_at = time.monotonic()
        self.queued_bytes = 0
        self.closing: CloseReason | None = None
        # Users this connection watches the presence of (kept by presence.PresenceTracker).
        self.watching: set[str] = set()
        self._queue: deque[str] = deque()
        self._wake = asyncio.Event()
        self._drained = asyncio.Event()
        self._drained.set()
        self._writer: asyncio.Task[None] | None = None
        self._cut: asyncio.TimerHandle | None = None

    def send(self, frame: str) -> bool:
        """Queue a text frame; False if it was dropped (closing, or over the limit)."""
        if self.closing is not None:
            return False
        cost = frame_cost(frame)
        if self.queued_bytes + cost > self.max_queued_bytes:
            self.close(SLOW_CONSUMER)
            return False
        self._queue.append(frame)
        self.queued_bytes += cost
        self._wake.set()
        return True

    @property
    def backlogged(self) -> bool:
        return self.queued_bytes > self.max_queued_bytes // 2

    async def drained(self) -> None:
        """Wait until the queue is back under a quarter of its limit (or closing).

        The reader waits on this before each frame, so a client that sends faster
        than it reads our answers is slowed by TCP instead of filling its queue; only
        what others send it (fan-out, which must never wait) can overflow it.
        """
        if self.backlogged and self.closing is None:
            self._drained.clear()
            await self._drained.wait()

    def close(self, reason: CloseReason) -> None:
        """Close with an error frame and `reason`'s code; the first reason wins."""
        if self.closing is not None:
            return
        self.closing = reason
        self._queue.clear()
        self.queued_bytes = 0
        self._wake.set()
        self._drained.set()
        if self._writer is not None:
            self._cut = asyncio.get_running_loop().call_later(self.close_grace, self._writer.cancel)

    def start_writer(self) -> asyncio.Task[None]:
        self._writer = asyncio.create_task(self._write_loop(), name=f"ws-writer-{self.device_id}")
        if self.closing is not None:  # closed before the writer existed
            self._cut = asyncio.get_running_loop().call_later(self.close_grace, self._writer.cancel)
        return self._writer

    async def stop_writer(self) -> None:
        if self._cut is not None:
            self._cut.cancel()
        if self._writer is not None and not self._writer.done():
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer

    async def _write_loop(self) -> None:
        # The client may be gone at any send: that ends the writer, and so the socket.
        with contextlib.suppress(WebSocketDisconnect, OSError, RuntimeError):
            await self._write()

    async def _write(self) -> None:
        queue = self._queue
        while True:
            await self._wake.wait()
            self._wake.clear()
            while queue and self.closing is None:
                frame = queue.popleft()
                self.queued_bytes -= frame_cost(frame)
                if self.queued_bytes <= self.max_queued_bytes // 4:
                    self._drained.set()
                await self.ws.send_text(frame)
            if self.closing is not None:
                await self.ws.send_text(error_frame(self.closing.message))
                await self.ws.close(self.closing.code, self.closing.message)
                return
