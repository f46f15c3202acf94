"""Asymmetric signing (RS256, ES256, EdDSA), the published JWKS, rotation and pruning.

Each test runs every service in one process with the algorithm under test and a key
directory of its own under a temporary AGORA_DATA_DIR.
"""

from __future__ import annotations

import json
import os
import stat
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from agora import cli
from agora.security import keyring
from agora.security.keys import ASYMMETRIC, KeyDirectory, generate_private_key, thumbprint_kid
from tests.security.support import (
    claims_for,
    hs256_by_hand,
    new_session,
    running_agora,
    wait_active,
)
from tests.support.settings import TEST_SECRET
from tests.support.waiting import eventually

PRIVATE_MEMBERS = {"d", "p", "q", "dp", "dq", "qi", "k", "oth"}


def verify_with_jwks(token: str, jwks: dict[str, Any], audience: str = "agora") -> dict[str, Any]:
    """What any outside verifier does: pick the published key by kid, use its alg."""
    kid = jwt.get_unverified_header(token)["kid"]
    entry = next(k for k in jwks["keys"] if k["kid"] == kid)
    key = jwt.PyJWK(entry)
    claims: dict[str, Any] = jwt.decode(token, key, algorithms=[entry["alg"]], audience=audience)
    return claims


@pytest.mark.parametrize("alg", ASYMMETRIC)
async def test_login_signs_with_the_asymmetric_key_and_protected_routes_accept_it(
    tmp_path: Path, alg: str
) -> None:
    async with running_agora(tmp_path, jwt_algorithm=alg) as agora:
        session = await new_session(agora.client)
        header = jwt.get_unverified_header(session.token)
        assert header["alg"] == alg
        assert header["kid"] == agora.signing_key.kid == agora.tokens.keys.signing_kid

        me = await agora.client.get("/auth/api/me", headers=session.bearer)
        assert me.status_code == 200, me.text
        await wait_active(agora.client, session)  # the publications service verifies it too

        jwks = (await agora.client.get("/auth/.well-known/jwks.json")).json()
        claims = verify_with_jwks(session.token, jwks)  # anyone can check it, with no secret
        assert claims["sub"] == session.user_id
        # RFC 7638: the kid is the thumbprint of the published public key
        entry = next(k for k in jwks["keys"] if k["kid"] == header["kid"])
        assert thumbprint_kid(entry) == header["kid"]


@pytest.mark.parametrize("alg", ASYMMETRIC)
async def test_jwks_publishes_exactly_the_public_keys(tmp_path: Path, alg: str) -> None:
    # The test settings also hold an HMAC secret (for HS256 peers): it must stay private.
    async with running_agora(tmp_path, jwt_algorithm=alg) as agora:
        assert agora.tokens.keys.hmac() is not None
        response = await agora.client.get("/auth/.well-known/jwks.json")
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/jwk-set+json"
        jwks = response.json()

        asymmetric = {k.kid: k for k in agora.tokens.keys.keys() if k.alg != "HS256"}
        assert {entry["kid"] for entry in jwks["keys"]} == set(asymmetric)
        for entry in jwks["keys"]:
            assert not PRIVATE_MEMBERS & entry.keys(), entry
            assert entry["kty"] != "oct" and entry["alg"] == alg and entry["use"] == "sig"
            public = jwt.PyJWK(entry).key
            ours = asymmetric[entry["kid"]].verifying
            raw = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            assert public.public_bytes(*raw) == ours.public_bytes(*raw)
        assert TEST_SECRET not in response.text


@pytest.mark.parametrize("alg", ASYMMETRIC)
async def test_rotation_signs_new_tokens_with_the_new_key_and_old_ones_keep_working(
    tmp_path: Path,
    alg: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(keyring, "DIRECTORY_POLL", 0.05)  # the running apps look often
    async with running_agora(tmp_path, jwt_algorithm=alg) as agora:
        old = await new_session(agora.client)
        await wait_active(agora.client, old)
        old_kid = jwt.get_unverified_header(old.token)["kid"]

        # `agora keys rotate`, as an operator runs it beside the running service
        for name, value in {
            "AGORA_ENV": "test", "AGORA_DATA_DIR": str(tmp_path), "AGORA_JWT_ALGORITHM": alg,
            "AGORA_JWT_SECRET": TEST_SECRET,
        }.items():  # fmt: skip
            monkeypatch.setenv(name, value)
        cli.main(["keys", "rotate"])
        new_kid = json.loads(capsys.readouterr().out)["kid"]
        assert new_kid != old_kid

        async def signing_with_new_key() -> bool:
            # both running services pick the new key set up by themselves
            return all(app.context.tokens.keys.signing_kid == new_kid for app in agora.app.apps)

        await eventually(signing_with_new_key, timeout=5)
        new = await new_session(agora.client)
        assert jwt.get_unverified_header(new.token) == {"alg": alg, "typ": "JWT", "kid": new_kid}

        for session in (old, new):
            assert (
                await agora.client.get("/auth/api/me", headers=session.bearer)
            ).status_code == 200
        await wait_active(agora.client, new)
        listed = await agora.client.get("/api/publications", headers=old.bearer)
        assert listed.status_code == 200, listed.text  # the old token, on the other service
        jwks = (await agora.client.get("/auth/.well-known/jwks.json")).json()
        assert {k["kid"] for k in jwks["keys"]} == {old_kid, new_kid}


def test_retired_keys_are_pruned_once_their_last_token_has_expired(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.support.settings import make_settings

    settings = make_settings(tmp_path, jwt_algorithm="EdDSA", token_ttl=600, token_leeway=30)
    keep_for = keyring.retention(settings)
    assert keep_for == 630  # a retired key verifies for as long as any token it signed
    first = keyring.rotate(settings)
    t0 = int(time.time())
    monkeypatch.setattr(time, "time", lambda: t0)
    second = keyring.rotate(settings)  # `first` retires at t0

    monkeypatch.setattr(time, "time", lambda: t0 + keep_for)
    third = keyring.rotate(settings)  # not yet: a token `first` signed at t0 is alive
    directory = KeyDirectory(tmp_path / "keys")
    assert {k.kid for k in directory.load().keys()} == {first, second, third}

    monkeypatch.setattr(time, "time", lambda: t0 + keep_for + 1)
    fourth = keyring.rotate(settings)
    assert {k.kid for k in directory.load().keys()} == {second, third, fourth}
    assert not (tmp_path / "keys" / f"{first}.pem").exists()
    assert directory.load().signing_kid == fourth


def test_key_files_are_private_and_keys_show_prints_only_public_halves(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AGORA_ENV", "test")
    monkeypatch.setenv("AGORA_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("AGORA_JWT_ALGORITHM", "ES256")
    monkeypatch.setenv("AGORA_JWT_SECRET", TEST_SECRET)
    cli.main(["keys", "rotate"])
    kid = json.loads(capsys.readouterr().out)["kid"]
    keys_dir = tmp_path / "keys"
    assert stat.S_IMODE(os.stat(keys_dir).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(keys_dir / f"{kid}.pem").st_mode) == 0o600

    cli.main(["keys", "show"])
    shown = json.loads(capsys.readouterr().out)
    assert [k["kid"] for k in shown["keys"]] == [kid]
    assert all(not PRIVATE_MEMBERS & k.keys() for k in shown["keys"])
    assert TEST_SECRET not in json.dumps(shown)


@pytest.mark.parametrize("alg", ASYMMETRIC)
async def test_a_private_key_given_as_a_pem_file_signs(tmp_path: Path, alg: str) -> None:
    private = generate_private_key(alg)
    pem_file = tmp_path / "signing.pem"
    pem_file.write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    async with running_agora(tmp_path, jwt_algorithm=alg, jwt_private_key_file=pem_file) as agora:
        session = await new_session(agora.client)
        jwks = (await agora.client.get("/auth/.well-known/jwks.json")).json()
        assert len(jwks["keys"]) == 1
        verify_with_jwks(session.token, jwks)
        assert not (tmp_path / "keys").exists()  # the file is the key set, nothing generated


async def test_hs256_with_the_shared_secret_stays_supported(tmp_path: Path) -> None:
    async with running_agora(tmp_path) as agora:  # HS256 is the default
        session = await new_session(agora.client)
        assert jwt.get_unverified_header(session.token)["alg"] == "HS256"
        assert (await agora.client.get("/auth/api/me", headers=session.bearer)).status_code == 200
        jwks = (await agora.client.get("/auth/.well-known/jwks.json")).json()
        assert jwks == {"keys": []}  # an HMAC secret is never published


@pytest.mark.parametrize("with_kid", [True, False], ids=["kid", "no-kid"])
async def test_an_hs256_peer_with_the_shared_secret_is_accepted_beside_a_key_pair(
    tmp_path: Path, with_kid: bool
) -> None:
    async with running_agora(tmp_path, jwt_algorithm="ES256") as agora:
        session = await new_session(agora.client)
        hmac_key = agora.tokens.keys.hmac()
        assert hmac_key is not None
        header = {"alg": "HS256", "typ": "JWT"} | ({"kid": hmac_key.kid} if with_kid else {})
        token = hs256_by_hand(header, claims_for(session, agora.settings), TEST_SECRET.encode())
        me = await agora.client.get("/auth/api/me", headers={"Authorization": f"Bearer {token}"})
        assert me.status_code == 200, me.text
