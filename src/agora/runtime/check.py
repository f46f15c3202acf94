"""`agora check`: what the current settings would run, and each readiness check once.

The checks are `/readyz`'s own (`runtime/health.py`), on backends built exactly as
`agora serve` builds them; only the workers, which exist in a running server, are left
out. Nothing is served and no gRPC port is opened.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from agora.core.settings import Settings
from agora.runtime.backends import build_backends
from agora.runtime.health import OK, PROBE_TIMEOUT, ProbeRunner, backend_probes, masked

# Starting the backends connects to the broker: one attempt, bounded like a probe's.
START_TIMEOUT = 5.0


def configuration(settings: Settings) -> list[tuple[str, str]]:
    """What `agora serve` would use, secrets masked."""

    def backend(url: str, embedded: str) -> str:
        return masked(url) if url else f"embedded ({embedded})"

    grpc = f"{settings.grpc_host}:{settings.grpc_port}" if settings.grpc_port else "off"
    return [
        ("environment", settings.env),
        ("http", f"{settings.host}:{settings.port}"),
        ("grpc", grpc),
        ("database", backend(settings.database_url, settings.resolved_database_url)),
        ("redis", backend(settings.redis_url, "in-process cache, pub/sub and presence")),
        ("amqp", backend(settings.amqp_url, "in-process bus")),
        ("users", settings.users_grpc_target or "this process's database"),
        ("media", masked(settings.media_url) or f"directory {settings.resolved_media_dir}"),
        ("notify", masked(settings.notify_url) or "log lines"),
    ]


async def run_checks(settings: Settings) -> dict[str, str]:
    backends = build_backends(settings)
    try:
        try:
            async with asyncio.timeout(START_TIMEOUT):
                await backends.start()  # a broker that is down is retried in background
        except TimeoutError:
            pass  # the amqp probe says so
        return await ProbeRunner(PROBE_TIMEOUT).run_all(backend_probes(settings, backends))
    finally:
        await backends.close()


def check(settings: Settings, out: Callable[[str], None] = print) -> int:
    """Print the configuration and the checks; 0 if every check passes, else 1."""
    for name, value in configuration(settings):
        out(f"{name:<12} {value}")
    results = asyncio.run(run_checks(settings))
    out("")
    for name, result in results.items():
        out(f"{name:<12} {result}")
    failed = [name for name, result in results.items() if result != OK]
    out("")
    out(f"not ready: {', '.join(failed)}" if failed else "ready")
    return 1 if failed else 0
