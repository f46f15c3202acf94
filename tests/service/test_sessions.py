"""Issue 15 §5: a user is connected while any of their sessions is live.

Auth keeps one `auth_sessions` row per access token from login to its logout or
expiry, and writes `disconnected` only when the last one ends (logout, logout-all,
expiry). What reaches publications is then the events' ordinary path.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update

from agora.db.engine import utcnow
from agora.services.auth.models import LiveSession, OutboxEvent
from agora.services.auth.service import AuthService
from tests.support.grpc_servers import Running, running_auth
from tests.support.settings import make_settings
from tests.support.users import PASSWORD, register_and_login


@pytest.fixture
async def auth(tmp_path: Path, database_url: str) -> AsyncIterator[Running]:
    async with running_auth(make_settings(tmp_path, database_url=database_url)) as running:
        yield running


def service(running: Running) -> AuthService:
    provided: AuthService = running.app("auth").provided(AuthService)
    return provided


async def events(running: Running, user_id: str) -> list[str]:
    async with service(running).db.sessions() as session:
        rows = await session.execute(select(OutboxEvent.routing_key).order_by(OutboxEvent.id))
        keys = list(rows.scalars())
        payloads = await session.execute(select(OutboxEvent.payload).order_by(OutboxEvent.id))
    return [
        key
        for key, payload in zip(keys, payloads.scalars(), strict=True)
        if f'"user_id":"{user_id}"' in payload
    ]


async def two_sessions(running: Running) -> tuple[str, str, str]:
    user, first = await register_and_login(running.http)
    login = {"login": user["login"], "password": PASSWORD}
    second = (await running.http.post("/auth/api/login", json=login)).json()["token"]
    return str(user["id"]), first, second


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_logout_disconnects_only_with_the_last_live_session(auth: Running) -> None:
    user_id, first, second = await two_sessions(auth)
    assert (await auth.http.post("/auth/api/logout", headers=bearer(first))).status_code == 200
    assert await events(auth, user_id) == ["user.connected", "user.connected"]
    assert (await auth.http.get("/auth/api/me", headers=bearer(second))).status_code == 200
    assert (await auth.http.post("/auth/api/logout", headers=bearer(second))).status_code == 200
    assert await events(auth, user_id) == ["user.connected"] * 2 + ["user.disconnected"]


async def test_logout_all_disconnects_at_once(auth: Running) -> None:
    user_id, first, _second = await two_sessions(auth)
    response = await auth.http.post("/auth/api/logout/all", headers=bearer(first))
    assert response.status_code == 200
    assert await events(auth, user_id) == ["user.connected"] * 2 + ["user.disconnected"]
    assert await service(auth).end_expired_sessions() == []  # nothing left to end


async def expire(running: Running, *, all_of: str | None = None, jti: str | None = None) -> None:
    past = utcnow() - timedelta(seconds=1)
    statement = update(LiveSession).values(live_until=past)
    if jti is not None:
        statement = statement.where(LiveSession.jti == jti)
    elif all_of is not None:
        statement = statement.where(LiveSession.user_id == int(all_of))
    async with service(running).db.transaction() as session:
        await session.execute(statement)


async def test_the_expiry_of_the_last_session_disconnects(auth: Running) -> None:
    user_id, first, _second = await two_sessions(auth)
    first_jti = service(auth).tokens.verify(first).jti
    await expire(auth, jti=first_jti)
    assert await service(auth).end_expired_sessions() == []  # the other one is live
    assert await events(auth, user_id) == ["user.connected"] * 2
    await expire(auth, all_of=user_id)
    assert await service(auth).end_expired_sessions() == [user_id]
    assert await events(auth, user_id) == ["user.connected"] * 2 + ["user.disconnected"]
    assert await service(auth).end_expired_sessions() == []  # once
