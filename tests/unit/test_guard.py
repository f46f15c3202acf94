"""`token_required` as a decorator and `CurrentUser` as a dependency on a real FastAPI app,
and the error handlers every service app installs."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from fastapi import APIRouter, FastAPI, HTTPException, Request
from pydantic import BaseModel

from agora.security.tokens import Identity
from agora.web.guard import CurrentUser, token_required
from agora.web.service_app import ServiceApp
from tests.support.guarded_app import answers_of, audited_app
from tests.support.settings import TEST_SECRET

router = APIRouter()


@router.get("/decorated/plain")
@token_required
async def plain() -> dict[str, str]:
    return {"ok": "yes"}


@router.get("/decorated/with-request")
@token_required
async def with_request(request: Request) -> dict[str, Any]:
    user = request.state.current_user
    return {"user_id": user.user_id, "is_identity": isinstance(user, Identity)}


@router.get("/decorated/with-user")
@token_required
async def with_user(current_user: Identity) -> dict[str, str]:
    return {"user_id": current_user.user_id, "login": current_user.login}


@router.get("/decorated/items/{item_id}")
@token_required
async def item(
    item_id: int, current_user: Identity, request: Request, q: str = ""
) -> dict[str, Any]:
    return {
        "item_id": item_id,
        "q": q,
        "user_id": current_user.user_id,
        "same_as_state": request.state.current_user is current_user,
    }


@router.get("/dependency")
async def dependency(user: CurrentUser, request: Request) -> dict[str, Any]:
    return {"user_id": user.user_id, "in_state": request.state.current_user is user}


@router.get("/both")
@token_required
async def both(user: CurrentUser, current_user: Identity) -> dict[str, bool]:
    return {"same": user is current_user}


class Payload(BaseModel):
    count: int


@router.post("/decorated/body")
@token_required
async def with_body(payload: Payload, current_user: Identity) -> dict[str, Any]:
    return {"count": payload.count, "user_id": current_user.user_id}


@router.get("/boom")
async def boom() -> None:
    raise RuntimeError("secret internals: /etc/agora/db-password")


@router.get("/teapot")
async def teapot() -> None:
    raise HTTPException(418, "I'm a teapot", headers={"X-Brew": "no"})


@router.post("/typed")
async def typed(payload: Payload) -> dict[str, int]:
    return {"count": payload.count}


@pytest.fixture
def audit_events() -> list[dict[str, Any]]:
    return []


@pytest.fixture
def app(tmp_path: Path, audit_events: list[dict[str, Any]]) -> ServiceApp:
    return audited_app(tmp_path, "guard-test", router, audit_events)


@pytest.fixture
async def client(app: ServiceApp) -> AsyncIterator[httpx.AsyncClient]:
    async for c in answers_of(app):
        yield c


def token_for(app: ServiceApp, user_id: str = "7", login: str = "alice") -> str:
    return str(app.context.tokens.issue_access(user_id, login).token)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def assert_unauthorized(response: httpx.Response, message: str = "Token required") -> None:
    assert response.status_code == 401, response.text
    assert response.json() == {"error": message}
    assert response.headers["www-authenticate"].startswith("Bearer")


# --- the decorator ----------------------------------------------------------------------


async def test_decorator_without_request_parameter(app: FastAPI, client: httpx.AsyncClient) -> None:
    assert_unauthorized(await client.get("/decorated/plain"))
    response = await client.get("/decorated/plain", headers=bearer(token_for(app)))
    assert response.status_code == 200 and response.json() == {"ok": "yes"}


async def test_decorator_sets_request_state(app: FastAPI, client: httpx.AsyncClient) -> None:
    assert_unauthorized(await client.get("/decorated/with-request"))
    response = await client.get("/decorated/with-request", headers=bearer(token_for(app, "9")))
    assert response.json() == {"user_id": "9", "is_identity": True}


async def test_decorator_passes_current_user(app: FastAPI, client: httpx.AsyncClient) -> None:
    response = await client.get("/decorated/with-user", headers=bearer(token_for(app, "3", "bo")))
    assert response.json() == {"user_id": "3", "login": "bo"}
    # `current_user` is filled by the guard, never read from the query string.
    forged = await client.get("/decorated/with-user", params={"current_user": "x"})
    assert_unauthorized(forged)


async def test_decorator_keeps_path_and_query_parameters(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    headers = bearer(token_for(app, "5"))
    response = await client.get("/decorated/items/12", params={"q": "hi"}, headers=headers)
    assert response.json() == {"item_id": 12, "q": "hi", "user_id": "5", "same_as_state": True}
    assert_unauthorized(await client.get("/decorated/items/12"))
    invalid = await client.get("/decorated/items/twelve", headers=headers)
    assert invalid.status_code == 422 and "path.item_id" in invalid.json()["fields"]


async def test_decorator_keeps_the_body(app: FastAPI, client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/decorated/body", json={"count": 4}, headers=bearer(token_for(app, "8"))
    )
    assert response.json() == {"count": 4, "user_id": "8"}


def test_decorator_hides_its_arguments_from_the_openapi_schema(app: FastAPI) -> None:
    operation = app.openapi()["paths"]["/decorated/items/{item_id}"]["get"]
    assert {p["name"] for p in operation["parameters"]} == {"item_id", "q"}


# --- the dependency ---------------------------------------------------------------------


async def test_dependency(app: FastAPI, client: httpx.AsyncClient) -> None:
    assert_unauthorized(await client.get("/dependency"))
    response = await client.get("/dependency", headers=bearer(token_for(app, "11")))
    assert response.json() == {"user_id": "11", "in_state": True}


async def test_decorator_and_dependency_agree_on_one_identity(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    response = await client.get("/both", headers=bearer(token_for(app)))
    assert response.json() == {"same": True}


# --- where the token comes from ---------------------------------------------------------


async def test_token_is_read_from_either_cookie(app: FastAPI, client: httpx.AsyncClient) -> None:
    for cookie in ("auth_token", "jwt_token"):
        response = await client.get("/dependency", headers={"Cookie": f"{cookie}={token_for(app)}"})
        assert response.status_code == 200, cookie


async def test_auth_token_cookie_wins_over_jwt_token(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    cookies = f"jwt_token={token_for(app, '2')}; auth_token={token_for(app, '1')}"
    response = await client.get("/dependency", headers={"Cookie": cookies})
    assert response.json()["user_id"] == "1"


async def test_bearer_takes_precedence_over_the_cookie(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    cookie = {"Cookie": f"auth_token={token_for(app, 'cookie-user')}"}
    response = await client.get("/dependency", headers={**cookie, **bearer(token_for(app, "1"))})
    assert response.json()["user_id"] == "1"
    # A bad Bearer token is refused; the cookie does not rescue it.
    refused = await client.get("/dependency", headers={**cookie, **bearer("garbage")})
    assert_unauthorized(refused, "Invalid token")


@pytest.mark.parametrize("header", ["Basic dXNlcjpwYXNz", "Token abc", "Digest x=1", "bearer"])
async def test_other_authorization_schemes_fall_back_to_the_cookie(
    header: str, app: FastAPI, client: httpx.AsyncClient
) -> None:
    cookie = f"auth_token={token_for(app, '4')}"
    response = await client.get("/dependency", headers={"Authorization": header, "Cookie": cookie})
    if header == "bearer":  # a Bearer header with nothing in it is still a Bearer header
        assert_unauthorized(response)
    else:
        assert response.json()["user_id"] == "4", header
        assert_unauthorized(await client.get("/dependency", headers={"Authorization": header}))


async def test_bearer_scheme_is_case_insensitive(app: FastAPI, client: httpx.AsyncClient) -> None:
    for scheme in ("bearer", "BEARER", "BeArEr"):
        response = await client.get(
            "/dependency", headers={"Authorization": f"{scheme} {token_for(app)}"}
        )
        assert response.status_code == 200, scheme


# --- refusals -------------------------------------------------------------------------


async def test_refusals_are_401_json_and_audited(
    app: FastAPI, client: httpx.AsyncClient, audit_events: list[dict[str, Any]]
) -> None:
    expired = jwt.encode(
        {"sub": "1", "user_id": "1", "iss": "agora-auth", "aud": "agora", "iat": 1, "nbf": 1,
         "exp": 2, "jti": "j", "typ": "access"},
        TEST_SECRET,
    )  # fmt: skip
    for path in ("/dependency", "/decorated/with-user"):
        assert_unauthorized(await client.get(path, headers=bearer(expired)), "Token expired")
    rejected = [e for e in audit_events if e["event"] == "auth.rejected"]
    assert [(e["reason"], e["path"], e["status"]) for e in rejected] == [
        ("expired", "/dependency", 401),
        ("expired", "/decorated/with-user", 401),
    ]
    assert all(expired not in str(e) for e in audit_events), "tokens never go to the audit log"


async def test_revoked_token_is_refused(app: ServiceApp, client: httpx.AsyncClient) -> None:
    issued = app.context.tokens.issue_access("7", "alice")
    assert (await client.get("/dependency", headers=bearer(issued.token))).status_code == 200
    await app.context.revocations.revoke(app.context.tokens.verify(issued.token))
    for path in ("/dependency", "/decorated/plain"):
        assert_unauthorized(await client.get(path, headers=bearer(issued.token)), "Token revoked")


# --- error handlers -------------------------------------------------------------------


async def test_unexpected_error_is_a_json_500_without_a_traceback(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    response = await client.get("/boom")
    assert response.status_code == 500
    assert response.json() == {"error": "Internal server error"}
    assert "secret internals" not in response.text and "Traceback" not in response.text
    assert "secret internals" in caplog.text  # the operator still gets the details


async def test_http_exception_is_json_with_its_headers(client: httpx.AsyncClient) -> None:
    response = await client.get("/teapot")
    assert response.status_code == 418
    assert response.json() == {"error": "I'm a teapot"}
    assert response.headers["x-brew"] == "no"


async def test_unknown_route_and_method_are_json(client: httpx.AsyncClient) -> None:
    missing = await client.get("/no/such/route")
    assert missing.status_code == 404 and missing.json() == {"error": "Not Found"}
    wrong_method = await client.delete("/typed")
    assert wrong_method.status_code == 405 and "error" in wrong_method.json()


async def test_bad_bodies_are_400_or_422_with_fields(client: httpx.AsyncClient) -> None:
    malformed = await client.post(
        "/typed", content=b"{nope", headers={"content-type": "application/json"}
    )
    assert malformed.status_code == 400 and malformed.json() == {"error": "Malformed JSON body"}
    invalid = await client.post("/typed", json={"count": "many"})
    assert invalid.status_code == 422
    assert invalid.json()["error"] == "Validation failed"
    assert set(invalid.json()["fields"]) == {"count"}
