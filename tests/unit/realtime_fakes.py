"""Stand-ins for the realtime unit tests: a clock to move by hand, and an ASGI WebSocket
channel that records what a `Connection` sends (or stalls, as a peer reading nothing)."""

from __future__ import annotations

import asyncio
from collections.abc import MutableMapping, Sequence
from typing import Any

import orjson
from starlette.websockets import WebSocket

from agora.realtime.connection import WRITE_FRAMES, Connection


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def sent(conn: Connection) -> list[Any]:
    """The frames `conn` has sent since the last call, then those still queued (its
    writer had no turn yet), taken."""
    queued = [orjson.loads(frame) for frame in conn._queue or ()]
    if conn._queue:
        conn._queue.clear()
        conn.queued_bytes = 0
    return CHANNELS[id(conn.ws)].take() + queued


class Socket:
    """An ASGI WebSocket channel: what a server would hand Starlette's WebSocket.

    `stalled` makes every send wait, as a transport whose peer reads nothing does.
    `direct` offers the server's direct writes (`WRITE_FRAMES`, as uvicorn with
    `runtime.websocket_protocol`): each call is one `batches` entry, refused while
    `paused` (the transport's buffer is over its high-water mark) or `stalled`."""

    def __init__(self, stalled: bool = False, direct: bool = False) -> None:
        self.sent: list[MutableMapping[str, Any]] = []
        self.stalled = stalled
        self.direct = direct
        self.paused = False
        self.batches: list[list[str]] = []
        self.incoming: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.incoming.put_nowait({"type": "websocket.connect"})

    async def receive(self) -> dict[str, Any]:
        return await self.incoming.get()

    async def send(self, message: MutableMapping[str, Any]) -> None:
        if self.stalled and message["type"] != "websocket.accept":
            await asyncio.Event().wait()
        self.sent.append(message)

    def write_frames(self, texts: Sequence[str]) -> bool:
        if self.paused or self.stalled:
            return False
        self.batches.append(list(texts))
        self.sent.extend({"type": "websocket.send", "text": text} for text in texts)
        return True

    async def websocket(self) -> WebSocket:
        scope: dict[str, Any] = {
            "type": "websocket",
            "path": "/",
            "headers": [],
            "query_string": b"",
        }
        if self.direct:
            scope["extensions"] = {WRITE_FRAMES: self.write_frames}
        ws = WebSocket(scope, self.receive, self.send)
        await ws.accept()
        CHANNELS[id(ws)] = self
        return ws

    def take(self) -> list[Any]:
        """The frames sent since the last `take`."""
        texts = self.texts()
        self.sent.clear()
        return texts

    def texts(self) -> list[Any]:
        return [orjson.loads(m["text"]) for m in self.sent if m["type"] == "websocket.send"]

    def close_code(self) -> int | None:
        closes = [m for m in self.sent if m["type"] == "websocket.close"]
        return closes[-1]["code"] if closes else None


CHANNELS: dict[int, Socket] = {}  # id of a WebSocket -> its channel


async def connection(
    channel: Socket, user_id: str = "1", limit: int = 1000, grace: float = 0.05, **kw: Any
) -> Connection:
    return Connection(
        await channel.websocket(),
        user_id=user_id,
        login=f"user{user_id}",
        session_jti=kw.get("jti", "jti-1"),
        session_iat=kw.get("iat", 100),
        ip="127.0.0.1",
        max_queued_bytes=limit,
        close_grace=grace,
    )
