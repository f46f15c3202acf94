"""Waiting for something that happens on another task (a consumer, a relay, a socket)."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Callable


async def eventually(check: Callable[[], object], timeout: float = 5.0) -> None:
    """Poll `check` (plain or async) every 20 ms until it is truthy; fail after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(0.02)
