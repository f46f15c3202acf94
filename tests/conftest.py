"""Shared fixtures: settings, databases (SQLite and a per-run PostgreSQL database), clients,
and the local Redis and RabbitMQ. Helpers a test imports live in tests/support.

Integration tests skip with a visible reason when a local service is missing, and fail
instead when AGORA_REQUIRE_SERVICES=1 (CI).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from agora.core.settings import Settings
from agora.db.migrate import upgrade
from tests.support.databases import empty_postgres_database
from tests.support.services import AMQP_URL, REDIS_URL, RUN_ID, service_unavailable
from tests.support.settings import make_settings


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path)


# --- databases ---------------------------------------------------------------------


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A migrated database of this run's own on the local PostgreSQL, dropped at the end."""
    with empty_postgres_database("test") as url:
        upgrade(url)
        yield url


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each test using this runs on both the embedded and the real database."""
    if request.param == "postgres":
        return str(request.getfixturevalue("postgres_url"))
    url = f"sqlite+aiosqlite:///{tmp_path / 'agora.db'}"
    upgrade(url)
    return url


# --- clients -----------------------------------------------------------------------


@pytest.fixture
async def embedded(settings: Settings, database_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """Every service in one app, in process, on both databases."""
    from agora.runtime.embedded import create_embedded_app

    app = create_embedded_app(settings.model_copy(update={"database_url": database_url}))
    async with app.running():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield client


# --- Redis and RabbitMQ --------------------------------------------------------------


@pytest.fixture
async def redis_url() -> str:
    """The local Redis, checked reachable; pair it with `redis_namespace`."""
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        await client.ping()
    except Exception as exc:
        service_unavailable("Redis", exc)
    finally:
        await client.aclose()
    return REDIS_URL


@pytest.fixture
def redis_namespace() -> str:
    """Every Redis key of one test lives under this, so runs never see each other."""
    return f"agora-test:{RUN_ID}:{uuid.uuid4().hex[:6]}:"


@pytest.fixture
async def amqp_url() -> str:
    """The local RabbitMQ, checked reachable; pair it with `amqp_suffix`."""
    import aio_pika

    try:
        connection = await aio_pika.connect(AMQP_URL, timeout=5)
        await connection.close()
    except Exception as exc:
        service_unavailable("RabbitMQ", exc)
    return AMQP_URL


@pytest.fixture
def amqp_suffix() -> str:
    """Exchange and queue names of one test's own."""
    return f".test-{RUN_ID}-{uuid.uuid4().hex[:6]}"
