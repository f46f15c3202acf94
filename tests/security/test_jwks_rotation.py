"""Issue 11, stale JWKS keys: made-up kids never hide a real rotation for long.

A peer issuer's JWKS is served over real HTTP; tokens are made with PyJWT."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.security.support import Agora, new_session, running_agora
from tests.security.test_peer_issuers import public_jwk
from tests.support.http_server import serving
from tests.support.jwks_server import JwksApp
from tests.support.waiting import eventually

ISSUER = "https://id.example"
GAP = 1.0


def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def token(key: rsa.RSAPrivateKey, kid: str, sub: str) -> str:
    now = int(time.time())
    claims = {"iss": ISSUER, "sub": sub, "iat": now, "exp": now + 600}
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": kid})


FIRST_KEY = rsa_key()


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[tuple[Agora, JwksApp]]:
    server = JwksApp()
    server.publish("/jwks", public_jwk(FIRST_KEY, "k1"))  # fetched when Agora starts
    async with serving(server) as url:
        issuers = [{"issuer": ISSUER, "algorithms": ["RS256"], "jwks_url": f"{url}/jwks"}]
        # The default per-kid retry (30 s): the rotation must not wait for it.
        async with running_agora(
            tmp_path, trusted_issuers=issuers, jwks_min_refetch_gap=GAP
        ) as agora:
            yield agora, server


async def code(agora: Agora, bearer: str) -> int:
    answer = await agora.client.get("/auth/api/me", headers={"Authorization": f"Bearer {bearer}"})
    return answer.status_code


async def test_one_made_up_kid_does_not_hide_a_rotation(setup: tuple[Agora, JwksApp]) -> None:
    agora, server = setup
    user = await new_session(agora.client)
    old, new, stranger = FIRST_KEY, rsa_key(), rsa_key()
    assert await code(agora, token(old, "k1", user.user_id)) == 200
    assert await code(agora, token(stranger, "made-up", user.user_id)) == 401
    server.publish("/jwks", public_jwk(old, "k1"), public_jwk(new, "k2"))
    rotated = token(new, "k2", user.user_id)
    started = time.monotonic()

    async def accepted() -> bool:
        return await code(agora, rotated) == 200

    await eventually(accepted, timeout=10)
    assert time.monotonic() - started < GAP + 3


async def test_a_stream_of_made_up_kids_costs_one_fetch_per_gap_and_hides_nothing(
    setup: tuple[Agora, JwksApp],
) -> None:
    agora, server = setup
    user = await new_session(agora.client)
    old, new, stranger = FIRST_KEY, rsa_key(), rsa_key()
    assert await code(agora, token(old, "k1", user.user_id)) == 200
    before = server.fetches["/jwks"]
    stop = asyncio.Event()
    sent = 0

    async def flood() -> None:
        nonlocal sent
        while not stop.is_set():
            assert await code(agora, token(stranger, f"made-up-{sent}", user.user_id)) == 401
            sent += 1

    flooding = asyncio.create_task(flood())
    try:
        await asyncio.sleep(GAP * 1.5)
        server.publish("/jwks", public_jwk(old, "k1"), public_jwk(new, "k2"))
        rotated = token(new, "k2", user.user_id)
        started = time.monotonic()

        async def accepted() -> bool:
            return await code(agora, rotated) == 200

        await eventually(accepted, timeout=10)
        picked_up = time.monotonic() - started
        await asyncio.sleep(GAP)
    finally:
        stop.set()
        await flooding
    elapsed = GAP * 2.5 + picked_up
    assert picked_up < GAP + 3, picked_up
    assert sent > 20, "the flood was too thin to prove anything"
    assert server.fetches["/jwks"] - before <= elapsed / GAP + 2, (server.fetches, sent)
