"""Peer issuers (issue 10 §2): tokens made by the platform's other services with PyJWT,
each verified with its own issuer's keys only, on the HTTP and gRPC doors."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from agora.grpc.stubs import users_pb2, users_pb2_grpc
from tests.security.support import (
    Agora,
    Session,
    new_session,
    running_agora,
    sqlite_url,
    wait_active,
)
from tests.support.grpc_servers import bearer as grpc_bearer
from tests.support.grpc_servers import running_embedded
from tests.support.http_server import serving
from tests.support.jwks_server import JwksApp
from tests.support.settings import TEST_SECRET, make_settings

BILLING_SECRET = "billing-secret-that-is-long-enough-0123456789"
REFETCH_GAP = 0.2
SHOP_SECRET = "shop-secret-that-is-long-enough-for-hs256-987"


def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def public_jwk(private: Any, kid: str | None, **extra: Any) -> dict[str, Any]:
    converter: Any = RSAAlgorithm if isinstance(private, rsa.RSAPrivateKey) else ECAlgorithm
    jwk: dict[str, Any] = converter.to_jwk(private.public_key(), as_dict=True)
    jwk.pop("alg", None)  # as many identity providers publish them: no alg
    if kid is not None:
        jwk["kid"] = kid
    return {**jwk, **extra}


def peer_token(key: Any, alg: str, iss: str, sub: str, **claims: Any) -> str:
    """What Node jsonwebtoken / PyJWT put in by default: sub, iat, exp, iss."""
    now = int(time.time())
    payload = {"sub": sub, "iat": now, "exp": now + 600, "iss": iss, **claims}
    headers = {"kid": claims.pop("kid")} if "kid" in claims else None
    payload.pop("kid", None)
    return jwt.encode(payload, key, algorithm=alg, headers=headers)


async def status(agora: Agora, token: str) -> tuple[int, Any]:
    answer = await agora.client.get("/auth/api/me", headers={"Authorization": f"Bearer {token}"})
    return answer.status_code, answer.json()


@pytest.fixture
async def jwks() -> AsyncIterator[tuple[JwksApp, str]]:
    app = JwksApp()
    async with serving(app) as url:
        yield app, url


@pytest.fixture
async def peers(tmp_path: Path, jwks: tuple[JwksApp, str]) -> AsyncIterator[Agora]:
    _, url = jwks
    issuers = [
        {"issuer": "billing", "algorithms": ["HS256"], "secret": BILLING_SECRET},
        {"issuer": "shop", "algorithms": ["HS256"], "secret": SHOP_SECRET, "audience": "agora"},
        {"issuer": "https://a.example", "algorithms": ["RS256"], "jwks_url": f"{url}/a"},
        {"issuer": "https://b.example", "algorithms": ["RS256"], "jwks_url": f"{url}/b"},
    ]
    async with running_agora(
        tmp_path, trusted_issuers=issuers, jwks_min_refetch_gap=REFETCH_GAP
    ) as agora:
        yield agora


@pytest.fixture
async def user(peers: Agora) -> Session:
    return await new_session(peers.client)


async def test_a_pyjwt_token_with_its_defaults_is_accepted(peers: Agora, user: Session) -> None:
    token = peer_token(BILLING_SECRET, "HS256", "billing", user.user_id)
    assert await status(peers, token) == (200, (await status(peers, user.token))[1])
    await wait_active(peers.client, user)
    answer = await peers.client.get(
        "/api/publications", headers={"Authorization": f"Bearer {token}"}
    )
    assert answer.status_code == 200


async def test_audience_is_required_when_configured(peers: Agora, user: Session) -> None:
    without = peer_token(SHOP_SECRET, "HS256", "shop", user.user_id)
    wrong = peer_token(SHOP_SECRET, "HS256", "shop", user.user_id, aud="other")
    right = peer_token(SHOP_SECRET, "HS256", "shop", user.user_id, aud="agora")
    assert (await status(peers, without))[0] == 401
    assert (await status(peers, wrong))[0] == 401
    assert (await status(peers, right))[0] == 200


@pytest.mark.parametrize(
    ("key", "iss", "why"),
    [
        (BILLING_SECRET, "shop", "one peer's secret, a token naming another peer"),
        (SHOP_SECRET, "billing", "the reverse"),
        (TEST_SECRET, "billing", "Agora's own secret, a token naming a peer"),
        (BILLING_SECRET, "agora-auth", "a peer's secret, a token naming Agora"),
        (BILLING_SECRET, "nobody", "a peer's secret, an issuer nobody trusts"),
    ],
)
async def test_a_secret_verifies_only_its_own_issuer(
    peers: Agora, user: Session, key: str, iss: str, why: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="agora.audit")
    # Every claim Agora's own tokens carry, so that only the key decides.
    now = int(time.time())
    claims = {"aud": "agora", "nbf": now, "jti": uuid.uuid4().hex, "typ": "access"}
    token = peer_token(key, "HS256", iss, user.user_id, **claims)
    assert await status(peers, token) == (401, {"error": "Invalid token"}), why
    refused = [r for r in caplog.records if getattr(r, "audit", {}).get("event") == "auth.rejected"]
    assert refused, "a refused peer token is an audit event"


async def test_jwks_keys_are_isolated_per_issuer(
    peers: Agora, user: Session, jwks: tuple[JwksApp, str]
) -> None:
    server, _ = jwks
    attacker, victim = rsa_key(), rsa_key()
    # Issuer A (which an attacker controls) publishes a key under B's kid.
    server.publish("/a", public_jwk(attacker, "shared"))
    server.publish("/b", public_jwk(victim, "shared"))
    await asyncio.sleep(REFETCH_GAP * 2)  # the fetch at start (404) spent the gap
    as_a = peer_token(attacker, "RS256", "https://a.example", user.user_id, kid="shared")
    assert (await status(peers, as_a))[0] == 200  # A's key fetched and cached
    forged = peer_token(attacker, "RS256", "https://b.example", user.user_id, kid="shared")
    assert await status(peers, forged) == (401, {"error": "Invalid token"})
    genuine = peer_token(victim, "RS256", "https://b.example", user.user_id, kid="shared")
    assert (await status(peers, genuine))[0] == 200
    assert (await status(peers, forged))[0] == 401  # with both cached, still refused


async def test_jwks_keys_without_alg_are_used_when_they_fit(
    peers: Agora, user: Session, jwks: tuple[JwksApp, str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="agora.keys")
    server, _ = jwks
    good, ec_key = rsa_key(), ec.generate_private_key(ec.SECP256R1())
    server.publish("/a", public_jwk(good, "rsa-no-alg"), public_jwk(ec_key, "ec-no-alg"))
    await asyncio.sleep(REFETCH_GAP * 2)  # the fetch at start (404) spent the gap
    token = peer_token(good, "RS256", "https://a.example", user.user_id, kid="rsa-no-alg")
    assert (await status(peers, token))[0] == 200
    ec_token = peer_token(ec_key, "ES256", "https://a.example", user.user_id, kid="ec-no-alg")
    assert (await status(peers, ec_token))[0] == 401  # ES256 is not among A's algorithms
    dropped = [r.getMessage() for r in caplog.records if "dropped" in r.getMessage()]
    assert any("'ec-no-alg'" in m and "ES256 is not among" in m for m in dropped), dropped


async def test_logout_everywhere_revokes_peer_tokens_by_iat(peers: Agora, user: Session) -> None:
    earlier = peer_token(BILLING_SECRET, "HS256", "billing", user.user_id, iat=int(time.time()) - 5)
    no_iat = jwt.encode(
        {"sub": user.user_id, "iss": "billing", "exp": int(time.time()) + 600}, BILLING_SECRET
    )
    assert (await status(peers, earlier))[0] == (await status(peers, no_iat))[0] == 200
    answer = await peers.client.post("/auth/api/logout/all", headers=user.bearer)
    assert answer.status_code == 200, answer.text
    assert await status(peers, earlier) == (401, {"error": "Token revoked"})
    assert await status(peers, no_iat) == (401, {"error": "Token revoked"})


async def test_logout_revokes_one_peer_token_by_jti(peers: Agora, user: Session) -> None:
    one = peer_token(BILLING_SECRET, "HS256", "billing", user.user_id, jti="j-1")
    other = peer_token(BILLING_SECRET, "HS256", "billing", user.user_id, jti="j-2")
    # The same jti from another issuer is another token.
    shop = peer_token(SHOP_SECRET, "HS256", "shop", user.user_id, jti="j-1", aud="agora")
    answer = await peers.client.post("/auth/api/logout", headers={"Authorization": f"Bearer {one}"})
    assert answer.status_code == 200, answer.text
    assert await status(peers, one) == (401, {"error": "Token revoked"})
    assert (await status(peers, other))[0] == 200
    assert (await status(peers, shop))[0] == 200


async def test_the_grpc_door_accepts_peer_tokens(tmp_path: Path) -> None:
    issuers = [{"issuer": "billing", "algorithms": ["HS256"], "secret": BILLING_SECRET}]
    settings = make_settings(
        tmp_path, trusted_issuers=issuers, database_url=await sqlite_url(tmp_path)
    )
    async with running_embedded(settings) as running:
        session = await new_session(running.http)
        stub: Any = users_pb2_grpc.UserServiceStub(running.channel)
        token = peer_token(BILLING_SECRET, "HS256", "billing", session.user_id)
        answer = await stub.GetUser(
            users_pb2.GetUserRequest(id=session.user_id), metadata=grpc_bearer(token), timeout=5
        )
        assert answer.login == session.login
        forged = peer_token(TEST_SECRET, "HS256", "billing", session.user_id)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.GetUser(
                users_pb2.GetUserRequest(id=session.user_id),
                metadata=grpc_bearer(forged),
                timeout=5,
            )
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
