"""MicroBatcher: concurrent submits become batches; each caller gets its own outcome."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from agora.services.publications.status.batcher import MicroBatcher


class Recorder:
    """An `apply` that records its batches and fails the items listed in `failing`."""

    def __init__(self, delay: float = 0.0, failing: frozenset[int] = frozenset()) -> None:
        self.batches: list[list[int]] = []
        self.delay = delay
        self.failing = failing

    async def __call__(self, items: list[int]) -> Sequence[BaseException | None]:
        self.batches.append(items)
        await asyncio.sleep(self.delay)
        return [ValueError(item) if item in self.failing else None for item in items]


async def test_concurrent_submits_share_one_batch_up_to_max_size() -> None:
    apply = Recorder()
    batcher = MicroBatcher(apply, max_size=4, max_wait=10.0)
    # A full batch goes at once: the 10 s wait is never reached.
    await asyncio.wait_for(asyncio.gather(*(batcher.submit(n) for n in range(8))), 1.0)
    assert apply.batches == [[0, 1, 2, 3], [4, 5, 6, 7]]


async def test_a_partial_batch_goes_after_max_wait() -> None:
    apply = Recorder()
    batcher = MicroBatcher(apply, max_size=100, max_wait=0.05)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await asyncio.gather(batcher.submit(1), batcher.submit(2))
    assert 0.04 <= loop.time() - started < 0.5
    assert apply.batches == [[1, 2]]


async def test_items_arriving_during_a_batch_form_the_next_one() -> None:
    apply = Recorder(delay=0.05)
    batcher = MicroBatcher(apply, max_size=100, max_wait=0.0)
    first = asyncio.ensure_future(batcher.submit(1))
    await asyncio.sleep(0.01)  # batch [1] is being applied
    later = [asyncio.ensure_future(batcher.submit(n)) for n in (2, 3, 4)]
    await asyncio.gather(first, *later)
    assert apply.batches == [[1], [2, 3, 4]]


async def test_each_caller_gets_its_own_outcome() -> None:
    batcher = MicroBatcher(Recorder(failing=frozenset({2})), max_size=10, max_wait=0.01)
    outcomes = await asyncio.gather(*(batcher.submit(n) for n in (1, 2, 3)), return_exceptions=True)
    assert outcomes[0] is None and outcomes[2] is None
    assert isinstance(outcomes[1], ValueError) and outcomes[1].args == (2,)


async def test_an_apply_that_raises_fails_its_batch_and_the_next_batch_still_runs() -> None:
    calls: list[list[int]] = []

    async def apply(items: list[int]) -> Sequence[BaseException | None]:
        calls.append(items)
        if len(calls) == 1:
            raise RuntimeError("database down")
        return [None] * len(items)

    batcher = MicroBatcher(apply, max_size=2, max_wait=0.01)
    outcomes = await asyncio.gather(*(batcher.submit(n) for n in range(4)), return_exceptions=True)
    assert [type(o) for o in outcomes] == [RuntimeError, RuntimeError, type(None), type(None)]
    assert calls == [[0, 1], [2, 3]]


async def test_a_cancelled_caller_is_left_out_of_its_batch() -> None:
    apply = Recorder()
    batcher = MicroBatcher(apply, max_size=10, max_wait=0.05)
    gone = asyncio.ensure_future(batcher.submit(1))
    kept = asyncio.ensure_future(batcher.submit(2))
    await asyncio.sleep(0)
    gone.cancel()
    await kept
    assert apply.batches == [[2]]


async def test_the_worker_ends_when_idle_and_comes_back() -> None:
    apply = Recorder()
    batcher = MicroBatcher(apply, max_size=10, max_wait=0.0)
    await batcher.submit(1)
    await asyncio.sleep(0)
    assert batcher._worker is None  # nothing to stop when the app shuts down
    await batcher.submit(2)
    assert apply.batches == [[1], [2]]


def test_sizes_are_checked() -> None:
    with pytest.raises(ValueError, match="max_size"):
        MicroBatcher(Recorder(), max_size=0, max_wait=0.01)
