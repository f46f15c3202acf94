"""Background tasks: the one way every service stops its own."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger("agora.tasks")

# How often a cancel is repeated while the task has not finished.
CANCEL_REPEAT = 0.1


async def cancel_and_wait(task: asyncio.Task[Any] | None) -> None:
    """Cancel `task` and wait until it has finished, so nothing it does outlives its owner.

    A single cancel is not enough: a library that catches it (a driver cleaning up a
    connection, a timeout racing the cancel) lets the loop go on, and a shutdown waiting
    on it would hang. The cancel is repeated until the task ends, as anyio's level
    cancellation does."""
    if task is None:
        return
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=CANCEL_REPEAT)
    with contextlib.suppress(asyncio.CancelledError):
        await task


def running(*tasks: asyncio.Task[Any] | None) -> bool:
    """Whether every task was started and has not ended (readiness: "workers")."""
    return bool(tasks) and all(task is not None and not task.done() for task in tasks)


def every(interval: float, job: Callable[[], Awaitable[None]], name: str) -> asyncio.Task[None]:
    """A task running `job` every `interval` seconds until cancelled (`cancel_and_wait`).
    A failing round is logged and the next one tries again: a backend hiccup must not
    end the loop."""

    async def loop() -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await job()
            except Exception:
                log.exception("periodic job %s failed", name)

    return asyncio.create_task(loop(), name=name)


class Periodic:
    """Periodic jobs that start, report alive and stop together (a presence tracker's
    refresh and recheck)."""

    def __init__(self) -> None:
        self._tasks: list[asyncio.Task[None]] = []

    def start(self, *jobs: tuple[float, Callable[[], Awaitable[None]], str]) -> None:
        """Each job as (interval, job, name), run by `every`."""
        self._tasks = [every(interval, job, name) for interval, job, name in jobs]

    @property
    def alive(self) -> bool:
        """Every job still runs (readiness: "workers")."""
        return running(*self._tasks)

    async def stop(self) -> None:
        for task in self._tasks:
            await cancel_and_wait(task)
        self._tasks = []
