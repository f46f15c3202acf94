"""A real uvicorn server for an ASGI app, on a free port, inside a test's event loop."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from typing import Any

import uvicorn


@contextlib.asynccontextmanager
async def serving(app: Any, *, force_exit: bool = True, **config: Any) -> AsyncIterator[str]:
    """Serve `app` on 127.0.0.1 and a free port; yields `http://127.0.0.1:<port>`.

    `config` goes to `uvicorn.Config` (default: no lifespan, warnings only). With
    `force_exit` the server does not wait for open connections when the test ends."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(app, **{"log_level": "warning", "lifespan": "off", **config})
    )
    # Ctrl-C stays pytest's: the server's lifetime is the test's.
    server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign,assignment]
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        for _ in range(500):
            if server.started or task.done():
                break
            await asyncio.sleep(0.01)
        if task.done():
            task.result()
        assert server.started, "uvicorn did not start"
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        server.force_exit = force_exit
        await asyncio.wait_for(task, 15)
        sock.close()
