"""/healthz and /readyz of real `agora serve` processes, and `agora check`.

Backends are taken away for real: a private Redis killed and started again on its port,
a database downgraded under a running server, a production start before its Redis exists.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from agora.db.migrate import downgrade, upgrade
from tests.e2e.agora_command import run_agora
from tests.e2e.private_servers import PrivateRedis
from tests.e2e.processes import Deployment, deployment, wait_until
from tests.support.services import require_rabbitmq
from tests.support.waiting import eventually

pytestmark = pytest.mark.e2e


async def readiness(base_url: str) -> tuple[int, dict[str, Any]]:
    async with httpx.AsyncClient(base_url=base_url, timeout=10) as client:
        response = await client.get("/readyz")
    return response.status_code, response.json()


async def healthz(base_url: str) -> int:
    async with httpx.AsyncClient(base_url=base_url, timeout=10) as client:
        return (await client.get("/healthz")).status_code


async def wait_readiness(deployed: Deployment, base_url: str, status: int) -> dict[str, Any]:
    async def reached() -> dict[str, Any] | None:
        code, body = await readiness(base_url)
        return body if code == status else None

    return await wait_until(reached, timeout=20, what=f"/readyz {status}", logs=deployed.logs)


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[tuple[PrivateRedis, Deployment]]:
    amqp_url = require_rabbitmq()
    cache = PrivateRedis(tmp_path / "redis").start()
    try:
        with deployment(tmp_path / "agora", redis_url=cache.url, amqp_url=amqp_url) as deployed:
            yield cache, deployed
    finally:
        cache.kill()


async def test_readiness_follows_redis_away_and_back(
    private_redis: tuple[PrivateRedis, Deployment],
) -> None:
    cache, deployed = private_redis
    url = deployed.start("publications").base_url
    body = await wait_readiness(deployed, url, 200)
    assert body == {
        "status": "ready",
        "checks": {"database": "ok", "schema": "ok", "redis": "ok", "amqp": "ok", "workers": "ok"},
    }

    cache.kill()
    body = await wait_readiness(deployed, url, 503)
    assert body["status"] == "not ready"
    assert body["checks"]["redis"].startswith("unreachable")
    assert body["checks"]["database"] == "ok"
    assert await healthz(url) == 200

    cache.start()  # the same port
    await wait_readiness(deployed, url, 200)
    assert await healthz(url) == 200


async def test_a_database_downgraded_under_a_running_server_is_not_ready(
    private_redis: tuple[PrivateRedis, Deployment],
) -> None:
    _, deployed = private_redis
    url = deployed.start("auth").base_url
    await wait_readiness(deployed, url, 200)

    await asyncio.to_thread(downgrade, deployed.database_url, "-1")
    body = await wait_readiness(deployed, url, 503)
    assert body["checks"]["schema"] == "not at the code's revision: run `agora db upgrade`"
    assert body["checks"]["database"] == "ok"
    assert await healthz(url) == 200

    await asyncio.to_thread(upgrade, deployed.database_url)
    await wait_readiness(deployed, url, 200)


async def test_a_production_start_waits_for_its_redis_not_ready_meanwhile(
    private_redis: tuple[PrivateRedis, Deployment],
) -> None:
    cache, deployed = private_redis
    cache.kill()  # configured, not there yet
    server = deployed.start("publications", AGORA_ENV="prod")
    body = await wait_readiness(deployed, server.base_url, 503)
    assert body["checks"]["redis"].startswith("unreachable")
    assert body["checks"]["workers"] == "not started: waiting for backends"
    assert await healthz(server.base_url) == 200
    async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as client:
        refused = await client.get("/api/publications")
    assert refused.status_code == 503
    # The start's own wait logs after its first try, which may end after the readiness
    # probe's (each has its own timeout): the line is awaited, not expected at once.
    await eventually(lambda: "waiting for redis at redis://127.0.0.1" in server.log(), 15)

    cache.start()
    await wait_readiness(deployed, server.base_url, 200)
    async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as client:
        assert (await client.get("/api/publications")).status_code == 401  # served now


def test_agora_check_names_the_backend_that_is_down(
    private_redis: tuple[PrivateRedis, Deployment],
) -> None:
    cache, deployed = private_redis
    passed = run_agora("check", env=deployed.env())
    assert passed.returncode == 0, passed.stdout + passed.stderr
    assert passed.stdout.rstrip().endswith("ready")
    assert "redis        ok" in passed.stdout

    cache.kill()
    failed = run_agora(
        "check", env=deployed.env(AGORA_REDIS_URL="redis://:hunter2@" + cache.url[8:])
    )
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "redis        unreachable" in failed.stdout
    assert failed.stdout.rstrip().endswith("not ready: redis")
    assert "hunter2" not in failed.stdout + failed.stderr
    assert "redis://:***@127.0.0.1" in failed.stdout
