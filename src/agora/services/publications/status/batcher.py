"""Micro-batching: items submitted one by one, concurrently, are applied in batches.

Each `submit` waits for its own item's outcome, so a caller keeps a one-item contract
(the bus acks a delivery only when its handler returns) while the work behind it is done
for many items at once. A batch starts with the oldest waiting item and closes when it
holds `max_size` items or `max_wait` seconds after that item arrived, whichever comes
first. One batch is applied at a time; items arriving meanwhile gather for the next one,
so under load batches fill up by themselves and at a trickle an item waits at most
`max_wait`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")

# Applies a batch; item i of the answer is None (done) or the exception for item i.
ApplyBatch = Callable[[list[T]], Awaitable[Sequence[BaseException | None]]]


@dataclass(slots=True)
class _Waiting(Generic[T]):
    item: T
    outcome: asyncio.Future[None]
    arrived: float


class MicroBatcher(Generic[T]):
    def __init__(self, apply: ApplyBatch[T], *, max_size: int, max_wait: float) -> None:
        if max_size < 1 or max_wait < 0:
            raise ValueError("max_size must be at least 1 and max_wait not negative")
        self._apply = apply
        self.max_size = max_size
        self.max_wait = max_wait
        self._waiting: list[_Waiting[T]] = []
        self._full = asyncio.Event()
        self._worker: asyncio.Task[None] | None = None

    async def submit(self, item: T) -> None:
        """Returns once `item`'s batch is applied; raises the item's exception if any."""
        loop = asyncio.get_running_loop()
        waiting = _Waiting(item, loop.create_future(), loop.time())
        self._waiting.append(waiting)
        if len(self._waiting) >= self.max_size:
            self._full.set()
        if self._worker is None:
            # Runs only while there is work: nothing to start or stop with the app.
            self._worker = asyncio.create_task(self._run(), name="micro-batcher")
        await waiting.outcome

    async def _run(self) -> None:
        try:
            while self._waiting:
                await self._until_due()
                batch = self._waiting[: self.max_size]
                del self._waiting[: self.max_size]
                self._full.clear()
                if len(self._waiting) >= self.max_size:
                    self._full.set()
                # A caller that stopped waiting (its task was cancelled: the bus closes
                # and the message goes back to the queue) needs nothing applied.
                batch = [w for w in batch if not w.outcome.done()]
                if batch:
                    await self._apply_and_resolve(batch)
        except asyncio.CancelledError:
            # The loop is going away: nobody is left to apply what waits.
            for waiting in self._waiting:
                waiting.outcome.cancel()
            self._waiting.clear()
            raise
        finally:
            self._worker = None

    async def _until_due(self) -> None:
        deadline = self._waiting[0].arrived + self.max_wait
        delay = deadline - asyncio.get_running_loop().time()
        if len(self._waiting) < self.max_size and delay > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._full.wait(), delay)

    async def _apply_and_resolve(self, batch: list[_Waiting[T]]) -> None:
        try:
            outcomes: Sequence[BaseException | None] = await self._apply([w.item for w in batch])
        except asyncio.CancelledError:
            for waiting in batch:
                waiting.outcome.cancel()
            raise
        except Exception as error:  # `apply` should answer per item; if not, all share it
            outcomes = [error] * len(batch)
        for waiting, outcome in zip(batch, outcomes, strict=True):
            if waiting.outcome.done():
                continue
            if outcome is None:
                waiting.outcome.set_result(None)
            else:
                waiting.outcome.set_exception(outcome)
