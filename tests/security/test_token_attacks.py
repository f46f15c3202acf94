"""RFC 8725 attacks on the token's header and signature, sent over HTTP to both services:
each is refused with 401 and `{"error": "Invalid token"}`, never a 500, and the audit
event names the rule that refused it.

One running Agora per algorithm (module-scoped: the attacks only read), with one real
user whose correctly signed token is the control: every forged token differs from an
accepted one only by the attack.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import jwt
import pytest
import pytest_asyncio
from cryptography.hazmat.primitives import serialization

from agora.security.keys import ASYMMETRIC, generate_private_key, key_from_private
from agora.security.tokens import MAX_TOKEN_BYTES
from tests.security.support import (
    Target,
    audit_reasons,
    b64,
    capture_audit,
    hs256_by_hand,
    new_session,
    running_agora,
    sign,
    unsigned,
    wait_active,
)

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module", params=["HS256", *ASYMMETRIC])
async def target(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Target]:
    data_dir: Path = tmp_path_factory.mktemp(f"attacks-{request.param}")
    async with running_agora(data_dir, jwt_algorithm=request.param) as agora:
        session = await new_session(agora.client)
        await wait_active(agora.client, session)
        yield Target(agora, session)


@pytest.fixture
def asymmetric(target: Target) -> Target:
    if target.alg == "HS256":
        pytest.skip("a public-key attack: the HS256 deployment has no public key")
    return target


def reasons(caplog: pytest.LogCaptureFixture) -> set[str]:
    return set(audit_reasons(caplog))


@pytest.fixture(autouse=True)
def _audit(caplog: pytest.LogCaptureFixture) -> None:
    capture_audit(caplog)


async def test_control_our_own_token_is_accepted(target: Target) -> None:
    await target.accepted(target.signed())
    await target.accepted(target.session.token)


@pytest.mark.parametrize("spelling", ["none", "None", "NONE", "nOnE"])
@pytest.mark.parametrize("with_kid", [True, False], ids=["kid", "no-kid"])
@pytest.mark.parametrize("signature", ["", "AAAA"], ids=["empty-sig", "junk-sig"])
async def test_alg_none_in_any_spelling(
    target: Target, caplog: pytest.LogCaptureFixture, spelling: str, with_kid: bool,
    signature: str,
) -> None:  # fmt: skip
    header = {"alg": spelling, "typ": "JWT"}
    if with_kid:
        header["kid"] = target.agora.signing_key.kid
    await target.refused(unsigned(header, target.claims(), signature))
    assert reasons(caplog) == {"algorithm_not_allowed"}


@pytest.mark.parametrize("alg", ["HS384", "HS512", "RS512", "PS256", "ES384", "ES256K", "Ed25519"])
async def test_an_algorithm_off_the_allow_list(
    target: Target, caplog: pytest.LogCaptureFixture, alg: str
) -> None:
    header = {"alg": alg, "typ": "JWT", "kid": target.agora.signing_key.kid}
    await target.refused(unsigned(header, target.claims(), b64(b"x" * 64)))
    assert reasons(caplog) == {"algorithm_not_allowed"}


async def test_empty_signature(target: Target, caplog: pytest.LogCaptureFixture) -> None:
    head, body, _signature = target.signed().split(".")
    await target.refused(f"{head}.{body}.")
    await target.refused(f"{head}.{body}")
    assert reasons(caplog) <= {"InvalidSignatureError", "malformed"}


@pytest.mark.parametrize("cut", [1, 4, 10, "half"])
async def test_truncated_signature(
    target: Target, caplog: pytest.LogCaptureFixture, cut: int | str
) -> None:
    head, body, signature = target.signed().split(".")
    keep = len(signature) // 2 if cut == "half" else len(signature) - int(cut)
    await target.refused(f"{head}.{body}.{signature[:keep]}")
    assert reasons(caplog) <= {"InvalidSignatureError", "malformed"}


async def test_a_signature_moved_from_another_token(
    target: Target, caplog: pytest.LogCaptureFixture
) -> None:
    head, body, _ = target.signed().split(".")
    other_signature = target.signed().split(".")[2]  # our key, other claims (jti)
    await target.refused(f"{head}.{body}.{other_signature}")
    assert reasons(caplog) == {"InvalidSignatureError"}


def public_key_forms(target: Target) -> dict[str, bytes]:
    """The public key as an attacker finds it, in each form they might HMAC with."""
    public = target.agora.signing_key.verifying
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    forms = {
        "pem": public.public_bytes(serialization.Encoding.PEM, spki),
        "der": public.public_bytes(serialization.Encoding.DER, spki),
        "jwk-json": json.dumps(target.jwk()).encode(),
        "jwk-json-compact": json.dumps(target.jwk(), separators=(",", ":")).encode(),
        "openssh": public.public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
        ),
    }
    if target.alg == "RS256":
        forms["pem-pkcs1"] = public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.PKCS1
        )
    return forms


@pytest.mark.parametrize(
    "form", ["pem", "der", "jwk-json", "jwk-json-compact", "openssh", "pem-pkcs1"]
)
@pytest.mark.parametrize("kid", ["ours", "none", "hmac"])
async def test_hs256_signed_with_the_public_key_as_the_secret(
    asymmetric: Target, caplog: pytest.LogCaptureFixture, form: str, kid: str
) -> None:
    forms = public_key_forms(asymmetric)
    if form not in forms:
        pytest.skip(f"{form} exists for RSA keys only")
    keys = asymmetric.agora.tokens.keys
    header: dict[str, Any] = {"alg": "HS256", "typ": "JWT"}
    hmac_key = keys.hmac()
    assert hmac_key is not None  # the deployment also accepts HS256 peers: the hard case
    if kid == "ours":
        header["kid"] = keys.signing_kid
    elif kid == "hmac":
        header["kid"] = hmac_key.kid
    await asymmetric.refused(hs256_by_hand(header, asymmetric.claims(), forms[form]))
    # Named by its kid, the key refuses HS256; without one, the shared secret is tried
    # (and does not match): the public key is never used as an HMAC secret.
    expected = "algorithm_mismatch" if kid == "ours" else "InvalidSignatureError"
    assert reasons(caplog) == {expected}


async def test_unknown_kid(target: Target, caplog: pytest.LogCaptureFixture) -> None:
    await target.refused(target.signed(kid="no-such-key"))
    if target.alg != "HS256":
        # A key of the right algorithm, but not one of ours, naming itself.
        stranger = key_from_private(generate_private_key(target.alg))
        await target.refused(sign(stranger, target.claims()))
    assert reasons(caplog) == {"unknown_kid"}
    caplog.clear()
    await target.refused(target.signed(kid=12345))  # PyJWT itself refuses a non-string kid
    await target.refused(target.signed(kid=["a"]))
    assert reasons(caplog) == {"malformed"}


async def test_our_key_under_another_algorithm_is_refused(
    asymmetric: Target, caplog: pytest.LogCaptureFixture
) -> None:
    # One algorithm per key: RS256's key in a PS256-style header is not "close enough".
    other = {"RS256": "ES256", "ES256": "EdDSA", "EdDSA": "RS256"}[asymmetric.alg]
    header = {"alg": other, "typ": "JWT", "kid": asymmetric.agora.signing_key.kid}
    _head, body, signature = asymmetric.signed().split(".")
    forged_head = b64(json.dumps(header).encode())
    await asymmetric.refused(f"{forged_head}.{body}.{signature}")
    assert reasons(caplog) == {"algorithm_mismatch"}


def attacker_header(name: str) -> Any:
    attacker = key_from_private(generate_private_key("ES256"))
    return {
        "jku": "https://attacker.example/jwks.json",
        "x5u": "https://attacker.example/cert.pem",
        "jwk": attacker.public_jwk(),
        "x5c": [b64(b"not really a certificate")],
    }[name]


@pytest.mark.parametrize("name", ["jku", "x5u", "jwk", "x5c"])
async def test_headers_that_carry_or_point_at_a_key(
    target: Target, caplog: pytest.LogCaptureFixture, name: str
) -> None:
    # Signed by our own key: only the header is wrong, and that alone refuses it.
    await target.refused(target.signed(**{name: attacker_header(name)}))
    assert reasons(caplog) == {"forbidden_header"}


async def test_the_embedded_jwk_attack(target: Target, caplog: pytest.LogCaptureFixture) -> None:
    """The attacker signs with their own key and ships its public half in `jwk`."""
    private = generate_private_key("ES256")
    attacker = key_from_private(private)
    token = jwt.encode(
        target.claims(), private, algorithm="ES256",
        headers={"jwk": attacker.public_jwk()},
    )  # fmt: skip
    await target.refused(token)
    assert reasons(caplog) == {"forbidden_header"}


@pytest.mark.parametrize("crit", [["urn:agora:unknown"], ["exp"]], ids=["urn", "exp"])
async def test_unknown_crit_entries(
    target: Target, caplog: pytest.LogCaptureFixture, crit: list[str]
) -> None:
    await target.refused(target.signed(crit=crit, **{"urn:agora:unknown": True}))
    # PyJWT refuses extensions it does not know before our rule sees them.
    assert reasons(caplog) <= {"forbidden_header", "malformed"}


async def test_crit_is_refused_even_for_an_extension_pyjwt_knows(
    target: Target, caplog: pytest.LogCaptureFixture
) -> None:
    # RFC 7797 "b64" is understood by PyJWT; we never issue it, so our rule refuses it.
    await target.refused(target.signed(crit=["b64"], b64=True))
    assert reasons(caplog) == {"forbidden_header"}


def padded_token(target: Target, length: int) -> str:
    """A correctly signed token of `length` or `length + 1` characters."""
    pad = ""
    token = sign(target.agora.signing_key, target.claims(pad=pad))
    while len(token) < length:
        pad += "x" * max(1, (length - len(token)) * 3 // 4)
        token = sign(target.agora.signing_key, target.claims(pad=pad))
    assert length <= len(token) <= length + 1
    return token


async def test_tokens_over_8_kb(target: Target, caplog: pytest.LogCaptureFixture) -> None:
    assert MAX_TOKEN_BYTES == 8192
    at_limit = padded_token(target, MAX_TOKEN_BYTES - 1)
    assert len(at_limit) <= MAX_TOKEN_BYTES
    await target.accepted(at_limit)
    over = padded_token(target, MAX_TOKEN_BYTES + 1)
    await target.refused(over)
    await target.refused(padded_token(target, 64 * 1024))
    assert reasons(caplog) == {"too_large"}


@pytest.mark.parametrize(
    "token",
    ["x", "a.b.c", "..", "a.b", "a.b.c.d", "eyJhbGciOiJIUzI1NiJ9", "eyJ.eyJ.eyJ", "é.é.é"],
)
async def test_malformed_tokens(target: Target, token: str) -> None:
    await target.refused(token)


@pytest.mark.parametrize("alg", [None, 1, ["HS256"], {"alg": "HS256"}, True, ""], ids=repr)
async def test_alg_of_the_wrong_type(target: Target, alg: Any) -> None:
    header = {"alg": alg, "typ": "JWT", "kid": target.agora.signing_key.kid}
    await target.refused(unsigned(header, target.claims(), b64(b"x" * 32)))
