"""cancel_and_wait stops a task even when something inside it swallows a cancel."""

import asyncio

import pytest

from agora.core.background import Periodic, cancel_and_wait, every


async def test_a_task_that_swallows_one_cancel_still_stops() -> None:
    swallowed = 0

    async def stubborn_loop() -> None:
        nonlocal swallowed
        while True:
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:  # as a driver cleaning up a connection might
                swallowed += 1
                if swallowed > 1:
                    raise

    task = asyncio.create_task(stubborn_loop())
    await asyncio.sleep(0)
    await asyncio.wait_for(cancel_and_wait(task), timeout=2)
    assert task.cancelled() and swallowed == 2


async def test_an_error_raised_by_the_task_reaches_the_caller() -> None:
    async def failing() -> None:
        await asyncio.sleep(10)

    async def broken() -> None:
        try:
            await failing()
        except asyncio.CancelledError:
            raise RuntimeError("cleanup failed") from None

    task = asyncio.create_task(broken())
    await asyncio.sleep(0)
    with pytest.raises(RuntimeError, match="cleanup failed"):
        await cancel_and_wait(task)


async def test_none_and_finished_tasks_are_fine() -> None:
    await cancel_and_wait(None)
    task = asyncio.create_task(asyncio.sleep(0))
    await task
    await cancel_and_wait(task)


async def test_every_keeps_going_after_a_failing_round() -> None:
    rounds = 0

    async def flaky() -> None:
        nonlocal rounds
        rounds += 1
        if rounds == 1:
            raise ConnectionError("backend hiccup")

    task = every(0.01, flaky, "test-every")
    for _ in range(200):
        if rounds >= 3:
            break
        await asyncio.sleep(0.01)
    await cancel_and_wait(task)
    assert rounds >= 3 and task.cancelled()


async def test_periodic_jobs_are_alive_together_and_stop_together() -> None:
    rounds: list[str] = []

    async def tick() -> None:
        rounds.append("tick")

    periodic = Periodic()
    assert not periodic.alive  # nothing started
    periodic.start((0.01, tick, "tick"), (0.01, tick, "tock"))
    await asyncio.sleep(0.05)
    assert periodic.alive and rounds
    periodic._tasks[1].cancel()  # one job ends: the group is no longer alive
    await asyncio.sleep(0)
    assert not periodic.alive
    await periodic.stop()
    assert not periodic.alive
    count = len(rounds)
    await asyncio.sleep(0.03)
    assert len(rounds) == count  # nothing runs after stop
