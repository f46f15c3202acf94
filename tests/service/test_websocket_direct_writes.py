"""`runtime.websocket_protocol`'s direct writes (`connection.WRITE_FRAMES`) in a real
uvicorn server: a `Connection` on it writes without the ASGI send, and the client gets
every frame whole and in order, with and without permessage-deflate, fanned out or not."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
from starlette.websockets import WebSocket
from websockets.asyncio.client import connect

from agora.realtime.connection import WRITE_FRAMES, Connection
from agora.runtime.websocket_protocol import websocket_protocol
from tests.support.http_server import serving

SIZES = [0, 1, 125, 126, 65535, 65536, 200_000]  # every header length, and past a batch
seen: dict[str, Any] = {}


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Sends a frame of each of `SIZES`, each twice as the same object (a fan-out's
    case: framed once), then non-ASCII text, through a `Connection`."""
    ws = WebSocket(scope, receive, send)
    await ws.accept()
    seen["direct"] = WRITE_FRAMES in scope["extensions"]
    conn = Connection(
        ws,
        user_id="1",
        login="one",
        session_jti="j",
        session_iat=0,
        ip=None,
        max_queued_bytes=1 << 22,
        close_grace=1.0,
    )
    for size in SIZES:
        frame = str(size) + ":" + "x" * size
        assert conn.send(frame) and conn.send(frame)  # the same object twice
    assert conn.send("é😀" * 50)
    with contextlib.suppress(Exception):
        await ws.receive()  # until the client closes
    await conn.stop_writer()


@pytest.mark.parametrize("deflate", [False, True])
async def test_direct_writes_reach_the_client_whole_and_in_order(deflate: bool) -> None:
    seen.clear()
    protocol = websocket_protocol(abort_after=1.0, user_timeout=30)
    async with (
        serving(app, ws=protocol, ws_per_message_deflate=deflate) as base,
        connect(
            base.replace("http", "ws") + "/",
            proxy=None,
            max_size=None,
            compression="deflate" if deflate else None,
        ) as ws,
    ):
        frames = [await ws.recv() for _ in range(2 * len(SIZES) + 1)]
        assert bool(ws.protocol.extensions) is deflate
    expected = [f"{size}:" + "x" * size for size in SIZES for _ in range(2)]
    assert frames == [*expected, "é😀" * 50]
    assert seen["direct"] is True
