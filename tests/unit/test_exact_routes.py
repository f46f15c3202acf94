"""Exact-path dispatch (`web/exact_routes.py`): a marked route is served by one lookup,
with what FastAPI's routing gives it (the route in the scope, the app's error handlers,
every middleware); everything else takes FastAPI's router as before."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import APIRouter, Depends, FastAPI, Request
from starlette.responses import Response

from agora.core.errors import Invalid
from agora.web.exact_routes import (
    ExactRoutes,
    candidates,
    exact_route,
    exact_routes,
    install_exact_routes,
)
from agora.web.metrics import route_label
from agora.web.service_app import ServiceApp
from tests.support.guarded_app import answers_of, audited_app

SEEN: list[dict[str, Any]] = []


def make_router() -> APIRouter:
    router = APIRouter(prefix="/api/things")

    @router.get("")
    @exact_route
    async def list_things(request: Request) -> Response:
        SEEN.append({"route": route_label(request.scope), "via": "endpoint"})
        if request.query_params.get("bad"):
            raise Invalid("bad", "not accepted")
        return Response(b'{"things":[]}', media_type="application/json")

    @router.post("")
    async def create_thing(request: Request) -> Response:
        return Response(status_code=201)

    @router.get("/{thing_id}")
    async def get_thing(thing_id: str) -> Response:
        return Response(thing_id.encode())

    return router


@pytest.fixture
def app(tmp_path: Path) -> ServiceApp:
    SEEN.clear()
    return audited_app(tmp_path, "things", make_router(), [])


@pytest.fixture
async def client(app: ServiceApp) -> AsyncIterator[httpx.AsyncClient]:
    async for c in answers_of(app):
        yield c


async def test_the_marked_route_is_served_directly_with_the_route_in_its_scope(
    app: ServiceApp, client: httpx.AsyncClient
) -> None:
    answer = await client.get("/api/things")
    assert answer.status_code == 200 and answer.json() == {"things": []}
    assert SEEN == [{"route": "/api/things", "via": "endpoint"}]
    # Every middleware still ran around it: the default security headers are there.
    assert answer.headers["x-content-type-options"] == "nosniff"
    stack = app.router.middleware_stack
    assert isinstance(stack, ExactRoutes)
    assert set(stack.routes) == {("GET", "/api/things")}


async def test_its_errors_get_the_apps_json_answers(client: httpx.AsyncClient) -> None:
    answer = await client.get("/api/things", params={"bad": "1"})
    assert answer.status_code == 422
    assert answer.json()["error"] == "Validation failed"


async def test_every_other_request_takes_the_router(client: httpx.AsyncClient) -> None:
    assert (await client.post("/api/things")).status_code == 201
    assert (await client.get("/api/things/7")).text == "7"
    assert (await client.head("/api/things")).status_code == 405  # GET only, as FastAPI says
    assert (await client.get("/api/things/")).status_code == 404  # no slash redirect
    assert SEEN == []


def test_a_route_registered_earlier_for_the_same_path_keeps_it() -> None:
    app = FastAPI()

    @app.get("/api/{anything}")
    async def earlier(anything: str) -> Response:
        return Response()

    app.include_router(make_router())
    assert exact_routes(candidates(app)) == {}


def test_a_mount_registered_earlier_over_the_path_keeps_it() -> None:
    app = FastAPI()
    app.mount("/api", Response(b"mounted"))
    app.include_router(make_router())
    assert exact_routes(candidates(app)) == {}


def test_install_twice_wraps_the_router_once() -> None:
    app = FastAPI()
    app.include_router(make_router())
    install_exact_routes(app)
    install_exact_routes(app)
    stack = app.router.middleware_stack
    assert isinstance(stack, ExactRoutes) and not isinstance(stack.app, ExactRoutes)


def test_a_marked_route_that_fastapi_must_solve_is_refused() -> None:
    app = FastAPI()

    @app.get("/api/things")
    @exact_route
    async def with_query(request: Request, limit: int = 20) -> Response:
        return Response()

    with pytest.raises(TypeError, match="takes only the Request"):
        exact_routes(candidates(app))


def test_a_marked_route_with_a_path_parameter_is_refused() -> None:
    app = FastAPI()

    @app.get("/api/things/{thing_id}")
    @exact_route
    async def by_id(request: Request) -> Response:
        return Response()

    with pytest.raises(TypeError, match="path parameter"):
        exact_routes(candidates(app))


def test_a_marked_route_included_with_a_dependency_is_refused() -> None:
    # The including router's dependency (a guard, say) would be skipped: refused.
    async def guard() -> None:
        return None

    app = FastAPI()
    app.include_router(make_router(), dependencies=[Depends(guard)])
    with pytest.raises(TypeError, match="its router's"):
        exact_routes(candidates(app))
