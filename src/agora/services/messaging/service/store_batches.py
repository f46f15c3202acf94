"""Group commit of one author's messages to one conversation (issue 13).

On PostgreSQL a message's store waits for its commit to reach the disk (about 1 ms
here, most of a send's wait), and the stores of one author's messages to one
conversation go one after the other, to keep their order (send_order.py). So they are
written in batches: drafts queue here in the order of their sends, and one flush at a
time per (author, conversation) stores what has queued, up to `MAX_BATCH`, in one
transaction (`SendRepository.store_messages`: one statement, one commit); what queues
meanwhile goes in the next batch. A send alone is a batch of one, written at once: a
batch never waits to fill.

Each send gets its own result, or its own error: the function storing a batch answers a
result or an exception per draft (`MessagingService._store_batch`); an error of the
whole batch (the database unreachable) is every draft's. A send cancelled while it
waits for its batch is not taken out of it: its message may be stored, as when a
cancel came during its own statement.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from agora.services.messaging.domain import Message
from agora.services.messaging.repository_send import StoreResult

MAX_BATCH = 64  # drafts per statement at most

StoreBatch = Callable[[list[Message]], Awaitable[list[StoreResult | Exception]]]
Queued = list[tuple[Message, "asyncio.Future[StoreResult]"]]


class StoreBatches:
    def __init__(self, store: StoreBatch) -> None:
        self._store = store
        self._queued: dict[tuple[str, str], Queued] = {}  # while a flush runs for the key
        self._flushes: set[asyncio.Task[None]] = set()

    def __len__(self) -> int:  # keys being flushed: none once every store is done
        return len(self._queued)

    def submit(self, draft: Message) -> asyncio.Future[StoreResult]:
        """Queue `draft` behind the drafts submitted before for its author and
        conversation; the future is its store's result."""
        loop = asyncio.get_running_loop()
        stored: asyncio.Future[StoreResult] = loop.create_future()
        key = (draft.author_id, draft.conversation_id)
        queued = self._queued.get(key)
        if queued is not None:  # a flush runs: it takes this one next
            queued.append((draft, stored))
            return stored
        self._queued[key] = [(draft, stored)]
        flush = loop.create_task(self._flush(key))
        self._flushes.add(flush)
        flush.add_done_callback(self._flushes.discard)
        return stored

    async def _flush(self, key: tuple[str, str]) -> None:
        queued = self._queued[key]
        try:
            while queued:
                batch = queued[:MAX_BATCH]
                del queued[:MAX_BATCH]
                try:
                    results = await self._store([draft for draft, _ in batch])
                except Exception as error:  # the whole batch failed: each send says so
                    results = [error] * len(batch)
                except BaseException:  # cancelled (the server stops): so are its sends
                    for _, stored in batch:
                        stored.cancel()
                    raise
                for (_, stored), result in zip(batch, results, strict=True):
                    if stored.done():  # its send was cancelled meanwhile
                        continue
                    if isinstance(result, Exception):
                        stored.set_exception(result)
                    else:
                        stored.set_result(result)
        finally:
            del self._queued[key]
            for _, stored in queued:  # left only when this flush is cancelled
                stored.cancel()
