"""The built web client at / of the all-in-one process (runtime/web_client.py)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from pydantic import ValidationError

from agora.runtime import web_client
from agora.runtime.registry import ALL, build_app
from tests.support.settings import make_settings

PAGE = "<!doctype html><title>Agora</title><script type=module src=/assets/app-1.js></script>"


@pytest.fixture
def dist(tmp_path: Path) -> Path:
    dist = tmp_path / "dist"
    (dist / "assets").mkdir(parents=True)
    (dist / "index.html").write_text(PAGE)
    (dist / "assets" / "app-1.js").write_text("console.log(1)")
    return dist


def client_of(tmp_path: Path, **settings: object) -> httpx.AsyncClient:
    app = build_app(ALL, make_settings(tmp_path, **settings))
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")


async def test_the_page_and_its_assets_are_served(tmp_path: Path, dist: Path) -> None:
    async with client_of(tmp_path, web_dist_dir=dist) as client:
        page = await client.get("/")
        assert page.status_code == 200 and page.text == PAGE
        assert page.headers["cache-control"] == "no-cache"
        csp = page.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert page.headers["x-frame-options"] == "DENY"
        script = await client.get("/assets/app-1.js")
        assert script.status_code == 200
        assert "immutable" in script.headers["cache-control"]


async def test_other_paths_stay_the_services(tmp_path: Path, dist: Path) -> None:
    async with client_of(tmp_path, web_dist_dir=dist) as client:
        missing = await client.get("/nothing-here")
        assert missing.status_code == 404 and missing.json() == {"error": "Not found"}
        api = await client.get("/auth/api/me")
        assert api.status_code == 401


async def test_nothing_at_slash_without_a_build(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(web_client, "checkout_dist", lambda: tmp_path / "not-built")
    async with client_of(tmp_path) as client:
        page = await client.get("/")
        assert page.status_code == 404 and page.json() == {"error": "Not found"}


def test_a_named_dist_must_be_a_build(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match=r"holds no index\.html"):
        make_settings(tmp_path, web_dist_dir=tmp_path / "not-built")
