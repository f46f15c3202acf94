"""docs/peers.md's examples, run as a peer service would run them, against a live Agora
(uvicorn on a real port): Node `jsonwebtoken`, PyJWT, and firebase/php-jwt when PHP and
its vendor directory are on the machine."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from agora.runtime.embedded import create_embedded_app
from tests.security.support import new_session, sqlite_url
from tests.support.http_server import serving
from tests.support.services import service_unavailable
from tests.support.settings import make_settings

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "peers.md"
NODE_EXAMPLE = ROOT / "tests" / "js" / "peer_token.js"
PYJWT_EXAMPLE = ROOT / "docs" / "examples" / "peer_token_pyjwt.py"
PHP_EXAMPLE = ROOT / "docs" / "examples" / "peer_token.php"
SECRET = "billing-secret-that-is-long-enough-0123456789"


@pytest.fixture
async def live(tmp_path: Path) -> AsyncIterator[tuple[str, dict[str, str]]]:
    issuers = [{"issuer": "billing", "algorithms": ["HS256"], "secret": SECRET}]
    settings = make_settings(
        tmp_path, trusted_issuers=issuers, database_url=await sqlite_url(tmp_path)
    )
    app = create_embedded_app(settings)
    async with serving(app, lifespan="on") as url, httpx.AsyncClient(base_url=url) as client:
        session = await new_session(client)
        yield url, {"id": session.user_id, "login": session.login}


async def run(command: list[str], url: str, user_id: str, secret: str = SECRET) -> dict[str, Any]:
    env = {**os.environ, "AGORA_URL": url, "PEER_ISSUER": "billing", "PEER_SECRET": secret,
           "USER_ID": user_id, "NODE_PATH": str(ROOT / "node_modules")}  # fmt: skip
    process = await asyncio.create_subprocess_exec(
        *command, cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err.decode()
    result: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    return result


def test_the_doc_shows_the_examples_that_are_run() -> None:
    doc = DOC.read_text()
    for example in (NODE_EXAMPLE, PYJWT_EXAMPLE, PHP_EXAMPLE):
        assert example.read_text().strip() in doc, f"{example.name} drifted from docs/peers.md"


async def test_node_jsonwebtoken(live: tuple[str, dict[str, str]]) -> None:
    node = shutil.which("node")
    if node is None or not (ROOT / "node_modules" / "jsonwebtoken").is_dir():
        service_unavailable("node with jsonwebtoken (npm ci)", FileNotFoundError("node"))
        return
    url, user = live
    answer = await run([node, str(NODE_EXAMPLE)], url, user["id"])
    assert (answer["status"], answer["body"]["login"]) == (200, user["login"])
    refused = await run([node, str(NODE_EXAMPLE)], url, user["id"], secret="x" * 40)
    assert refused == {"status": 401, "body": {"error": "Invalid token"}}


async def test_pyjwt(live: tuple[str, dict[str, str]]) -> None:
    url, user = live
    answer = await run([sys.executable, str(PYJWT_EXAMPLE)], url, user["id"])
    assert (answer["status"], answer["body"]["login"]) == (200, user["login"])


async def test_php_firebase_jwt(live: tuple[str, dict[str, str]]) -> None:
    php = shutil.which("php")
    if php is None or not (PHP_EXAMPLE.parent / "vendor").is_dir():
        pytest.skip("PHP with firebase/php-jwt is not on this machine (documented only)")
    url, user = live
    answer = await run([php, str(PHP_EXAMPLE)], url, user["id"])
    assert (answer["status"], answer["body"]["login"]) == (200, user["login"])
