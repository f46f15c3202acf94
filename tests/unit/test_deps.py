"""The typed dependencies of `agora.web.deps`: a route gets exactly the objects its app was
assembled with, and the dependencies leave the OpenAPI document alone."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import httpx
import pytest
from fastapi import APIRouter, Depends

from agora.runtime.backends import build_backends
from agora.web.app import build_service_app
from agora.web.deps import (
    AuditDep,
    ContextDep,
    GuardDep,
    RevocationsDep,
    SettingsDep,
    TokensDep,
    from_app,
)
from agora.web.service_app import ServiceApp
from tests.support.settings import make_settings


@dataclass
class Widgets:
    """A service's own object, as a `create_app` provides one."""

    names: list[str] = field(default_factory=list)


WidgetsDep = Annotated[Widgets, Depends(from_app(Widgets))]

router = APIRouter()
received: dict[str, object] = {}


@router.get("/shared")
async def shared(
    context: ContextDep,
    settings: SettingsDep,
    audit: AuditDep,
    tokens: TokensDep,
    guard: GuardDep,
    revocations: RevocationsDep,
) -> dict[str, bool]:
    received.update(
        context=context,
        settings=settings,
        audit=audit,
        tokens=tokens,
        guard=guard,
        revocations=revocations,
    )
    return {"ok": True}


@router.get("/widgets")
async def widgets(widgets: WidgetsDep) -> list[str]:
    return widgets.names


@pytest.fixture
def app(tmp_path: Path) -> ServiceApp:
    settings = make_settings(tmp_path)
    return build_service_app(
        name="deps-test",
        settings=settings,
        backends=build_backends(settings),
        routers=[router],
        path_prefixes=("/",),
    )


@pytest.fixture
async def client(app: ServiceApp) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c


async def test_shared_dependencies_are_the_apps_context(
    app: ServiceApp, client: httpx.AsyncClient
) -> None:
    received.clear()
    assert (await client.get("/shared")).status_code == 200
    context = app.context
    assert context.name == "deps-test" and context.path_prefixes == ("/",)
    assert received["context"] is context
    assert received["settings"] is context.settings
    assert received["audit"] is context.audit
    assert received["tokens"] is context.tokens
    assert received["guard"] is context.guard
    assert received["revocations"] is context.revocations
    # The guard checks tokens with the same token service and revocations.
    assert context.guard.tokens is context.tokens
    assert context.guard.revocations is context.revocations


async def test_from_app_answers_the_provided_object(
    app: ServiceApp, client: httpx.AsyncClient
) -> None:
    app.provide(Widgets(["first"]))
    assert (await client.get("/widgets")).json() == ["first"]
    replacement = Widgets(["second"])
    app.provide(replacement)  # one per type: the later one replaces it
    assert app.provided(Widgets) is replacement
    assert (await client.get("/widgets")).json() == ["second"]


def test_nothing_provided_is_a_key_error(app: ServiceApp) -> None:
    with pytest.raises(KeyError):
        app.provided(Widgets)


def test_dependencies_add_no_parameters_to_the_openapi_document(app: ServiceApp) -> None:
    paths = app.openapi()["paths"]
    assert "parameters" not in paths["/shared"]["get"]
    assert "parameters" not in paths["/widgets"]["get"]
