"""CORS is off unless AGORA_CORS_ORIGINS lists origins; then exactly those, with cookies."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fastapi import APIRouter
from pydantic import ValidationError

from agora.core.settings import Settings
from agora.runtime.backends import build_backends
from agora.web.app import build_service_app
from tests.support.settings import make_settings

ALLOWED = "https://app.example.com"
OTHER = "https://evil.example.net"
router = APIRouter()


@router.get("/t/ok")
async def ok() -> dict[str, bool]:
    return {"ok": True}


@router.post("/t/ok")
async def post_ok() -> dict[str, bool]:
    return {"ok": True}


async def client_with(tmp_path: Path, **overrides: object) -> httpx.AsyncClient:
    settings = make_settings(tmp_path, **overrides)
    app = build_service_app(
        name="cors-test",
        settings=settings,
        backends=build_backends(settings),
        routers=[router],
        path_prefixes=("/t/",),
    )
    transport = httpx.ASGITransport(app=app)
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


@pytest.fixture
async def off(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    async with await client_with(tmp_path) as client:
        yield client


@pytest.fixture
async def on(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    async with await client_with(tmp_path, cors_origins=[ALLOWED], max_body_bytes=64) as client:
        yield client


def preflight(origin: str) -> dict[str, str]:
    return {
        "Origin": origin,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type, x-csrf-token",
    }


def cors_headers(response: httpx.Response) -> list[str]:
    return [name for name in response.headers if name.lower().startswith("access-control-")]


async def test_off_by_default(off: httpx.AsyncClient) -> None:
    response = await off.get("/t/ok", headers={"Origin": ALLOWED})
    assert response.status_code == 200 and cors_headers(response) == []
    approval = await off.options("/t/ok", headers=preflight(ALLOWED))
    assert approval.status_code == 405 and cors_headers(approval) == []


async def test_a_listed_origin_may_call_with_cookies(on: httpx.AsyncClient) -> None:
    response = await on.get("/t/ok", headers={"Origin": ALLOWED})
    assert response.headers["access-control-allow-origin"] == ALLOWED
    assert response.headers["access-control-allow-credentials"] == "true"
    assert "origin" in response.headers["vary"].lower()


async def test_any_other_origin_gets_no_approval(on: httpx.AsyncClient) -> None:
    response = await on.get("/t/ok", headers={"Origin": OTHER})
    # Starlette still sends Allow-Credentials and Expose-Headers: without a matching
    # Allow-Origin a browser grants nothing, so the page cannot read the answer.
    assert response.status_code == 200
    assert "access-control-allow-origin" not in response.headers
    assert "origin" in response.headers["vary"].lower()  # no cache serves one to the other


async def test_preflight_approves_only_a_listed_origin(on: httpx.AsyncClient) -> None:
    approved = await on.options("/t/ok", headers=preflight(ALLOWED))
    assert approved.status_code == 200
    assert approved.headers["access-control-allow-origin"] == ALLOWED
    assert approved.headers["access-control-allow-credentials"] == "true"
    assert "POST" in approved.headers["access-control-allow-methods"]
    assert "x-csrf-token" in approved.headers["access-control-allow-headers"].lower()
    refused = await on.options("/t/ok", headers=preflight(OTHER))
    assert refused.status_code == 400
    assert "access-control-allow-origin" not in refused.headers


async def test_a_browser_can_read_the_413(on: httpx.AsyncClient) -> None:
    response = await on.post("/t/ok", content=b"x" * 100, headers={"Origin": ALLOWED})
    assert response.status_code == 413
    assert response.headers["access-control-allow-origin"] == ALLOWED


@pytest.mark.parametrize(
    "origin",
    [
        "*",
        "null",
        "https://app.example.com/",
        "https://app.example.com/path",
        "ftp://a.example",
        "app.example.com",
        "https://user@app.example.com",
        "https://app.example.com:99999",
    ],
)
def test_settings_refuse_an_origin_that_is_not_exact(tmp_path: Path, origin: str) -> None:
    with pytest.raises(ValidationError):
        make_settings(tmp_path, cors_origins=[origin])


def test_settings_read_a_list_or_commas(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGORA_CORS_ORIGINS", "https://App.example.com, http://localhost:5173")
    assert Settings().cors_origins == ["https://app.example.com", "http://localhost:5173"]
    monkeypatch.setenv("AGORA_CORS_ORIGINS", '["https://app.example.com"]')
    assert Settings().cors_origins == ["https://app.example.com"]
    monkeypatch.setenv("AGORA_CORS_ORIGINS", "")
    assert Settings().cors_origins == []
    monkeypatch.setenv("AGORA_CORS_ORIGINS", "https://a.example,*")
    with pytest.raises(ValidationError):
        Settings()
    monkeypatch.delenv("AGORA_CORS_ORIGINS")
    assert Settings().max_body_bytes == 1_048_576
