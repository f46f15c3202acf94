"""What the token-security tests share: a running Agora of a test's own, users, the
means to forge tokens as an attacker would (by hand, not with PyJWT's safety checks),
and a `Target`: a deployment and a session whose tokens are accepted or refused.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from fastapi import FastAPI

from agora.core.settings import Settings
from agora.db.migrate import upgrade
from agora.runtime.embedded import create_embedded_app
from agora.runtime.process import ProcessApp
from agora.security.keys import Key
from agora.security.tokens import TokenService
from tests.support.settings import make_settings
from tests.support.users import PASSWORD, unique_login
from tests.support.waiting import eventually


@dataclass
class Agora:
    """Every service in one process on a database of the test's own, with a client."""

    app: ProcessApp
    client: httpx.AsyncClient
    settings: Settings

    @property
    def auth(self) -> FastAPI:
        return self.app.apps[0]

    @property
    def publications(self) -> FastAPI:
        return self.app.apps[1]

    @property
    def tokens(self) -> TokenService:
        tokens: TokenService = self.auth.context.tokens
        return tokens

    @property
    def signing_key(self) -> Key:
        return self.tokens.keys.signing_key


async def sqlite_url(directory: Path) -> str:
    url = f"sqlite+aiosqlite:///{directory / 'agora.db'}"
    await asyncio.to_thread(upgrade, url)  # Alembic blocks; keep it off the event loop
    return url


@asynccontextmanager
async def running_agora(data_dir: Path, **overrides: Any) -> AsyncIterator[Agora]:
    """`create_embedded_app` with the test settings plus `overrides`; SQLite unless a
    `database_url` is given (already migrated)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    if not overrides.get("database_url"):
        overrides["database_url"] = await sqlite_url(data_dir)
    # A module's deployment sees hundreds of refused tokens a minute from one client, and
    # the token tests read each refusal's audit line: every one is written in full here.
    # tests/security/test_audit_volume.py runs with the default.
    overrides.setdefault("audit_refusal_detail_per_minute", 1_000_000)
    settings = make_settings(data_dir, **overrides)
    app = create_embedded_app(settings)
    async with app.running():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield Agora(app, client, settings)


# --- users -------------------------------------------------------------------------


@dataclass
class Session:
    """One login: the token, its CSRF token and the user behind it."""

    user_id: str
    login: str
    token: str
    csrf: str

    @property
    def bearer(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def cookies(self, csrf_cookie: str | None = None) -> dict[str, str]:
        """A browser's Cookie header for this session (its own csrf cookie by default)."""
        csrf = self.csrf if csrf_cookie is None else csrf_cookie
        return {"Cookie": f"auth_token={self.token}; csrf_token={csrf}"}


async def register(client: httpx.AsyncClient, prefix: str = "sec") -> str:
    login = unique_login(prefix)
    response = await client.post(
        "/auth/api/register",
        json={"login": login, "password": PASSWORD, "email": f"{login}@example.com",
              "name": login},
    )  # fmt: skip
    assert response.status_code == 201, response.text
    return login


async def log_in(client: httpx.AsyncClient, login: str) -> Session:
    response = await client.post("/auth/api/login", json={"login": login, "password": PASSWORD})
    assert response.status_code == 200, response.text
    body = response.json()
    return Session(body["user"]["id"], login, body["token"], body["csrf_token"])


async def new_session(client: httpx.AsyncClient) -> Session:
    return await log_in(client, await register(client))


async def wait_active(client: httpx.AsyncClient, session: Session) -> None:
    """Until the publications service has applied the user's `connected` event."""

    async def active() -> bool:
        response = await client.get("/api/publications", headers=session.bearer)
        assert response.status_code in (200, 403), response.text
        return response.status_code == 200

    await eventually(active, timeout=10)


# --- forging tokens ------------------------------------------------------------------


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def segment(value: Any) -> str:
    return b64(json.dumps(value, separators=(",", ":")).encode())


DROP = object()  # a claim override that removes the claim


def claims_for(session: Session, settings: Settings, **overrides: Any) -> dict[str, Any]:
    """What the auth service would put in an access token for `session`'s user."""
    now = int(time.time())
    values: dict[str, Any] = {
        "sub": session.user_id, "user_id": session.user_id, "login": session.login,
        "iss": settings.jwt_issuer, "aud": settings.jwt_audience,
        "iat": now, "nbf": now, "exp": now + 600, "jti": uuid.uuid4().hex, "typ": "access",
    }  # fmt: skip
    values.update(overrides)
    return {k: v for k, v in values.items() if v is not DROP}


def sign(key: Key, claims: dict[str, Any], **header: Any) -> str:
    """Signed with one of our own keys (what only the auth service can do)."""
    full = {"alg": key.alg, "typ": "JWT", "kid": key.kid, **header}
    signing_input = f"{segment(full)}.{segment(claims)}"
    # By hand, so that any header (even one PyJWT would refuse to write) gets signed.
    algorithm = jwt.get_algorithm_by_name(key.alg)
    signature = algorithm.sign(signing_input.encode(), algorithm.prepare_key(key.signing))
    return f"{signing_input}.{b64(signature)}"


def hs256_by_hand(header: dict[str, Any], claims: dict[str, Any], secret: bytes) -> str:
    """HMAC-SHA256 over whatever header we like, with whatever bytes as the secret: the
    algorithm-confusion attacker, who does not go through PyJWT's key checks."""
    signing_input = f"{segment(header)}.{segment(claims)}"
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"


def unsigned(header: dict[str, Any], claims: dict[str, Any], signature: str = "") -> str:
    return f"{segment(header)}.{segment(claims)}.{signature}"


def audit_reasons(caplog: pytest.LogCaptureFixture, event: str = "auth.rejected") -> list[str]:
    """The `reason` of each audit event of that name logged so far."""
    return [
        record.audit["reason"]  # type: ignore[attr-defined]
        for record in caplog.records
        if record.name == "agora.audit" and getattr(record, "audit", {}).get("event") == event
    ]


def capture_audit(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="agora.audit")


# --- a deployment under attack -------------------------------------------------------

PROTECTED = ("/auth/api/me", "/api/publications")  # one route of each service


@dataclass
class Target:
    agora: Agora
    session: Session

    @property
    def alg(self) -> str:
        return self.agora.settings.jwt_algorithm

    def claims(self, **overrides: Any) -> dict[str, Any]:
        return claims_for(self.session, self.agora.settings, **overrides)

    def signed(self, **header: Any) -> str:
        return sign(self.agora.signing_key, self.claims(), **header)

    def jwk(self) -> dict[str, Any]:
        return self.agora.signing_key.public_jwk()

    async def statuses(self, token: str) -> list[tuple[int, Any]]:
        # As bytes: a client may send any octets; the server reads them as latin-1.
        headers = {b"Authorization": f"Bearer {token}".encode()}
        answers = [await self.agora.client.get(path, headers=headers) for path in PROTECTED]
        return [(a.status_code, a.json()) for a in answers]

    async def accepted(self, token: str) -> None:
        assert [status for status, _ in await self.statuses(token)] == [200, 200]

    async def refused(self, token: str) -> None:
        for status, body in await self.statuses(token):
            assert (status, body) == (401, {"error": "Invalid token"})
