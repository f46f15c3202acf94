"""The order of a burst of sends (service/send_order.py) and how many run at once
(socket/send_window.py)."""

from __future__ import annotations

import asyncio

import pytest

from agora.services.messaging.service.send_order import SendOrder
from agora.services.messaging.socket import send_window
from agora.services.messaging.socket.send_window import SendWindow


async def test_turns_go_in_the_order_they_were_taken_whoever_is_ready_first() -> None:
    order, done = SendOrder(), []

    async def send(name: str, ready_after: float) -> None:
        turn = order.turn("alice", "c1")
        try:
            await asyncio.sleep(ready_after)
            async with turn:
                done.append(name)
        finally:
            turn.end()

    await asyncio.gather(send("a", 0.03), send("b", 0.0), send("c", 0.01))
    assert done == ["a", "b", "c"]
    assert len(order) == 0  # nothing kept once every send is done


async def test_other_authors_and_conversations_do_not_wait() -> None:
    order = SendOrder()
    first = order.turn("alice", "c1")
    async with first:
        for other in (order.turn("bob", "c1"), order.turn("alice", "c2")):
            async with asyncio.timeout(0.5):
                async with other:
                    pass
    assert len(order) == 0


async def test_a_send_that_fails_early_does_not_let_the_next_overtake_the_one_before() -> None:
    order, done = SendOrder(), []
    first, failed, third = (order.turn("alice", "c1") for _ in range(3))
    failed.end()  # refused before its store
    waiting = asyncio.ensure_future(third.__aenter__())
    await asyncio.sleep(0.02)
    assert not waiting.done()  # still behind the first
    async with first:
        done.append("first")
    await asyncio.wait_for(waiting, 0.5)
    third.end()
    assert done == ["first"] and len(order) == 0


async def test_a_cancelled_waiter_leaves_the_turn_before_it_alone() -> None:
    order = SendOrder()
    first, second, third = (order.turn("alice", "c1") for _ in range(3))
    waiting = asyncio.ensure_future(second.__aenter__())
    await asyncio.sleep(0)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    second.end()
    entered = asyncio.ensure_future(third.__aenter__())
    await asyncio.sleep(0.02)
    assert not entered.done()  # the first still holds its turn, not cancelled
    first.end()
    await asyncio.wait_for(entered, 0.5)
    third.end()
    assert len(order) == 0


async def test_the_window_holds_the_reader_at_its_limit_and_settles(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(send_window, "MAX_SENDS", 3)
    window, release, finished = SendWindow(), asyncio.Event(), []

    async def send(n: int) -> None:
        await release.wait()
        finished.append(n)

    for n in range(3):
        await window.start(send(n))
    fourth = asyncio.ensure_future(window.start(send(3)))
    await asyncio.sleep(0.02)
    assert not fourth.done() and len(window) == 3  # the reader waits for room
    release.set()
    await asyncio.wait_for(fourth, 0.5)
    await asyncio.wait_for(window.settle(), 0.5)
    assert sorted(finished) == [0, 1, 2, 3] and len(window) == 0


async def test_cancel_stops_the_sends_still_running() -> None:
    window = SendWindow()
    stuck = asyncio.Event()
    await window.start(stuck.wait())
    await asyncio.sleep(0)
    window.cancel()
    await asyncio.wait_for(window.settle(), 0.5)
    assert len(window) == 0
