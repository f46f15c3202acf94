"""Fixtures of the end-to-end tests: one shared `agora serve` (the real command, a child
process) and a client per test; the helpers live in agora_command.py and processes.py."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.e2e.agora_command import Server, agora_env
from tests.support.databases import empty_postgres_database


@pytest.fixture(scope="session")
def dev_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One embedded server (SQLite, generated dev secret) shared by the e2e tests."""
    data_dir = tmp_path_factory.mktemp("agora-e2e")
    server = Server(data_dir, agora_env(data_dir)).start()
    try:
        yield server
    finally:
        if server.process is not None and server.process.poll() is None:
            server.stop_cleanly()


@pytest.fixture
def http(dev_server: Server) -> Iterator[httpx.Client]:
    """A client with its own cookie jar, as a browser tab would have."""
    with httpx.Client(base_url=dev_server.base_url, timeout=10) as client:
        yield client


@pytest.fixture(scope="module")
def throwaway_postgres() -> Iterator[str]:
    """An empty PostgreSQL database of this module's own (no schema yet), then dropped."""
    with empty_postgres_database("e2e") as url:
        yield url
