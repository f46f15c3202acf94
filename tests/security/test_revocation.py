"""Revocation: logout revokes the token's jti until its exp, "log out everywhere" every
earlier token of the user; `token_required` checks both on every service, on every
backend (SQLite and PostgreSQL; the memory cache and real Redis), and a revoked token
stays refused when the cache forgets it or cannot be reached.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
import redis

from agora.security import revocation
from tests.security.support import Session, log_in, new_session, running_agora, wait_active
from tests.support.net import free_port
from tests.support.services import drop_namespace, require_redis
from tests.support.waiting import eventually

PROTECTED = ("/auth/api/me", "/api/publications")
REVOKED = (401, {"error": "Token revoked"})


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
def cache(request: pytest.FixtureRequest, redis_namespace: str) -> Iterator[dict[str, Any]]:
    """Settings selecting the cache backend; a Redis namespace is deleted afterwards."""
    if request.param == "memory":
        yield {}
        return
    url = require_redis()
    yield {"redis_url": url, "redis_namespace": redis_namespace}
    client = redis.Redis.from_url(url)
    try:
        keys = list(client.scan_iter(match=f"{redis_namespace}*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


async def answers(client: httpx.AsyncClient, session: Session) -> list[tuple[int, Any]]:
    results = []
    for path in PROTECTED:
        response = await client.get(path, headers=session.bearer)
        results.append((response.status_code, response.json()))
    return results


async def accepted(client: httpx.AsyncClient, session: Session) -> bool:
    return [status for status, _ in await answers(client, session)] == [200, 200]


async def refused(client: httpx.AsyncClient, session: Session) -> bool:
    return await answers(client, session) == [REVOKED, REVOKED]


async def test_logout_revokes_the_token_on_every_service(
    tmp_path: Path, database_url: str, cache: dict[str, Any]
) -> None:
    async with running_agora(tmp_path, database_url=database_url, **cache) as agora:
        session = await new_session(agora.client)
        other_device = await log_in(agora.client, session.login)
        await wait_active(agora.client, session)
        assert await accepted(agora.client, session)

        logout = await agora.client.post("/auth/api/logout", headers=session.bearer)
        assert logout.status_code == 200, logout.text
        assert await refused(agora.client, session)
        again = await agora.client.post("/auth/api/logout", headers=session.bearer)
        assert again.status_code == 401
        # Only that token: the same user's other token still works.
        me = await agora.client.get("/auth/api/me", headers=other_device.bearer)
        assert me.status_code == 200


async def test_logout_everywhere_revokes_every_earlier_token(
    tmp_path: Path, database_url: str, cache: dict[str, Any]
) -> None:
    async with running_agora(tmp_path, database_url=database_url, **cache) as agora:
        first = await new_session(agora.client)
        second = await log_in(agora.client, first.login)
        bystander = await new_session(agora.client)
        await wait_active(agora.client, first)

        out = await agora.client.post("/auth/api/logout/all", headers=second.bearer)
        assert out.status_code == 200, out.text
        for session in (first, second):
            assert await refused(agora.client, session)
        assert (await agora.client.get("/auth/api/me", headers=bystander.bearer)).status_code == 200

        # iat has whole seconds: a token issued in the second of the logout counts as
        # earlier. One issued after that second works.
        await asyncio.sleep(math_ceil_wait())
        after = await log_in(agora.client, first.login)
        await wait_active(agora.client, after)
        assert await accepted(agora.client, after)
        assert await refused(agora.client, first)


def math_ceil_wait() -> float:
    """Seconds until the next whole second, plus a margin."""
    return 1.0 - (time.time() % 1.0) + 0.05


async def test_a_revoked_token_stays_refused_after_the_cache_is_emptied(
    tmp_path: Path, database_url: str, cache: dict[str, Any]
) -> None:
    settings = {"database_url": database_url, **cache}
    async with running_agora(tmp_path, **settings) as agora:
        revoked = await new_session(agora.client)
        everywhere = await new_session(agora.client)
        kept = await new_session(agora.client)
        await agora.client.post("/auth/api/logout", headers=revoked.bearer)
        await agora.client.post("/auth/api/logout/all", headers=everywhere.bearer)
        if cache:  # Redis lost its data (a restart without persistence, a flush)
            assert await drop_namespace(cache["redis_url"], cache["redis_namespace"]) > 0
            for session in (revoked, everywhere):
                assert await refused(agora.client, session)  # at once, not after a refill
    # A restart: a new memory cache, empty; the Redis namespace emptied again.
    if cache:
        await drop_namespace(cache["redis_url"], cache["redis_namespace"])
    async with running_agora(tmp_path, **settings) as agora:
        for session in (revoked, everywhere):
            assert await refused(agora.client, session)
        me = await agora.client.get("/auth/api/me", headers=kept.bearer)
        assert me.status_code == 200


async def test_with_the_cache_unreachable_the_database_answers(
    tmp_path: Path, database_url: str
) -> None:
    async with running_agora(tmp_path, database_url=database_url) as agora:
        revoked = await new_session(agora.client)
        everywhere = await new_session(agora.client)
        kept = await new_session(agora.client)
        await agora.client.post("/auth/api/logout", headers=revoked.bearer)
        await agora.client.post("/auth/api/logout/all", headers=everywhere.bearer)

    # The same database, and a Redis that is not there (nothing listens on the port).
    dead_redis = f"redis://127.0.0.1:{free_port()}/0"
    async with running_agora(tmp_path, database_url=database_url, redis_url=dead_redis) as agora:
        for session in (revoked, everywhere):
            me = await agora.client.get("/auth/api/me", headers=session.bearer)
            assert (me.status_code, me.json()) == REVOKED
        me = await agora.client.get("/auth/api/me", headers=kept.bearer)
        assert me.status_code == 200, me.text  # the fallback is not "refuse everyone"


async def test_the_cache_is_refilled_from_the_database(
    tmp_path: Path, database_url: str, cache: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not a rule of its own (the database answers meanwhile), but what keeps the
    database from answering every request after a Redis restart."""
    monkeypatch.setattr(revocation, "RECHECK_INTERVAL", 0.05)
    settings = {"database_url": database_url, **cache}
    async with running_agora(tmp_path, **settings) as agora:
        session = await new_session(agora.client)
        await agora.client.post("/auth/api/logout", headers=session.bearer)
        jti = jwt.decode(session.token, options={"verify_signature": False})["jti"]
        key = f"{agora.settings.key_prefix}revoked:jti:{jti}"
        store = agora.auth.context.revocations
        if cache:
            await drop_namespace(cache["redis_url"], cache["redis_namespace"])
        else:  # a restart is the memory cache's way to lose everything
            await store.cache.delete(key, f"{agora.settings.key_prefix}revocations:loaded")
        assert await store.cache.get(key) is None

        async def refilled() -> bool:
            return await store.cache.get(key) is not None

        await eventually(refilled, timeout=5)
