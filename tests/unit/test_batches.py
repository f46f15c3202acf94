"""Batches of sends (service/batches.py), here of stores (group commit): what queues
while a batch runs goes in the next one, in order; each send gets its own result or
error; nothing is left waiting."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from agora.db.engine import utcnow
from agora.services.messaging.domain import Message
from agora.services.messaging.repository_send import StoreOutcome, StoreResult
from agora.services.messaging.service import batches as batches_module
from agora.services.messaging.service.batches import Batches, Key


class StoreBatches(Batches[Message, StoreResult]):
    """Keyed as `MessagingService` keys its stores: by author and conversation."""

    def submit_draft(self, draft: Message) -> asyncio.Future[StoreResult]:
        return self.submit((draft.author_id, draft.conversation_id), draft)


def draft(client_id: str, author: str = "alice", conversation: str = "c1") -> Message:
    return Message(
        id=uuid.uuid4().hex, conversation_id=conversation, seq=0, version=0,
        author_id=author, client_id=client_id, kind="text", text=client_id, media=None,
        created_at=utcnow(),
    )  # fmt: skip


class Store:
    """Stores batches, numbering their messages; `gate` holds each batch until set."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.last_seq = 0

    async def __call__(self, key: Key, drafts: list[Message]) -> list[StoreResult | Exception]:
        assert all((d.author_id, d.conversation_id) == key for d in drafts)
        self.batches.append([d.client_id for d in drafts])
        await self.gate.wait()
        results: list[StoreResult | Exception] = []
        for d in drafts:
            if d.client_id.startswith("bad"):
                results.append(ValueError(d.client_id))
                continue
            self.last_seq += 1
            results.append(StoreResult(StoreOutcome.STORED_NEW, self.last_seq, self.last_seq))
        return results


async def test_what_queues_during_a_batch_goes_in_the_next_one_in_order() -> None:
    store = Store()
    batches = StoreBatches(store)
    store.gate.clear()
    first = batches.submit_draft(draft("a"))
    await asyncio.sleep(0)  # the first batch is being written
    rest = [batches.submit_draft(draft(name)) for name in ("b", "c", "d")]
    store.gate.set()
    results = await asyncio.gather(first, *rest)
    assert store.batches == [["a"], ["b", "c", "d"]]
    assert [r.seq for r in results] == [1, 2, 3, 4]
    assert len(batches) == 0  # nothing kept once done


async def test_authors_and_conversations_are_batched_apart() -> None:
    store = Store()
    batches = StoreBatches(store)
    await asyncio.gather(
        batches.submit_draft(draft("a")), batches.submit_draft(draft("b", author="bob")),
        batches.submit_draft(draft("c", conversation="c2")), batches.submit_draft(draft("d")),
    )  # fmt: skip
    assert sorted(store.batches) == [["a", "d"], ["b"], ["c"]]


async def test_each_send_gets_its_own_error_and_a_batch_error_is_everyones(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store = Store()
    batches = StoreBatches(store)
    good, bad = batches.submit_draft(draft("good")), batches.submit_draft(draft("bad"))
    assert (await good).outcome is StoreOutcome.STORED_NEW
    with pytest.raises(ValueError, match="bad"):
        await bad

    async def down(key: Key, drafts: list[Message]) -> list[StoreResult | Exception]:
        raise ConnectionError("database unreachable")

    failing = StoreBatches(down)
    both = await asyncio.gather(
        failing.submit_draft(draft("x")), failing.submit_draft(draft("y")), return_exceptions=True
    )
    assert [type(e) for e in both] == [ConnectionError, ConnectionError]
    assert len(failing) == 0


async def test_batches_are_capped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(batches_module, "MAX_BATCH", 2)
    store = Store()
    batches = StoreBatches(store)
    await asyncio.gather(*(batches.submit_draft(draft(str(n))) for n in range(5)))
    assert store.batches == [["0", "1"], ["2", "3"], ["4"]]


async def test_batches_given_a_smaller_cap_keep_it() -> None:
    """The send's checks are capped lower than the stores (a join per client id)."""
    store = Store()
    batches = StoreBatches(store, max_batch=3)
    store.gate.clear()
    first = batches.submit_draft(draft("0"))
    await asyncio.sleep(0)  # the first batch is being written
    rest = [batches.submit_draft(draft(str(n))) for n in range(1, 8)]
    store.gate.set()
    await asyncio.gather(first, *rest)
    assert store.batches == [["0"], ["1", "2", "3"], ["4", "5", "6"], ["7"]]


async def test_a_cancelled_flush_leaves_no_send_waiting() -> None:
    store = Store()
    store.gate.clear()
    batches = StoreBatches(store)
    writing = batches.submit_draft(draft("a"))
    await asyncio.sleep(0)
    queued = batches.submit_draft(draft("b"))
    for flush in tuple(batches._flushes):
        flush.cancel()
    for stored in (writing, queued):
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(stored, 1)
    assert len(batches) == 0
