"""Property-based fuzz of token parsing (hypothesis): whatever arrives, `TokenService.verify`
only ever raises `TokenError`, and never accepts a token that we did not issue.

The verifier holds what a deployment holds: an EdDSA signing key and the HMAC secret
of HS256 peers. "Issued by us" means: the bytes that PyJWT decodes from the token are
those of a token we signed (base64url is decoded leniently, so several spellings of
one token exist), or the token was signed here, with our key, over a header our policy
allows.
"""

from __future__ import annotations

import string
import time
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from jwt.utils import base64url_decode

from agora.security.keys import KeySet, generate_private_key, key_from_private
from agora.security.tokens import (
    FORBIDDEN_HEADERS,
    MAX_LIFETIME,
    REQUIRED_CLAIMS,
    TokenError,
    TokenService,
)
from tests.security.support import b64, hs256_by_hand, segment

SECRET = "fuzz-secret-fuzz-secret-fuzz-secret-0123456789"
ISSUER, AUDIENCE = "agora-auth", "agora"

EDDSA_PRIVATE = generate_private_key("EdDSA")
EDDSA = key_from_private(EDDSA_PRIVATE)
HMAC = KeySet.from_secret(SECRET).signing_key
KEYS = KeySet([EDDSA, HMAC], EDDSA.kid)
TOKENS = TokenService(KEYS, issuer=ISSUER, audience=AUDIENCE, leeway=30)
ISSUED = [TOKENS.issue_access(str(n), f"user{n}").token for n in range(4)]
ISSUED += [TOKENS.issue(str(n), "ws-connect", 60).token for n in range(2)]

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def decoded(token: str) -> tuple[bytes, ...] | None:
    try:
        return tuple(base64url_decode(part) for part in token.split("."))
    except Exception:
        return None


ISSUED_BYTES = {decoded(token) for token in ISSUED}


def verify_or_refuse(token: str) -> Any:
    """None when refused with TokenError; any other exception fails the test."""
    try:
        return TOKENS.verify(token)
    except TokenError as error:
        refusal = error.message
    assert refusal in {"Invalid token", "Token expired", "Invalid token type", "Token required"}
    return None


# --- arbitrary input ------------------------------------------------------------------


@FUZZ
@given(st.text())
@example("")
@example("..")
@example("." * 10_000)
def test_any_string(token: str) -> None:
    assert verify_or_refuse(token) is None


@FUZZ
@given(st.binary(max_size=2048))
def test_any_bytes(raw: bytes) -> None:
    # What a client can put in a header: octets, read by the server as latin-1.
    assert verify_or_refuse(raw.decode("latin-1")) is None


B64_CHARS = string.ascii_letters + string.digits + "-_"
segments = st.one_of(
    st.text(alphabet=B64_CHARS, max_size=200),
    st.binary(max_size=150).map(b64),
    st.dictionaries(st.text(max_size=8), st.integers() | st.text(max_size=8), max_size=6).map(
        segment
    ),
    st.sampled_from(["", "e30", "bnVsbA", "W10", "MQ", "InN0ciI"]),  # {} null [] 1 "str"
)


@FUZZ
@given(st.lists(segments, min_size=1, max_size=5))
def test_dotted_segments(parts: list[str]) -> None:
    assert verify_or_refuse(".".join(parts)) is None


# --- mutations of real tokens -------------------------------------------------------

mutation = st.one_of(
    st.tuples(st.just("replace"), st.integers(0, 10_000), st.characters()),
    st.tuples(st.just("delete"), st.integers(0, 10_000), st.integers(1, 50)),
    st.tuples(st.just("insert"), st.integers(0, 10_000), st.text(min_size=1, max_size=20)),
    st.tuples(st.just("swap"), st.integers(0, 2), st.integers(0, 2)),
    st.tuples(st.just("splice"), st.integers(0, len(ISSUED) - 1), st.integers(0, 2)),
)


def mutate(token: str, change: tuple[str, Any, Any]) -> str:
    kind, a, b = change
    if kind == "replace":
        i = a % len(token)
        return token[:i] + b + token[i + 1 :]
    if kind == "delete":
        i = a % len(token)
        return token[:i] + token[i + b :]
    if kind == "insert":
        i = a % (len(token) + 1)
        return token[:i] + b + token[i:]
    parts = token.split(".")
    if kind == "swap" and len(parts) == 3:
        parts[a], parts[b] = parts[b], parts[a]
    elif kind == "splice" and len(parts) == 3:
        parts[b] = ISSUED[a].split(".")[b]  # a segment of another of our tokens
    return ".".join(parts)


@FUZZ
@given(st.sampled_from(ISSUED), st.lists(mutation, min_size=1, max_size=4))
def test_mutated_tokens_of_ours(token: str, changes: list[tuple[str, Any, Any]]) -> None:
    mutated = token
    for change in changes:
        mutated = mutate(mutated, change) or mutated
    identity = verify_or_refuse(mutated)
    if identity is not None:
        # Only another spelling of one of our own access tokens can pass.
        assert decoded(mutated) in ISSUED_BYTES, mutated


# --- forged headers and claims, signed with keys we hold -----------------------------

json_value = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                 max_size=3),
    max_leaves=6,
)  # fmt: skip
header_values = {
    "alg": st.sampled_from(["HS256", "EdDSA", "RS256", "ES256", "none", "None", "HS512", ""])
    | json_value,
    "kid": st.sampled_from([EDDSA.kid, HMAC.kid, "other"]) | json_value,
    "typ": st.sampled_from(["JWT", "at+jwt"]) | json_value,
    "crit": st.lists(st.sampled_from(["b64", "exp", "urn:x"]), max_size=2) | json_value,
    "b64": st.booleans(),
    "jku": st.just("https://attacker.example/jwks.json"),
    "x5u": st.just("https://attacker.example/cert.pem"),
    "jwk": st.just(EDDSA.public_jwk()),
    "x5c": st.lists(st.text(max_size=10), max_size=2),
    "cty": json_value,
    "zip": st.just("DEF"),
}
headers = st.fixed_dictionaries({}, optional=dict(header_values))


def valid_claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {
        "sub": "7", "user_id": "7", "login": "fuzz", "iss": ISSUER, "aud": AUDIENCE,
        "iat": now, "nbf": now, "exp": now + 300, "jti": "fuzz-jti", "typ": "access",
    }  # fmt: skip
    claims.update(overrides)
    return claims


def policy_allows(header: dict[str, Any], signer: str) -> bool:
    """Our rules, written independently of security/tokens.py: which key the header selects, its one
    algorithm, and nothing that brings its own key or critical extension."""
    if FORBIDDEN_HEADERS & header.keys() or header.get("crit"):
        return False
    kid = header.get("kid")  # absent or null: the HS256 peers' secret
    selected = (
        {EDDSA.kid: "eddsa", HMAC.kid: "hmac", None: "hmac"}.get(kid)
        if (kid is None or isinstance(kid, str))
        else None
    )
    expected_alg = {"eddsa": "EdDSA", "hmac": "HS256"}.get(selected or "")
    return selected == signer and header.get("alg") == expected_alg


def signed_by(signer: str, header: dict[str, Any], claims: dict[str, Any]) -> str:
    """Signed over exactly `header` (whatever it says) with the key we hold, or not at all."""
    signing_input = f"{segment(header)}.{segment(claims)}"
    if signer == "hmac":
        return hs256_by_hand(header, claims, SECRET.encode())
    if signer == "eddsa":
        return f"{signing_input}.{b64(EDDSA_PRIVATE.sign(signing_input.encode()))}"
    return f"{signing_input}.{b64(b'x' * 64)}"


@FUZZ
@given(headers, st.sampled_from(["hmac", "eddsa", "junk"]))
def test_forged_headers(header: dict[str, Any], signer: str) -> None:
    token = signed_by(signer, header, valid_claims())
    accepted = verify_or_refuse(token) is not None
    if accepted:
        assert policy_allows(header, signer), header
    if header.get("b64") is False:
        assert not accepted  # an RFC 7797 unencoded payload is never one of ours


claim_values = {
    name: json_value | st.integers(-(2**63), 2**63) for name in [*REQUIRED_CLAIMS, "typ", "user_id"]
}


@FUZZ
@given(
    st.fixed_dictionaries({}, optional=claim_values),
    st.sets(st.sampled_from([*REQUIRED_CLAIMS, "typ", "user_id"])),
)
def test_forged_claims_signed_with_our_key(overrides: dict[str, Any], dropped: set[str]) -> None:
    claims = {k: v for k, v in valid_claims(**overrides).items() if k not in dropped}
    identity = verify_or_refuse(signed_by("eddsa", {"alg": "EdDSA", "kid": EDDSA.kid}, claims))
    if identity is not None:
        assert claims["typ"] == "access" and claims["iss"] == ISSUER
        assert isinstance(claims["sub"], str) and identity.user_id == claims["sub"]
        assert all(name in claims for name in REQUIRED_CLAIMS)
        # storable: a revocation record lasts until exp
        assert identity.exp <= time.time() + MAX_LIFETIME + TOKENS.leeway


@pytest.mark.parametrize("token", ISSUED[:4])
def test_control_our_tokens_verify(token: str) -> None:
    assert verify_or_refuse(token) is not None
