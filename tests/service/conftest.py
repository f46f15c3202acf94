"""Fixtures of the service tests: the publications app on each test's database."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any

import httpx
import pytest

from agora.adapters.bus_memory import MemoryBus
from agora.adapters.cache_memory import MemoryCache
from agora.adapters.presence_memory import MemoryPresence
from agora.adapters.pubsub_memory import MemoryPubSub
from agora.core.settings import Settings
from agora.db.engine import Database
from agora.ports.backends import Backends
from agora.ports.cache import Cache
from agora.services.publications.app import create_app
from tests.service.publications_stack import OpenStack, Stack


@pytest.fixture(name="open_stack")
async def open_stack_fixture(settings: Settings, database_url: str) -> AsyncIterator[OpenStack]:
    """Opens the publications app (lifespan entered) on this test's database."""
    async with AsyncExitStack() as exits:

        async def open_(cache: Cache | None = None, **overrides: Any) -> Stack:
            configured = settings.model_copy(update={"database_url": database_url, **overrides})
            backends = Backends(
                Database(database_url),
                cache or MemoryCache(),
                MemoryBus(),
                MemoryPubSub(),
                MemoryPresence(),
            )
            exits.push_async_callback(backends.close)
            app = create_app(configured, backends)
            await exits.enter_async_context(app.router.lifespan_context(app))
            client = httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://testserver"
            )
            await exits.enter_async_context(client)
            return Stack(app, backends, client)

        yield open_


@pytest.fixture(name="stack")
async def stack_fixture(open_stack: OpenStack) -> Stack:
    return await open_stack()
