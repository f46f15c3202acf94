"""Batches of one author's sends to one conversation: their checks, their stores (issue 13).

On PostgreSQL each statement costs a round trip, and a store also waits for its commit
to reach the disk (about 1 ms, most of a send's wait). A socket runs a burst of sends
at once (socket/send_window.py), so their statements are grouped: items queue here per
key (author, conversation) in the order they were submitted, and one flush at a time
per key runs what has queued, up to `max_batch`, in one call of the batch function
(one statement; for stores, one commit); what queues meanwhile goes in the next
batch. An item alone is a batch of one, run at once: a batch never waits to fill.

`MessagingService` keeps two (sending.py): the checks before a send (is the author a
member, did they already send this client id: `SendRepository.check_sends`) and the
stores (group commit: `SendRepository.store_messages`).

The batch function is given the key and the items, and answers a result or an
exception per item, in their order: each item gets its own. An error of the whole call
(the database unreachable) is every item's. An item whose caller was cancelled while it
waited is not taken out of its batch: a store may then happen, as when a cancel came
during its own statement.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")
Key = tuple[str, str]  # (author id, conversation id)

MAX_BATCH = 64  # items per call at most, unless the batches are given fewer


class Batches(Generic[Item, Result]):
    def __init__(
        self,
        run: Callable[[Key, list[Item]], Awaitable[Sequence[Result | Exception]]],
        max_batch: int | None = None,
    ) -> None:
        self._run = run
        self._max_batch = max_batch
        # Per key, while a flush runs for it: the items it takes next.
        self._queued: dict[Key, list[tuple[Item, asyncio.Future[Result]]]] = {}
        self._flushes: set[asyncio.Task[None]] = set()

    def __len__(self) -> int:  # keys being flushed: none once every item is done
        return len(self._queued)

    def submit(self, key: Key, item: Item) -> asyncio.Future[Result]:
        """Queue `item` behind the items submitted before under `key`; the future is
        its result."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[Result] = loop.create_future()
        queued = self._queued.get(key)
        if queued is not None:  # a flush runs: it takes this one next
            queued.append((item, done))
            return done
        self._queued[key] = [(item, done)]
        flush = loop.create_task(self._flush(key))
        self._flushes.add(flush)
        flush.add_done_callback(self._flushes.discard)
        return done

    async def _flush(self, key: Key) -> None:
        queued = self._queued[key]
        try:
            while queued:
                size = self._max_batch or MAX_BATCH
                batch = queued[:size]
                del queued[:size]
                try:
                    results = await self._run(key, [item for item, _ in batch])
                except Exception as error:  # the whole batch failed: each item says so
                    results = [error] * len(batch)
                except BaseException:  # cancelled (the server stops): so are its items
                    for _, done in batch:
                        done.cancel()
                    raise
                for (_, done), result in zip(batch, results, strict=True):
                    if done.done():  # its caller was cancelled meanwhile
                        continue
                    if isinstance(result, Exception):
                        done.set_exception(result)
                    else:
                        done.set_result(result)
        finally:
            del self._queued[key]
            for _, done in queued:  # left only when this flush is cancelled
                done.cancel()
