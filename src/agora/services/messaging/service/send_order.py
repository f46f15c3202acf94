"""Sends of one author to one conversation are stored in the order they were made.

The messaging socket runs a burst of `message:send` frames side by side (issue 13):
the part before the store (the membership check, the limits, the content) may overlap
and end in any order. A turn per send keeps the order of the calls where it shows:
`MessagingService.send` queues its draft for the store (batches.py) only once the
previous send of the same author and conversation has queued its own (or failed). The
batches of one author and conversation are stored one after the other, each queuing
the pushes of its messages before the next is stored. So the frames a client sent in
order get their seqs, and their pushes, in that order, while their stores still share
a statement.

A turn is taken when the send starts, with no await before it: calls started in order
(tasks are started in the order they were created) queue in that order. A send that
fails before its turn comes ends it early, but the next one still waits behind every
earlier one: a turn counts as done only once the turns before it are.
"""

from __future__ import annotations

import asyncio
from types import TracebackType


class SendOrder:
    """Per (author, conversation): the turn of the last send started, while one runs."""

    def __init__(self) -> None:
        self._last: dict[tuple[str, str], asyncio.Future[None]] = {}

    def __len__(self) -> int:  # keys held: none once every send is done
        return len(self._last)

    def turn(self, author_id: str, conversation_id: str) -> Turn:
        key = (author_id, conversation_id)
        before = self._last.get(key)
        mine: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._last[key] = mine
        return Turn(self, key, before, mine)

    def _forget(self, key: tuple[str, str], turn: asyncio.Future[None]) -> None:
        if self._last.get(key) is turn:
            del self._last[key]


class Turn:
    """`async with turn:` waits for the sends before; `end()` lets the next one go
    (also on leaving the block, and safe to call twice)."""

    __slots__ = ("_before", "_key", "_mine", "_order")

    def __init__(
        self,
        order: SendOrder,
        key: tuple[str, str],
        before: asyncio.Future[None] | None,
        mine: asyncio.Future[None],
    ) -> None:
        self._order = order
        self._key = key
        self._before = before
        self._mine = mine

    async def __aenter__(self) -> None:
        if self._before is not None and not self._before.done():
            # asyncio.wait, not await: a cancelled waiter must not cancel the turn before.
            await asyncio.wait((self._before,))

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.end()

    def end(self) -> None:
        if self._mine.done():
            return
        before = self._before
        if before is None or before.done():
            self._done()
        else:  # ended early: done once the turns before it are
            before.add_done_callback(lambda _: self._done())

    def _done(self) -> None:
        if not self._mine.done():
            self._mine.set_result(None)
        self._order._forget(self._key, self._mine)
