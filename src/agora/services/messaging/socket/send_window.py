"""The `message:send` frames of one socket that run side by side (issue 13).

A client sends a burst of messages without waiting for each reply (phoenix.js pushes
as soon as the socket is open). Handled one after the other, each send held the next
one's check behind its own store: on PostgreSQL two round trips per message, with the
server idle meanwhile. Sends now start in frame order and run side by side, up to
`MAX_SENDS` per socket: their checks overlap, and their stores share statements (group
commit, service/batches.py). `MessagingService.send` stores and pushes them in
the order they started (service/send_order.py), so seqs still follow the frames.

Every other frame (a join, a leave, an edit, a read...) first waits until the sends
before it are done, as when one frame waited for the last: what a client did in order
is still done in order, sends apart. A socket that ends waits for its sends too (their
replies go out before the close), and a socket cancelled meanwhile cancels them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

MAX_SENDS = 32  # in flight per socket; the frame after them waits for one to end


class SendWindow:
    __slots__ = ("_running",)

    def __init__(self) -> None:
        self._running: set[asyncio.Task[None]] = set()

    def __len__(self) -> int:
        return len(self._running)

    async def start(self, send: Coroutine[Any, Any, None]) -> None:
        """Start `send` as a task, once fewer than MAX_SENDS run (the reader waits here,
        so a client that sends faster than we store is slowed by TCP)."""
        while len(self._running) >= MAX_SENDS:
            await asyncio.wait(self._running, return_when=asyncio.FIRST_COMPLETED)
        task = asyncio.get_running_loop().create_task(send)
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def settle(self) -> None:
        """Wait until every send started is done (they never raise: each answers its
        own errors)."""
        while self._running:
            await asyncio.wait(tuple(self._running))

    def cancel(self) -> None:
        for task in self._running:
            task.cancel()
