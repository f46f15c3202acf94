"""`GuardedRoute`: a route's `CurrentUser` parameters filled by the token check called
before the endpoint instead of by FastAPI's sub-dependency solving (issue 13), with every
answer of the dependency form kept: 401 and its audit event, revocation, CSRF for a
token from a cookie, and a 401 before any validation of the request's input."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import APIRouter, Request, Response
from fastapi.routing import APIRoute

from agora.core.audit import Audit
from agora.web.csrf import csrf_key, csrf_token_for
from agora.web.deps import AuditDep
from agora.web.guard import CurrentUser, GuardedRoute, current_user
from agora.web.openapi import api_routes, requires_token
from agora.web.service_app import ServiceApp
from tests.support.guarded_app import answers_of, audited_app

router = APIRouter(route_class=GuardedRoute)


@router.get("/guarded/me")
async def me(user: CurrentUser, audit: AuditDep, request: Request) -> dict[str, Any]:
    return {
        "user_id": user.user_id,
        "in_state": request.state.current_user is user,
        "audit": isinstance(audit, Audit),
    }


@router.post("/guarded/write")
async def write(user: CurrentUser, response: Response) -> dict[str, str]:
    response.headers["X-Written-By"] = user.user_id
    return {"user_id": user.user_id}


@router.get("/guarded/query")
async def with_query(user: CurrentUser, n: int) -> dict[str, Any]:
    return {"user_id": user.user_id, "n": n}


@pytest.fixture
def audit_events() -> list[dict[str, Any]]:
    return []


@pytest.fixture
def app(tmp_path: Path, audit_events: list[dict[str, Any]]) -> ServiceApp:
    return audited_app(tmp_path, "guarded-test", router, audit_events)


@pytest.fixture
async def client(app: ServiceApp) -> AsyncIterator[httpx.AsyncClient]:
    async for c in answers_of(app):
        yield c


def bearer(app: ServiceApp, user_id: str = "7") -> dict[str, str]:
    return {"Authorization": f"Bearer {app.context.tokens.issue_access(user_id, 'alice').token}"}


def calls(dependant: Any) -> Iterator[Any]:
    yield dependant.call
    for dependency in dependant.dependencies:
        yield from calls(dependency)


def route(path: str) -> APIRoute:
    return next(r for r in router.routes if isinstance(r, APIRoute) and r.path == path)


def test_current_user_is_no_sub_dependency_where_it_can_be_inlined() -> None:
    assert current_user not in set(calls(route("/guarded/me").dependant))
    assert current_user not in set(calls(route("/guarded/write").dependant))
    # A query is validated before the endpoint runs: the check stays a dependency,
    # so that a request without a token still gets its 401 first.
    assert current_user in set(calls(route("/guarded/query").dependant))


async def test_the_inlined_check_answers_as_the_dependency_does(
    app: ServiceApp, client: httpx.AsyncClient, audit_events: list[dict[str, Any]]
) -> None:
    response = await client.get("/guarded/me", headers=bearer(app))
    assert response.json() == {"user_id": "7", "in_state": True, "audit": True}
    refused = await client.get("/guarded/me")
    assert (refused.status_code, refused.json()) == (401, {"error": "Token required"})
    assert refused.headers["www-authenticate"].startswith("Bearer")
    assert [(e["event"], e["path"]) for e in audit_events] == [("auth.rejected", "/guarded/me")]


async def test_a_revoked_token_is_refused(app: ServiceApp, client: httpx.AsyncClient) -> None:
    issued = app.context.tokens.issue_access("7", "alice")
    headers = {"Authorization": f"Bearer {issued.token}"}
    assert (await client.get("/guarded/me", headers=headers)).status_code == 200
    await app.context.revocations.revoke(app.context.tokens.verify(issued.token))
    refused = await client.get("/guarded/me", headers=headers)
    assert (refused.status_code, refused.json()) == (401, {"error": "Token revoked"})


async def test_a_cookie_write_needs_its_csrf_token(
    app: ServiceApp, client: httpx.AsyncClient, audit_events: list[dict[str, Any]]
) -> None:
    issued = app.context.tokens.issue_access("7", "alice")
    cookie = {"Cookie": f"auth_token={issued.token}"}
    refused = await client.post("/guarded/write", headers=cookie)
    assert refused.status_code == 403
    assert [e["event"] for e in audit_events] == ["auth.csrf_rejected"]
    csrf = csrf_token_for(issued.jti, csrf_key(app.context.settings))
    proved = {"Cookie": f"auth_token={issued.token}; csrf_token={csrf}", "X-CSRF-Token": csrf}
    accepted = await client.post("/guarded/write", headers=proved)
    assert (accepted.status_code, accepted.headers["x-written-by"]) == (200, "7")


async def test_no_token_and_bad_input_is_401_before_422(
    app: ServiceApp, client: httpx.AsyncClient
) -> None:
    refused = await client.get("/guarded/query?n=not-a-number")
    assert refused.status_code == 401
    assert (await client.get("/guarded/query?n=3", headers=bearer(app))).json() == {
        "user_id": "7",
        "n": 3,
    }


def test_openapi_marks_inlined_routes_as_needing_a_token(app: ServiceApp) -> None:
    marked = {path: requires_token(r) for path, _methods, r in api_routes(app)}
    assert marked["/guarded/me"] and marked["/guarded/write"] and marked["/guarded/query"]
    schema = app.openapi()
    me_params = schema["paths"]["/guarded/me"]["get"].get("parameters", [])
    assert [p["name"] for p in me_params] == []  # neither `user` nor `request` leaks
