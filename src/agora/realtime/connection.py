"""One socket: its bounded outbound queue, and the short-lived task that empties it.

Everything sent to a client goes through `send`, which only queues: fan-out from
pub/sub, echoes and acks never wait on a client. The queue is measured in bytes; a
frame that would take it past `max_queued_bytes` closes the connection as a slow
consumer instead of growing memory.

On uvicorn (`runtime.websocket_protocol`, `WRITE_FRAMES`), a frame sent while nothing
is queued goes straight to the transport if it takes it (not paused): no queue, no
task, no ASGI send stack (issue 13: those were most of what a delivery cost over bare
uvicorn's). Otherwise (paused: the client reads slowly; or another server) the frame
is queued and a writer task sends the queue, waiting for the transport with the ASGI
send, and writing what has piled up in batches of up to `WRITE_BATCH_BYTES` in one
`transport.write` whenever the transport takes them. The writer exists only while
there is something to send, and ends when the queue is empty. An idle socket holds
no task of its own besides the one serving it (which reads, see `endpoint`): a task
and its frames cost about 2 KiB, and most sockets are idle most of the time (issue
5: memory per idle socket).

`close` drops what is queued and stops the reading (`interrupt`); the serving task
then sends the error frame and the close itself (`finish`). A client that takes
nothing at all (its TCP window shut) would hold those forever, so they get
`close_grace` seconds, after which the connection ends anyway (the server's
transport then holds at most one buffer's worth until the kernel gives up on the
peer).

A server shutdown (`restart`) is the other way round: the reading stops after the
frames already read, whose answers are queued; `finish` sends the queue, then the
close (1012), within `close_grace` too.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence, Set

import orjson
from starlette.websockets import WebSocket, WebSocketDisconnect

from agora.realtime.codes import SERVER_RESTART, SLOW_CONSUMER, CloseReason

NOBODY: frozenset[str] = frozenset()

# What a send to a client that has gone raises (uvicorn's ClientDisconnected is an OSError).
SEND_FAILED = (WebSocketDisconnect, OSError, RuntimeError)

# The scope extension of a server that writes text frames at once, without the ASGI
# send: a callable taking a sequence of frames, True if it wrote them all (in order,
# in one write), False if it wrote none (`runtime.websocket_protocol`).
WRITE_FRAMES = "agora.websocket.write_frames"

# At most this many bytes of queued frames per write: past the transport's high-water
# mark the rest waits in the queue, counted against `max_queued_bytes`, so that a
# slow client's backlog is cut as a slow consumer instead of buffered by the transport.
WRITE_BATCH_BYTES = 64 * 1024


def frame_cost(frame: str) -> int:
    """Bytes a frame may take on the wire (UTF-8): exact for ASCII, a ceiling otherwise."""
    return len(frame) if frame.isascii() else 4 * len(frame)


def error_frame(message: str) -> str:
    return orjson.dumps({"type": "error", "message": message}).decode()


class Connection:
    # Slots, and the queue, writer and waiters only while in use: per idle socket,
    # every byte here is multiplied by the number of sockets.
    __slots__ = (
        "_drained",
        "_queue",
        "_reader",
        "_soon",
        "_watching",
        "_writer",
        "broken",
        "close_grace",
        "closing",
        "device_id",
        "ip",
        "login",
        "max_queued_bytes",
        "opened_at",
        "queued_bytes",
        "restarting",
        "session_iat",
        "session_jti",
        "user_id",
        "write_frames",
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
        extensions = ws.scope.get("extensions") or {}
        self.write_frames: Callable[[Sequence[str]], bool] | None = extensions.get(WRITE_FRAMES)
        self.queued_bytes = 0
        self.closing: CloseReason | None = None
        self.broken = False  # a send failed: the client is gone, nothing more to say
        self.restarting = False  # the server stops: what is queued goes, nothing more
        self._watching: set[str] | None = None  # from the first watched user on
        self._queue: deque[str] | None = None  # while there is something to send
        self._soon: list[str] | None = None  # frames waiting for the end of this loop turn
        self._writer: asyncio.Task[None] | None = None  # while the queue has frames
        self._reader: asyncio.Task[None] | None = None  # the task reading, while it reads
        self._drained: asyncio.Future[None] | None = None  # while the reader waits

    def send(self, frame: str, *, soon: bool = False) -> bool:
        """Send a text frame, or queue it; False if it was dropped (closing, or over
        the limit). With nothing queued (no writer), it goes out at once if the
        transport takes it: it is behind nothing.

        With `soon`, it goes out at the end of this turn of the event loop, in one
        write with every frame sent to this socket meanwhile: a fan-out hands each
        socket the messages of a pub/sub read in one turn, and one write (one wake-up
        of the client) for them all costs less than one each. Frames keep the order
        of their `send`s either way."""
        if self.closing is not None or self.broken or self.restarting:
            return False
        if self._soon is not None:  # frames wait for the end of the turn: go behind them
            self._soon.append(frame)
            return True
        if self._writer is None:
            if soon:
                self._soon = [frame]
                asyncio.get_running_loop().call_soon(self._send_soon)
                return True
            write = self.write_frames
            if write is not None and write((frame,)):
                return True
        return self._enqueue(frame)

    def _send_soon(self) -> None:
        """The end of the turn: the frames sent with `soon` (and after them), in one
        write if the transport takes them and they fit in one batch; else queued."""
        frames, self._soon = self._soon, None
        if frames is None or self.closing is not None or self.broken:
            return  # dropped by a close meanwhile
        write = self.write_frames
        if (
            self._writer is None
            and write is not None
            and sum(map(frame_cost, frames)) <= WRITE_BATCH_BYTES
            and write(frames)
        ):
            return
        for frame in frames:
            if not self._enqueue(frame):
                return

    def _enqueue(self, frame: str) -> bool:
        """Queue `frame` for the writer task (started if need be), unless it would take
        the queue past its limit: then the connection closes as a slow consumer."""
        cost = frame_cost(frame)
        if self.queued_bytes + cost > self.max_queued_bytes:
            self.close(SLOW_CONSUMER)
            return False
        if self._queue is None:
            self._queue = deque()
        self._queue.append(frame)
        self.queued_bytes += cost
        if self._writer is None:
            self._writer = asyncio.get_running_loop().create_task(self._write_loop())
        return True

    @property
    def watching(self) -> Set[str]:
        """Users this connection watches the presence of (kept by presence.PresenceTracker)."""
        return self._watching or NOBODY

    def watch(self, user_id: str) -> None:
        if self._watching is None:
            self._watching = set()
        self._watching.add(user_id)

    def unwatch(self, user_id: str) -> None:
        if self._watching is not None:
            self._watching.discard(user_id)
            if not self._watching:
                self._watching = None

    @property
    def backlogged(self) -> bool:
        return self.queued_bytes > self.max_queued_bytes // 2

    async def drained(self) -> None:
        """Wait until the queue is back under a quarter of its limit (or closing).

        The reader waits on this before each frame, so a client that sends faster
        than it reads our answers is slowed by TCP instead of filling its queue; only
        what others send it (fan-out, which must never wait) can overflow it.
        """
        if self.backlogged and self.closing is None and not self.broken:
            self._drained = asyncio.get_running_loop().create_future()
            try:
                await self._drained
            finally:
                self._drained = None

    def close(self, reason: CloseReason) -> None:
        """Close with an error frame and `reason`'s code; the first reason wins."""
        if self.closing is not None:
            return
        self.closing = reason
        self._queue = None
        self._soon = None
        self.queued_bytes = 0
        self._release()
        self.interrupt()

    # --- the serving task's side -----------------------------------------------------------

    def start_reading(self) -> None:
        """The current task reads this socket until `stop_reading`: `interrupt` (a
        close, a failed send) cancels it, as if the client had gone quiet."""
        self._reader = asyncio.current_task()

    def stop_reading(self, cancelled: asyncio.CancelledError | None = None) -> None:
        """Called by the reader when done; with the CancelledError it caught, raises
        it again unless it was only ours (`interrupt`), and nobody else's too."""
        reader, self._reader = self._reader, None
        if cancelled is not None:
            task = asyncio.current_task()
            if reader is not None or task is None or task.uncancel() > 0:
                raise cancelled

    def interrupt(self) -> None:
        """Stop the reader, unless it is the caller (it sees `closing` itself)."""
        reader = self._reader
        if reader is not None and reader is not asyncio.current_task():
            self._reader = None  # tells `stop_reading` the cancel was ours
            reader.cancel()

    def restart(self) -> None:
        """The server stops (`codes.is_server_restart`): the reader has returned, every
        frame it read is answered in the queue; `finish` sends them, then closes."""
        self.restarting = True

    async def finish(self) -> None:
        """If we close: the frame in flight (or, for a restart, every queued frame),
        then the error frame and the close; a client that takes none of it gets
        `close_grace` seconds."""
        reason = self.closing or (SERVER_RESTART if self.restarting else None)
        if reason is None or self.broken:
            return
        self._send_soon()  # frames accepted before the restart go before the close
        with contextlib.suppress(TimeoutError, *SEND_FAILED):
            async with asyncio.timeout(self.close_grace):
                if self._writer is not None:  # it stops before its next frame if closing
                    await asyncio.wait({self._writer})
                await self.ws.send_text(self.closing_frame(reason.message))
                await self.ws.close(reason.code, reason.message)

    def closing_frame(self, message: str) -> str:
        """The frame that says why we close (a protocol may shape it its own way)."""
        return error_frame(message)

    async def stop_writer(self) -> None:
        writer = self._writer
        if writer is not None and not writer.done():
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer

    # --- the writer ------------------------------------------------------------------------

    def _release(self) -> None:
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)

    async def _write_loop(self) -> None:
        # The client may be gone at any send: that ends the socket.
        try:
            await self._write()
        except SEND_FAILED:
            self.broken = True
            self.queued_bytes = 0
            self._release()
            self.interrupt()
        finally:
            self._writer = None
            self._queue = None  # empty, or no longer wanted

    async def _write(self) -> None:
        queue = self._queue
        write = self.write_frames
        while queue and self.closing is None and not self.broken:
            if write is not None:  # what has piled up, in one write if the transport takes it
                batch, cost = take_batch(queue)
                if write(batch):
                    for _ in batch:
                        queue.popleft()
                    self._sent(cost)
                    continue
            frame = queue.popleft()  # waits for the transport, or raises if it is gone
            self._sent(frame_cost(frame))
            await self.ws.send_text(frame)

    def _sent(self, cost: int) -> None:
        self.queued_bytes -= cost
        if self.queued_bytes <= self.max_queued_bytes // 4:
            self._release()


def take_batch(queue: deque[str]) -> tuple[list[str], int]:
    """The first frames of `queue` up to `WRITE_BATCH_BYTES` (at least one), and their cost."""
    batch: list[str] = []
    cost = 0
    for frame in queue:
        size = frame_cost(frame)
        if batch and cost + size > WRITE_BATCH_BYTES:
            break
        batch.append(frame)
        cost += size
    return batch, cost
