"""One circuit breaker per Redis server in a process, shared by every Redis adapter.

A hung Redis (not a dead one: connections open, nothing answers) costs a full call
budget per command, and a request makes several: a message send took five budgets
(issue 15 §2). So the first failure opens the breaker and every Redis call of the
process then fails at once with its port's "unavailable" error, and each feature
takes its degraded path (docs/operations.md). Every `retry_after` seconds one call is
let through as a probe: its success closes the breaker, its failure keeps it open.

No library: aiobreaker (last release 2021) counts failures before opening and has no
single-probe half-open state; these 60 lines are the exact rule, and tested
(tests/unit/test_redis_breaker.py).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from urllib.parse import urlsplit

log = logging.getLogger("agora.redis")

# Between probes while open: a Redis back from a restart is used again within this.
RETRY_AFTER = 1.0


class RedisBreaker:
    """closed (calls go through) -> open on a failure (calls fail fast) -> one probe
    after `retry_after` (half-open) -> closed on its success, open again on failure."""

    def __init__(
        self,
        name: str,
        retry_after: float = RETRY_AFTER,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.retry_after = retry_after
        self._clock = clock
        self._opened_at: float | None = None  # None: closed
        self._probing = False

    @property
    def open(self) -> bool:
        return self._opened_at is not None

    def allow(self) -> bool:
        """May a call go to Redis now? While open, only one probe per `retry_after`."""
        if self._opened_at is None:
            return True
        if self._probing or self._clock() - self._opened_at < self.retry_after:
            return False
        self._probing = True
        return True

    def succeeded(self) -> None:
        if self._opened_at is not None:
            log.warning("Redis %s answers again: calls go through", self.name)
        self._opened_at = None
        self._probing = False

    def abandoned(self) -> None:
        """A call allowed through ended without an answer either way (cancelled)."""
        self._probing = False

    def failed(self, error: str) -> None:
        if self._opened_at is None:
            log.warning(
                "Redis %s unavailable (%s): failing fast, probing every %s s",
                self.name,
                error,
                self.retry_after,
            )
        self._opened_at = self._clock()
        self._probing = False


_BREAKERS: dict[str, RedisBreaker] = {}


def breaker_for(url: str) -> RedisBreaker:
    """The process's breaker of the Redis server at `url` (host, port and database)."""
    parts = urlsplit(url)
    name = f"{parts.hostname}:{parts.port or 6379}{parts.path or '/0'}"
    breaker = _BREAKERS.get(name)
    if breaker is None:
        breaker = _BREAKERS[name] = RedisBreaker(name)
    return breaker
