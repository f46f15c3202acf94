"""Revocation in the Flask adapter and the introspection endpoint behind it (issue 10 §3)."""

from __future__ import annotations

import base64
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from flask import Flask, g

from agora.contrib.flask import init_app, token_required
from agora.security.client_secrets import derived_client_secret
from tests.security.support import Agora, new_session, running_agora
from tests.support.settings import TEST_SECRET

SECRET = "introspection-secret-long-enough-0123456789"


def basic(client_id: str, password: str) -> dict[str, str]:
    raw = base64.b64encode(f"{client_id}:{password}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


@pytest.fixture
async def agora(tmp_path: Path) -> AsyncIterator[Agora]:
    async with running_agora(tmp_path, introspection_secret=SECRET) as running:
        yield running


async def introspect(agora: Agora, token: str, headers: dict[str, str]) -> httpx.Response:
    return await agora.client.post("/auth/api/introspect", data={"token": token}, headers=headers)


async def test_introspection_answers_authenticated_callers_only(
    agora: Agora, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="agora.audit")
    session = await new_session(agora.client)
    for headers in (
        {},
        basic("svc", "wrong"),
        basic("svc", SECRET[:-1]),
        {"Authorization": "Basic !!"},
    ):
        answer = await introspect(agora, session.token, headers)
        assert answer.status_code == 401, headers
        assert answer.headers["WWW-Authenticate"].startswith("Basic")
        assert "active" not in answer.json()
    events = [
        r.audit
        for r in caplog.records
        if getattr(r, "audit", {}).get("event") == "auth.introspection_refused"  # type: ignore[attr-defined]
    ]
    assert len(events) == 4


async def test_introspection_says_active_then_not_after_logout(agora: Agora) -> None:
    session = await new_session(agora.client)
    for headers in (basic("svc", SECRET), basic("svc", derived_client_secret(TEST_SECRET, "svc"))):
        answer = await introspect(agora, session.token, headers)
        assert answer.status_code == 200
        body = answer.json()
        assert (body["active"], body["sub"], body["username"]) == (
            True,
            session.user_id,
            session.login,
        )
    # The derived password is per client id.
    other = basic("other", derived_client_secret(TEST_SECRET, "svc"))
    assert (await introspect(agora, session.token, other)).status_code == 401
    await agora.client.post("/auth/api/logout", headers=session.bearer)
    answer = await introspect(agora, session.token, basic("svc", SECRET))
    assert answer.json() == {"active": False}
    assert (await introspect(agora, "not.a.jwt", basic("svc", SECRET))).json() == {"active": False}
    missing = await agora.client.post("/auth/api/introspect", headers=basic("svc", SECRET))
    assert missing.status_code == 400


def app_with(**config: Any) -> Flask:
    app = Flask("revocation-test")
    app.config.update({"AGORA_JWT_SECRET": TEST_SECRET, **config})

    @app.get("/api/whoami")
    @token_required
    async def whoami() -> dict[str, str]:
        return {"user_id": g.current_user.user_id}

    return app


def test_init_app_refuses_to_start_without_a_revocation_source() -> None:
    with pytest.raises(RuntimeError, match="no revocation source"):
        init_app(app_with())
    for off in (False, "false", "0"):
        init_app(app_with(AGORA_REVOCATION_CHECK=off))
    init_app(app_with(AGORA_AUTH_URL="http://127.0.0.1:9"))


def test_a_peer_only_app_needs_the_introspection_secret() -> None:
    peers = [{"issuer": "billing", "algorithms": ["HS256"], "secret": "b" * 40}]
    app = app_with(AGORA_JWT_SECRET="", AGORA_TRUSTED_ISSUERS=peers, AGORA_AUTH_URL="http://x")
    with pytest.raises(RuntimeError, match="AGORA_INTROSPECTION_SECRET"):
        init_app(app)


def test_a_bad_trusted_issuer_in_the_flask_config_fails_at_init_without_its_secret() -> None:
    bad = '[{"issuer": "billing", "algorithms": ["RS256"], "secret": "hidden-secret-value"}]'
    with pytest.raises(RuntimeError, match="HS256 only") as refused:
        init_app(app_with(AGORA_TRUSTED_ISSUERS=bad, AGORA_REVOCATION_CHECK=False))
    assert "hidden-secret-value" not in str(refused.value)


async def test_auth_unreachable_fails_closed_with_503(agora: Agora) -> None:
    session = await new_session(agora.client)
    app = app_with(AGORA_AUTH_URL="http://127.0.0.1:9")  # nothing listens there
    init_app(app)
    answer = app.test_client().get("/api/whoami", headers=session.bearer)
    assert answer.status_code == 503
    assert answer.get_json() == {"error": "Token revocation could not be checked"}
