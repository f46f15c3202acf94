"""Security headers on every response of every service, errors and the 500 included."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import APIRouter, FastAPI
from pydantic import BaseModel
from starlette.responses import JSONResponse, StreamingResponse

from agora.runtime.backends import build_backends
from agora.web.app import build_service_app
from agora.web.guard import CurrentUser
from tests.support.settings import make_settings
from tests.support.users import register_and_login

router = APIRouter()


class Item(BaseModel):
    name: str


@router.get("/t/ok")
async def ok() -> dict[str, bool]:
    return {"ok": True}


@router.get("/t/boom")
async def boom() -> None:
    raise RuntimeError("unexpected")


@router.get("/t/me")
async def me(user: CurrentUser) -> dict[str, str]:
    return {"user_id": user.user_id}


@router.post("/t/items")
async def create(item: Item) -> Item:
    return item


@router.get("/t/cached")
async def cached() -> JSONResponse:
    return JSONResponse({"keys": []}, headers={"Cache-Control": "public, max-age=300"})


@router.get("/t/stream")
async def stream() -> StreamingResponse:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"a":'
        yield b"1}"

    return StreamingResponse(chunks(), media_type="application/json")


# Every response carries these, whatever its status.
EXPECTED = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "content-security-policy": "default-src 'none'; frame-ancestors 'none'",
    "cross-origin-opener-policy": "same-origin",
    "cross-origin-resource-policy": "same-origin",
    "strict-transport-security": "max-age=31536000; includeSubDomains",
    "cache-control": "no-store",
}


def assert_secure(response: httpx.Response, expected: dict[str, str] = EXPECTED) -> None:
    for name, value in expected.items():
        assert response.headers.get_list(name) == [value], (name, response.headers)
    assert "camera=()" in response.headers["permissions-policy"]


def service_app(tmp_path: Path, **overrides: Any) -> FastAPI:
    settings = make_settings(tmp_path, **overrides)
    return build_service_app(
        name="headers-test",
        settings=settings,
        backends=build_backends(settings),
        routers=[router],
        path_prefixes=("/t/",),
    )


async def client_for(app: Any) -> httpx.AsyncClient:
    # The app re-raises an unexpected error after answering 500 (for the server's log);
    # a client sees only the answer.
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    async with await client_for(service_app(tmp_path)) as c:
        yield c


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/t/ok", 200),
        ("GET", "/t/me", 401),
        ("GET", "/t/missing", 404),
        ("POST", "/t/items", 422),
        ("GET", "/t/boom", 500),
        ("DELETE", "/t/ok", 405),
        ("GET", "/t/stream", 200),
    ],
)
async def test_every_status_carries_the_headers(
    client: httpx.AsyncClient, method: str, path: str, status: int
) -> None:
    response = await client.request(method, path, json={"wrong": 1} if method == "POST" else None)
    assert response.status_code == status
    assert_secure(response)


async def test_a_route_keeps_its_own_cache_control(client: httpx.AsyncClient) -> None:
    response = await client.get("/t/cached")
    assert response.headers.get_list("cache-control") == ["public, max-age=300"]
    assert_secure(response, {k: v for k, v in EXPECTED.items() if k != "cache-control"})


async def test_no_hsts_on_a_plain_http_deployment(tmp_path: Path) -> None:
    app = service_app(tmp_path, env="dev", cookie_secure=False)
    async with await client_for(app) as c:
        response = await c.get("/t/ok")
    assert "strict-transport-security" not in response.headers
    assert response.headers["x-content-type-options"] == "nosniff"


async def test_only_the_docs_page_may_run_scripts(client: httpx.AsyncClient) -> None:
    docs = await client.get("/docs")
    assert docs.status_code == 200 and "swagger-ui" in docs.text
    policy = docs.headers["content-security-policy"]
    assert "script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net" in policy
    assert "frame-ancestors 'none'" in policy and docs.headers["x-frame-options"] == "DENY"
    openapi = await client.get("/openapi.json")
    assert openapi.headers["content-security-policy"] == EXPECTED["content-security-policy"]


async def test_login_and_me_are_never_cached(embedded: httpx.AsyncClient) -> None:
    _user, token = await register_and_login(embedded)
    login_user = _user["login"]
    login = await embedded.post(
        "/auth/api/login", json={"login": login_user, "password": "correct horse battery"}
    )
    assert login.status_code == 200 and "auth_token=" in login.headers["set-cookie"]
    assert_secure(login)
    me = await embedded.get("/auth/api/me", headers={"Authorization": f"Bearer {token}"})
    assert me.status_code == 200
    assert_secure(me)


async def test_every_service_and_the_embedded_404_carry_the_headers(
    embedded: httpx.AsyncClient,
) -> None:
    answers = [
        (await embedded.get("/nowhere"), 404),  # no service: the embedded app answers
        (await embedded.get("/auth/nowhere"), 404),
        (await embedded.get("/api/publications"), 401),
        (await embedded.post("/auth/api/register", json={"login": ""}), 422),
    ]
    for response, status in answers:
        assert response.status_code == status
        assert_secure(response)
