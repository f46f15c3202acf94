"""A service that verifies with the JWKS the auth service publishes, holding no secret.

The auth service is served for real (uvicorn on a free port, in a thread of its own);
the publications service is given only AGORA_JWKS_URL. A small ASGI wrapper in front of
the auth app counts the JWKS requests that reach it over the network.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import jwt
import orjson
import pytest
import uvicorn
from starlette.types import ASGIApp, Receive, Scope, Send

from agora.runtime.registry import build_app
from agora.security import keyring
from agora.security.keys import generate_private_key, key_from_private
from tests.security.support import claims_for, new_session, sign, sqlite_url
from tests.support.net import free_port
from tests.support.settings import make_settings
from tests.support.waiting import eventually

JWKS_PATH = "/auth/.well-known/jwks.json"
REFETCH_INTERVAL = 1.0  # the smallest the settings allow


class CountingJwks:
    """Passes everything to `app`; counts the JWKS requests."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.fetches = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == JWKS_PATH:
            self.fetches += 1
        await self.app(scope, receive, send)


@asynccontextmanager
async def serving(app: ASGIApp) -> AsyncIterator[str]:
    """`app` on a free port of 127.0.0.1, lifespan and all; yields its base URL."""
    port = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, loop="asyncio", lifespan="on",
        log_config=None, access_log=False,
    )  # fmt: skip
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="auth-under-test", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                pytest.fail("the auth service did not start")
            await asyncio.sleep(0.02)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.to_thread(thread.join, 20)


async def wait_out_the_interval(since: float) -> None:
    await asyncio.sleep(max(0.0, since + REFETCH_INTERVAL + 0.1 - time.monotonic()))


async def test_a_service_with_only_the_jwks_url_verifies_auth_tokens(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(keyring, "DIRECTORY_POLL", 0.05)
    auth_dir, pub_dir = tmp_path / "auth", tmp_path / "publications"
    auth_dir.mkdir()
    pub_dir.mkdir()
    auth_settings = make_settings(
        auth_dir, jwt_algorithm="RS256", jwt_secret=None, database_url=await sqlite_url(auth_dir)
    )
    auth_process = build_app("auth", auth_settings)
    auth = auth_process.apps[0]
    counting = CountingJwks(auth_process)

    async with serving(counting) as auth_url, httpx.AsyncClient(base_url=auth_url) as to_auth:
        pub_settings = make_settings(
            pub_dir,
            jwt_secret=None,  # nothing shared with the auth service but its public URL
            jwks_url=f"{auth_url}{JWKS_PATH}",
            jwks_refetch_interval=REFETCH_INTERVAL,
            jwks_min_refetch_gap=REFETCH_INTERVAL,
            database_url=await sqlite_url(pub_dir),
        )
        pub_process = build_app("publications", pub_settings)
        publications = pub_process.apps[0]
        transport = httpx.ASGITransport(app=pub_process)
        async with (
            pub_process.running(),
            httpx.AsyncClient(transport=transport, base_url="http://testserver") as to_pub,
        ):
            fetched_at = time.monotonic()
            assert counting.fetches == 1  # at start
            pub_keys = publications.context.tokens.keys
            assert pub_keys.hmac() is None and pub_keys.signing_kid is None
            assert {k.kid for k in pub_keys.keys()} == {auth.context.tokens.keys.signing_kid}

            session = await new_session(to_auth)
            # The user becomes active as the auth service's `connected` event would make it.
            await publications.context.backends.bus.publish(
                "user.connected",
                orjson.dumps({"event": "connected", "user_id": session.user_id,
                              "name": session.login, "email": f"{session.login}@example.com"}),
                message_id=uuid.uuid4().hex,
            )  # fmt: skip

            async def accepted() -> bool:
                response = await to_pub.get("/api/publications", headers=session.bearer)
                assert response.status_code in (200, 403), response.text
                return response.status_code == 200

            await eventually(accepted, timeout=10)
            assert counting.fetches == 1  # a known kid costs no fetch

            # A flood of made-up kids: at most one fetch per gap.
            strangers = [key_from_private(generate_private_key("EdDSA")) for _ in range(20)]
            forged = [sign(key, claims_for(session, pub_settings)) for key in strangers]
            await wait_out_the_interval(fetched_at)
            started = time.monotonic()
            for token in forged:
                response = await to_pub.get("/api/publications", headers=bearer(token))
                assert (response.status_code, response.json()) == (401, {"error": "Invalid token"})
            assert time.monotonic() - started < REFETCH_INTERVAL, "too slow to prove the bound"
            assert counting.fetches == 2
            fetched_at = time.monotonic()

            # `agora keys rotate` on the auth side: its new tokens carry a kid the
            # publications service has never seen; it fetches the JWKS again and accepts.
            new_kid = keyring.rotate(auth_settings)

            async def auth_signs_with_the_new_key() -> bool:
                return auth.context.tokens.keys.signing_kid == new_kid

            await eventually(auth_signs_with_the_new_key, timeout=5)
            rotated = await new_session(to_auth)
            assert jwt.get_unverified_header(rotated.token)["kid"] == new_kid
            await wait_out_the_interval(fetched_at)
            response = await to_pub.get("/api/publications", headers=rotated.bearer)
            assert response.status_code in (200, 403), response.text  # verified: no 401
            assert counting.fetches == 3
            # and the old key is still published, so the older token keeps working
            response = await to_pub.get("/api/publications", headers=session.bearer)
            assert response.status_code == 200
            assert counting.fetches == 3


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
