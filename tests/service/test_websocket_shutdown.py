"""`runtime.websocket_protocol` at a shutdown, in a real uvicorn server: the app answers
the frames it has read before the close (1012), and an app slower than the grace is
closed for. (On real processes under load: tests/e2e/test_shutdown.py.)"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import uvicorn
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from agora.realtime.codes import SERVER_RESTART, is_server_restart
from agora.runtime.websocket_protocol import websocket_protocol

GRACE = 0.5
BUSY_FRAME = 0.2  # how long the app takes over "busy": within the grace
SLOW_FRAME = 3.0  # and over "slow": past it


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answers "busy" after BUSY_FRAME, "slow" after SLOW_FRAME, anything else at once;
    on a server restart, says "bye" and closes 1012 itself."""
    assert scope["type"] == "websocket"
    await receive()  # websocket.connect
    await send({"type": "websocket.accept"})
    while True:
        event = await receive()
        if event["type"] == "websocket.disconnect":
            if is_server_restart(event):
                await send({"type": "websocket.send", "text": "bye"})
                await send({"type": "websocket.close", "code": SERVER_RESTART.code})
            return
        text = event.get("text")
        await asyncio.sleep({"busy": BUSY_FRAME, "slow": SLOW_FRAME}.get(text or "", 0))
        await send({"type": "websocket.send", "text": f"answer to {text}"})


@contextlib.asynccontextmanager
async def server() -> AsyncIterator[tuple[uvicorn.Server, str]]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(app, lifespan="off", log_level="warning",
                            ws=websocket_protocol(abort_after=GRACE, user_timeout=30))  # fmt: skip
    served = uvicorn.Server(config)
    served.capture_signals = contextlib.nullcontext  # type: ignore[method-assign,assignment]
    task = asyncio.create_task(served.serve(sockets=[sock]))
    try:
        while not served.started:
            await asyncio.sleep(0.01)
        yield served, f"ws://127.0.0.1:{sock.getsockname()[1]}/"
    finally:
        served.should_exit = True
        await asyncio.wait_for(task, 15)
        sock.close()


async def frames_until_closed(ws: ClientConnection) -> list[str]:
    frames: list[str] = []
    with contextlib.suppress(ConnectionClosed):  # 1012 is not a "closed OK" for websockets
        while True:
            frames.append(str(await ws.recv()))
    return frames


async def test_frames_read_before_a_shutdown_are_answered_before_the_close() -> None:
    async with server() as (served, url), connect(url, proxy=None) as ws:
        await ws.send("ping")
        assert await ws.recv() == "answer to ping"
        await ws.send("busy")
        await asyncio.sleep(0.05)  # read: the app is busy with it
        served.should_exit = True
        frames = await asyncio.wait_for(frames_until_closed(ws), 2 * GRACE + 2)
        # Without the drain, the close went out at once and the answer was dropped.
        assert frames == ["answer to busy", "bye"]
        assert ws.close_code == SERVER_RESTART.code


async def test_an_app_slower_than_the_grace_is_closed_for() -> None:
    async with server() as (served, url), connect(url, proxy=None) as ws:
        await ws.send("slow")
        await asyncio.sleep(0.1)  # read: the app is busy with it
        served.should_exit = True
        asked = time.monotonic()
        frames = await asyncio.wait_for(frames_until_closed(ws), SLOW_FRAME + 5)
        closed_after = time.monotonic() - asked
        assert frames == []  # the slow frame's answer would come after the close
        assert ws.close_code == SERVER_RESTART.code
        # The grace, then the close goes out; not the app's SLOW_FRAME.
        assert closed_after < GRACE + 1.0 < SLOW_FRAME, closed_after
