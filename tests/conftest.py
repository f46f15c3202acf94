"""Shared fixtures: settings, databases (SQLite and a per-run PostgreSQL database), clients.

Integration tests skip with a visible reason when a local service is missing, and fail
instead when AGORA_REQUIRE_SERVICES=1 (CI).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from agora.core.settings import Settings
from agora.db.migrate import upgrade
from agora.ports.bus import Topology

TEST_SECRET = "test-secret-that-is-long-enough-for-hs256-0123456789"
PG_ADMIN_DSN = os.environ.get("AGORA_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("AGORA_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
AMQP_URL = os.environ.get("AGORA_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
RUN_ID = uuid.uuid4().hex[:8]


def require_services() -> bool:
    return os.environ.get("AGORA_REQUIRE_SERVICES") == "1"


def service_unavailable(name: str, error: BaseException) -> None:
    """Skip, or fail under AGORA_REQUIRE_SERVICES=1."""
    message = f"{name} not reachable: {error!r}"
    if require_services():
        pytest.fail(message)
    pytest.skip(message)


def make_settings(tmp_path: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "env": "test",
        "data_dir": tmp_path,
        "jwt_secret": SecretStr(TEST_SECRET),
        "argon2_time_cost": 1,
        "argon2_memory_cost": 64,
        "argon2_parallelism": 1,
        "log_level": "WARNING",
        # No gRPC server unless a test starts one (on an ephemeral port): a fixed port
        # would collide with a dev server or another run.
        "grpc_port": 0,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path)


# --- databases ---------------------------------------------------------------------


async def _pg_admin(sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_ADMIN_DSN, timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@contextlib.contextmanager
def empty_postgres_database(label: str) -> Iterator[str]:
    """A new, empty PostgreSQL database (its SQLAlchemy URL), dropped at the end.

    Skips (or fails under AGORA_REQUIRE_SERVICES=1) when PostgreSQL is unreachable.
    """
    pytest.importorskip("asyncpg")
    name = f"agora_{label}_{RUN_ID}_{uuid.uuid4().hex[:6]}"
    try:
        asyncio.run(_pg_admin(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        service_unavailable("PostgreSQL", exc)
    base = PG_ADMIN_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
    try:
        yield f"{base}/{name}"
    finally:
        asyncio.run(_pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


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


def unique_login(prefix: str = "user") -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


async def register_and_login(
    client: httpx.AsyncClient, login: str | None = None, password: str = "correct horse battery"
) -> tuple[dict[str, object], str]:
    login = login or unique_login()
    created = await client.post(
        "/auth/api/register",
        json={"login": login, "password": password, "email": f"{login}@example.com", "name": login},
    )
    assert created.status_code == 201, created.text
    response = await client.post("/auth/api/login", json={"login": login, "password": password})
    assert response.status_code == 200, response.text
    return created.json(), response.json()["token"]


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


async def delete_topology(url: str, topology: Topology) -> None:
    """Remove a test's own exchanges and queues from the shared broker."""
    import aio_pika

    connection = await aio_pika.connect(url, timeout=5)
    async with connection:
        channel = await connection.channel()
        for queue in (topology.queue, topology.dead_letter_queue):
            await channel.queue_delete(queue)
        for exchange in (topology.exchange, topology.dead_letter_exchange):
            await channel.exchange_delete(exchange)
