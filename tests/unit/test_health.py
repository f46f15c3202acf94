"""The readiness logic (`agora.runtime.health`): results, time bounds, the cache, the wait."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from agora.runtime.health import (
    OK,
    Probe,
    ProbeRunner,
    Readiness,
    Report,
    masked,
    wait_until_reachable,
)


def counting_probe(names: tuple[str, ...], answers: list[object]) -> tuple[Probe, list[int]]:
    """A probe answering `answers` in turn (an exception is raised); counts its runs."""
    runs = [0]

    async def run() -> dict[str, str]:
        runs[0] += 1
        answer = answers[min(runs[0], len(answers)) - 1]
        if isinstance(answer, BaseException):
            raise answer
        return dict.fromkeys(names, OK)

    return Probe(names, "somewhere", run), runs


async def test_a_failing_probe_names_its_backend_and_leaves_the_rest_unknown() -> None:
    probe, _ = counting_probe(("database", "schema"), [ConnectionError("refused")])
    results = await ProbeRunner().run(probe)
    assert results == {"database": "unreachable: ConnectionError: refused", "schema": "unknown"}


async def test_a_hung_probe_answers_timeout_within_its_bound() -> None:
    async def hangs() -> dict[str, str]:
        await asyncio.Event().wait()
        return {}

    began = time.monotonic()
    results = await ProbeRunner(timeout=0.2).run_all(
        [Probe(("redis",), "x", hangs), counting_probe(("amqp",), [True])[0]]
    )
    assert results == {"redis": "timeout", "amqp": OK}
    assert time.monotonic() - began < 1.0


async def test_a_probe_that_ignores_its_cancel_still_answers_in_time() -> None:
    release = asyncio.Event()

    async def stubborn() -> dict[str, str]:
        while not release.is_set():
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                continue  # a driver that swallows the cancel
        return {}

    began = time.monotonic()
    assert await ProbeRunner(timeout=0.2).run(Probe(("db",), "x", stubborn)) == {"db": "timeout"}
    assert time.monotonic() - began < 1.0
    release.set()


async def test_readiness_measures_once_per_window_however_many_ask() -> None:
    probe, runs = counting_probe(("redis",), [True, ConnectionError("gone")])
    readiness = Readiness([probe], cache_seconds=0.3)
    reports = await asyncio.gather(*(readiness.report() for _ in range(20)))
    assert runs[0] == 1
    assert all(report.ready for report in reports)
    assert (await readiness.report()).ready  # still the cached report
    await asyncio.sleep(0.35)
    late = await readiness.report()
    assert runs[0] == 2
    assert not late.ready
    assert late.body() == {
        "status": "not ready",
        "checks": {"redis": "unreachable: ConnectionError: gone"},
    }


def test_a_report_is_ready_only_when_every_check_is_ok() -> None:
    assert Report({"database": OK, "workers": OK}).ready
    assert not Report({"database": OK, "workers": "stopped: auth outbox relay"}).ready
    assert Report({}).body() == {"status": "ready", "checks": {}}


async def test_the_wait_returns_once_every_backend_answers_and_logs_each_try(
    caplog: pytest.LogCaptureFixture,
) -> None:
    down = ConnectionError("refused")
    redis, redis_runs = counting_probe(("redis",), [down, down, True])
    database, _ = counting_probe(("database", "schema"), [True])
    with caplog.at_level(logging.WARNING, logger="agora.health"):
        await asyncio.wait_for(wait_until_reachable([database, redis]), timeout=5)
    assert redis_runs[0] == 3
    waits = [r.getMessage() for r in caplog.records if "waiting for" in r.getMessage()]
    assert len(waits) == 2
    assert all(m.startswith("waiting for redis at somewhere: unreachable") for m in waits)


def test_masked_hides_the_password_only() -> None:
    assert masked("amqp://guest:secret@broker:5672/vhost") == "amqp://guest:***@broker:5672/vhost"
    assert masked("redis://:secret@cache:6379/0") == "redis://:***@cache:6379/0"
    assert masked("redis://cache:6379/0") == "redis://cache:6379/0"
    assert masked("") == ""
