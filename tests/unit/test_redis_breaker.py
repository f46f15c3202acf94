"""The Redis circuit breaker's rule (issue 15 §2): open on the first failure, fail fast,
one probe per interval, closed by a success."""

from __future__ import annotations

import logging

import pytest

from agora.adapters.redis_breaker import RedisBreaker, breaker_for


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_open_on_the_first_failure_then_one_probe_per_interval(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    breaker = RedisBreaker("r", retry_after=1.0, clock=clock)
    assert breaker.allow() and not breaker.open
    with caplog.at_level(logging.WARNING, logger="agora.redis"):
        breaker.failed("timeout")
        assert breaker.open and not breaker.allow()  # fails fast at once
        clock.now += 0.9
        assert not breaker.allow()
        clock.now += 0.2
        assert breaker.allow()  # the probe
        assert not breaker.allow()  # only one at a time
        breaker.failed("timeout again")
        assert not breaker.allow()
        clock.now += 1.1
        assert breaker.allow()
        breaker.succeeded()
        assert not breaker.open and breaker.allow() and breaker.allow()
    messages = [record.getMessage() for record in caplog.records]
    assert len(messages) == 2, messages  # opened once (not at each failure), closed once
    assert "failing fast" in messages[0] and "answers again" in messages[1]


def test_an_abandoned_probe_lets_another_one_through() -> None:
    clock = Clock()
    breaker = RedisBreaker("r", retry_after=1.0, clock=clock)
    breaker.failed("down")
    clock.now += 1.5
    assert breaker.allow()
    breaker.abandoned()  # cancelled: says nothing of Redis
    assert breaker.allow()


def test_one_breaker_per_redis_server() -> None:
    one = breaker_for("redis://10.1.2.3:6380/0")
    assert breaker_for("redis://10.1.2.3:6380/0?x=1") is one
    assert breaker_for("redis://10.1.2.3:6380/1") is not one
