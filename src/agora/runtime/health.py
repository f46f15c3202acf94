"""Health and readiness of one process, written once for `/readyz`, `agora check` and
the wait for backends at a production start.

A `Probe` checks one backend in one round trip and answers one or more named checks
("database" and "schema" come from the same query). `Readiness` runs every probe at
once, each bounded by `PROBE_TIMEOUT` (a hung backend answers "timeout", never hangs the
probe), and keeps the report for `CACHE_SECONDS`: probes in a burst, from every
orchestrator and nginx, share one round trip per backend.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from sqlalchemy.engine import make_url
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from agora.core.settings import Settings
from agora.db.migrate import schema_is_current
from agora.ports.backends import Backends
from agora.web.service_app import ServiceApp

log = logging.getLogger("agora.health")

OK = "ok"
PROBE_TIMEOUT = 1.5
CACHE_SECONDS = 1.0
SCHEMA_BEHIND = "not at the code's revision: run `agora db upgrade`"
WAIT_BACKOFF = (0.5, 10.0)  # first and longest pause between tries at a production start


@dataclass(frozen=True)
class Probe:
    """`names[0]` is the backend's own check (reachable or not); the others are what the
    same round trip also tells ("schema"), "unknown" when the backend cannot answer."""

    names: tuple[str, ...]
    target: str  # what it reaches, secrets masked (logs, `agora check`)
    run: Callable[[], Coroutine[Any, Any, dict[str, str]]]

    def failed(self, problem: str) -> dict[str, str]:
        return {self.names[0]: problem, **dict.fromkeys(self.names[1:], "unknown")}


@dataclass(frozen=True)
class Report:
    checks: dict[str, str]

    @property
    def ready(self) -> bool:
        return all(result == OK for result in self.checks.values())

    def body(self) -> dict[str, object]:
        return {"status": "ready" if self.ready else "not ready", "checks": self.checks}


def masked(url: str) -> str:
    """The URL with its password replaced by `***` (logs, `agora check`)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = f"{parts.username}:***@" if parts.username else ":***@"
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=user + host))


def describe(error: BaseException) -> str:
    text = str(error) or type(error).__name__
    return f"unreachable: {type(error).__name__}: {text}"[:300]


def _chatty_alembic_line(record: logging.LogRecord) -> bool:
    # Alembic logs two INFO lines each time it reads a revision: once a second per probe.
    return not record.getMessage().startswith(("Context impl", "Will assume"))


def backend_probes(settings: Settings, backends: Backends) -> list[Probe]:
    """The database always; Redis and RabbitMQ when configured (embedded ones are in the
    process: nothing to reach)."""
    alembic_log = logging.getLogger("alembic.runtime.migration")
    if _chatty_alembic_line not in alembic_log.filters:
        alembic_log.addFilter(_chatty_alembic_line)

    async def database() -> dict[str, str]:
        current = await schema_is_current(backends.database)
        return {"database": OK, "schema": OK if current else SCHEMA_BEHIND}

    async def redis() -> dict[str, str]:
        await backends.cache.ping()  # the cache, pub/sub and presence share the server
        return {"redis": OK}

    async def amqp() -> dict[str, str]:
        await backends.bus.ping()
        return {"amqp": OK}

    url = make_url(settings.resolved_database_url).render_as_string(hide_password=True)
    probes = [Probe(("database", "schema"), url, database)]
    if settings.redis_url:
        probes.append(Probe(("redis",), masked(settings.redis_url), redis))
    if settings.amqp_url:
        probes.append(Probe(("amqp",), masked(settings.amqp_url), amqp))
    return probes


class ProbeRunner:
    """Runs probes bounded in time. A probe past its time is cancelled and left to end in
    the background: a driver that ignores the cancel must not hold the answer."""

    def __init__(self, timeout: float = PROBE_TIMEOUT) -> None:
        self.timeout = timeout
        self._abandoned: set[asyncio.Task[dict[str, str]]] = set()

    async def run(self, probe: Probe) -> dict[str, str]:
        task = asyncio.create_task(probe.run(), name=f"probe-{probe.names[0]}")
        done, _ = await asyncio.wait({task}, timeout=self.timeout)
        if not done:
            task.cancel()
            self._abandoned.add(task)
            task.add_done_callback(self._abandoned.discard)
            return probe.failed("timeout")
        error = task.exception()
        return probe.failed(describe(error)) if error is not None else task.result()

    async def run_all(self, probes: Sequence[Probe]) -> dict[str, str]:
        results = await asyncio.gather(*(self.run(probe) for probe in probes))
        return {name: result for answer in results for name, result in answer.items()}


class Readiness:
    """The process's readiness report, measured at most once per `cache_seconds`;
    concurrent callers share the measurement in flight."""

    def __init__(
        self,
        probes: Sequence[Probe],
        runner: ProbeRunner | None = None,
        cache_seconds: float = CACHE_SECONDS,
    ) -> None:
        self.probes = list(probes)
        self.runner = runner or ProbeRunner()
        self.cache_seconds = cache_seconds
        self._last: tuple[float, Report] | None = None
        self._measuring: asyncio.Task[Report] | None = None

    async def report(self) -> Report:
        now = asyncio.get_running_loop().time()
        if self._last is not None and now - self._last[0] < self.cache_seconds:
            return self._last[1]
        if self._measuring is None:
            self._measuring = asyncio.create_task(self._measure(), name="readiness")
        # Shielded: a probe request that goes away does not cancel the others' answer.
        return await asyncio.shield(self._measuring)

    async def _measure(self) -> Report:
        try:
            report = Report(await self.runner.run_all(self.probes))
            self._last = (asyncio.get_running_loop().time(), report)
            return report
        finally:
            self._measuring = None


async def wait_until_reachable(probes: Sequence[Probe], runner: ProbeRunner | None = None) -> None:
    """Return once every probe's backend answers; until then, one log line per backend
    still down at each try, with a growing pause (production starts: never serve on a
    silently degraded backend)."""
    runner = runner or ProbeRunner()
    pause, longest = WAIT_BACKOFF
    while True:
        results = await asyncio.gather(*(runner.run(probe) for probe in probes))
        down = [
            (probe, answer[probe.names[0]])
            for probe, answer in zip(probes, results, strict=True)
            if answer[probe.names[0]] != OK
        ]
        if not down:
            return
        for probe, problem in down:
            log.warning(
                "waiting for %s at %s: %s; not ready, next try in %.1f s",
                probe.names[0],
                probe.target,
                problem,
                pause,
                extra={"backend": probe.names[0], "target": probe.target},
            )
        await asyncio.sleep(pause * random.uniform(0.8, 1.2))  # noqa: S311 (jitter)
        pause = min(pause * 2, longest)


def workers_probe(apps: Sequence[ServiceApp], not_started: Callable[[], str | None]) -> Probe:
    """ "workers": every background worker the apps declared (`ServiceApp.workers`) runs.
    `not_started` says why the apps have not started yet (None once they have)."""

    async def workers() -> dict[str, str]:
        if (reason := not_started()) is not None:
            return {"workers": f"not started: {reason}"}
        stopped = [
            f"{app.context.name} {name}"
            for app in apps
            for name, alive in app.workers.items()
            if not alive()
        ]
        return {"workers": f"stopped: {', '.join(stopped)}" if stopped else OK}

    return Probe(("workers",), "this process", workers)


HEALTH_PATHS = ("/healthz", "/readyz")


def health_endpoint(readiness: Readiness) -> ASGIApp:
    """`/healthz`: the process answers (200, always). `/readyz`: 200 when every check
    passes, else 503; the body names each check and its result."""

    async def endpoint(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] not in ("GET", "HEAD"):
            answer = JSONResponse({"error": "Method not allowed"}, 405, {"Allow": "GET, HEAD"})
        elif scope["path"] == "/healthz":
            answer = JSONResponse({"status": "ok"}, headers=NO_STORE)
        else:
            report = await readiness.report()
            answer = JSONResponse(report.body(), 200 if report.ready else 503, NO_STORE)
        await answer(scope, receive, send)

    return endpoint


NO_STORE = {"Cache-Control": "no-store"}
