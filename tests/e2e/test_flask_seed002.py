"""docs/flask.md's app (seed 002's protected routes on agora.contrib.flask), run as its
own process with a real HTTP server, against a live Agora served by uvicorn: log in,
call, log out, refused within seconds. Then with only the JWKS URL, and for a peer."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from agora.runtime.embedded import create_embedded_app
from tests.security.support import new_session, sqlite_url
from tests.support.http_server import serving
from tests.support.net import free_port
from tests.support.settings import TEST_SECRET, make_settings
from tests.support.waiting import eventually

ROOT = Path(__file__).resolve().parents[2]
APP = ROOT / "docs" / "examples" / "flask_seed002.py"
DOC = ROOT / "docs" / "flask.md"
INTROSPECTION_SECRET = "introspection-secret-long-enough-0123456789"
PEER_SECRET = "billing-secret-that-is-long-enough-0123456789"
PEERS = [{"issuer": "billing", "algorithms": ["HS256"], "secret": PEER_SECRET}]


@asynccontextmanager
async def live_agora(tmp_path: Path, **overrides: Any) -> AsyncIterator[str]:
    settings = make_settings(
        tmp_path,
        database_url=await sqlite_url(tmp_path),
        introspection_secret=INTROSPECTION_SECRET,
        **overrides,
    )
    async with serving(create_embedded_app(settings), lifespan="on") as url:
        yield url


@asynccontextmanager
async def flask_app(**config: str) -> AsyncIterator[str]:
    """The example app as its own process (werkzeug's threaded server on a real port).
    Waits without blocking: the live Agora runs in this test's event loop."""
    port = free_port()
    path = os.pathsep.join([str(ROOT / "src"), str(ROOT), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, **config, "PORT": str(port), "PYTHONPATH": path}
    process = subprocess.Popen(
        [sys.executable, str(APP)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        async with httpx.AsyncClient() as probe:
            while True:
                if process.poll() is not None:
                    output = process.stdout.read().decode() if process.stdout else ""
                    pytest.fail(f"the Flask app exited: {output}")
                try:
                    await probe.get(f"{url}/api/articles", timeout=1)
                    break
                except httpx.TransportError:
                    if time.monotonic() > deadline:
                        pytest.fail("the Flask app did not start")
                    await asyncio.sleep(0.1)
        yield url
    finally:
        process.terminate()
        await asyncio.to_thread(process.wait, 10)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_the_doc_shows_the_app_that_is_run() -> None:
    assert APP.read_text().strip() in DOC.read_text()


async def test_login_call_logout_refused_within_seconds(tmp_path: Path) -> None:
    # The Flask app gets only the secret and the auth service's URL, as docs/flask.md says.
    async with (
        live_agora(tmp_path) as agora_url,
        httpx.AsyncClient(base_url=agora_url) as agora,
        flask_app(AGORA_JWT_SECRET=TEST_SECRET, AGORA_AUTH_URL=agora_url) as flask_url,
        httpx.AsyncClient(base_url=flask_url) as flask,
    ):
        session = await new_session(agora)
        answer = await flask.get("/api/articles", headers=session.bearer)
        assert answer.status_code == 200, answer.text
        assert answer.json()["owner"] == session.user_id
        assert answer.json()["login"] == session.login
        asynchronous = await flask.get("/api/balance", headers=session.bearer)
        assert asynchronous.json() == {"owner": session.user_id, "balance": 0}
        assert (await flask.get("/api/articles")).status_code == 401

        logged_out = await agora.post("/auth/api/logout", headers=session.bearer)
        assert logged_out.status_code == 200
        started = time.monotonic()

        async def refused() -> bool:
            answer = await flask.get("/api/articles", headers=session.bearer)
            return answer.status_code == 401 and answer.json() == {"error": "Token revoked"}

        await eventually(refused, timeout=10)
        assert time.monotonic() - started < 5
        balance = await flask.get("/api/balance", headers=session.bearer)
        assert balance.status_code == 401


async def test_jwks_only_and_a_peer_issuer(tmp_path: Path) -> None:
    async with (
        live_agora(tmp_path, jwt_algorithm="RS256", trusted_issuers=PEERS) as agora_url,
        httpx.AsyncClient(base_url=agora_url) as agora,
    ):
        config = {
            "AGORA_JWKS_URL": f"{agora_url}/auth/.well-known/jwks.json",
            "AGORA_TRUSTED_ISSUERS": f'[{{"issuer": "billing", "algorithms": ["HS256"], '
            f'"secret": "{PEER_SECRET}"}}]',
            "AGORA_AUTH_URL": agora_url,
            "AGORA_INTROSPECTION_SECRET": INTROSPECTION_SECRET,
        }
        async with (
            flask_app(**config) as flask_url,
            httpx.AsyncClient(base_url=flask_url) as flask,
        ):
            session = await new_session(agora)
            assert jwt.get_unverified_header(session.token)["alg"] == "RS256"
            answer = await flask.get("/api/articles", headers=session.bearer)
            assert answer.status_code == 200, answer.text
            now = int(time.time())
            peer = jwt.encode(
                {"sub": session.user_id, "iss": "billing", "iat": now, "exp": now + 600},
                PEER_SECRET,
            )
            answer = await flask.get("/api/balance", headers=bearer(peer))
            assert answer.status_code == 200, answer.text
            await agora.post("/auth/api/logout/all", headers=session.bearer)

            async def refused() -> bool:
                answer = await flask.get("/api/balance", headers=bearer(peer))
                return answer.status_code == 401

            await eventually(refused, timeout=10)
