"""A service app of one test router, with its audit events collected, and a client that
sees only answers (as over the network): what the guard's unit tests run against."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
from fastapi import APIRouter

from agora.core.audit import Audit
from agora.db.migrate import upgrade
from agora.runtime.backends import build_backends
from agora.web.app import build_service_app
from agora.web.service_app import ServiceApp
from tests.support.settings import make_settings


def audited_app(
    tmp_path: Path, name: str, router: APIRouter, events: list[dict[str, Any]]
) -> ServiceApp:
    async def sink(entry: dict[str, Any]) -> None:
        events.append(entry)

    settings = make_settings(tmp_path)
    upgrade(settings.resolved_database_url)  # revocations are stored
    return build_service_app(
        name=name,
        settings=settings,
        backends=build_backends(settings),
        routers=[router],
        path_prefixes=("/",),
        audit=Audit(name, sink),
    )


async def answers_of(app: ServiceApp) -> AsyncIterator[httpx.AsyncClient]:
    # The app re-raises unexpected errors after answering (for the server's log);
    # a client sees only the answer, as it would over the network.
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c
