"""TokenService: the claims it issues and every way verification refuses a token."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
import time
from typing import Any

import jwt
import pytest

from agora.security import tokens as tokens_module
from agora.security.keys import KeySet
from agora.security.tokens import ACCESS, MAX_TOKEN_BYTES, REQUIRED_CLAIMS, TokenError, TokenService

SECRET = "unit-test-secret-unit-test-secret-0123456789"
ISSUER, AUDIENCE = "agora-auth", "agora"


def service(**overrides: Any) -> TokenService:
    options: dict[str, Any] = {"issuer": ISSUER, "audience": AUDIENCE}
    options.update(overrides)
    return TokenService(SECRET, **options)


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    values: dict[str, Any] = {
        "sub": "42", "user_id": "42", "login": "alice", "iss": ISSUER, "aud": AUDIENCE,
        "iat": now, "nbf": now, "exp": now + 600, "jti": "jti-1", "typ": ACCESS,
    }  # fmt: skip
    values.update(overrides)
    return values


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def hand_made(header: dict[str, Any], payload: dict[str, Any], key: str = SECRET) -> str:
    """A token signed with HMAC-SHA256 whatever its header says, as an attacker would."""
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload).encode())}"
    signature = hmac.new(key.encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"


def refusal(tokens: TokenService, token: str, typ: str = ACCESS) -> TokenError:
    with pytest.raises(TokenError) as caught:
        tokens.verify(token, typ)
    return caught.value


# --- issuing ----------------------------------------------------------------------------


def test_access_token_carries_the_design_claims(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(time, "time", lambda: 1_700_000_000.75)
    issued = service(ttl=900).issue_access("42", "alice")
    header = jwt.get_unverified_header(issued.token)
    assert header == {"alg": "HS256", "typ": "JWT", "kid": KeySet.from_secret(SECRET).signing_kid}
    body = jwt.decode(
        issued.token,
        SECRET,
        algorithms=["HS256"],
        audience=AUDIENCE,
        options={"verify_exp": False, "verify_iat": False, "verify_nbf": False},
    )
    assert body == {
        "sub": "42", "user_id": "42", "login": "alice", "iss": ISSUER, "aud": AUDIENCE,
        "iat": 1_700_000_000, "nbf": 1_700_000_000, "exp": 1_700_000_900,
        "jti": issued.jti, "typ": "access",
    }  # fmt: skip
    assert issued.expires_in == 900 and issued.expires_at == 1_700_000_900
    assert len(issued.jti) == 32 and int(issued.jti, 16) >= 0


def test_every_token_has_its_own_jti() -> None:
    tokens = service()
    jtis = {tokens.issue_access("42", "alice").jti for _ in range(50)}
    assert len(jtis) == 50


def test_issued_token_verifies_to_its_identity() -> None:
    tokens = service()
    identity = tokens.verify(tokens.issue_access("42", "alice").token)
    assert (identity.user_id, identity.login) == ("42", "alice")
    assert identity.claims["typ"] == ACCESS and identity.exp > time.time()


def test_token_of_another_type_is_refused_as_access_and_accepted_as_its_own() -> None:
    tokens = service()
    ticket = tokens.issue("42", "ws-connect", 10).token
    assert refusal(tokens, ticket).reason == "wrong_type"
    assert tokens.verify(ticket, "ws-connect").user_id == "42"
    assert refusal(tokens, tokens.issue_access("42", "a").token, "ws-connect").reason == (
        "wrong_type"
    )


# --- the verified-token cache ---------------------------------------------------------


def counting_full_checks(tokens: TokenService, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []
    real = tokens._verify_fully

    def spy(token: str, typ: str) -> Any:
        calls.append(token)
        return real(token, typ)

    monkeypatch.setattr(tokens, "_verify_fully", spy)
    return calls


def test_second_check_of_a_token_comes_from_the_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    tokens = service()
    calls = counting_full_checks(tokens, monkeypatch)
    token = tokens.issue_access("42", "alice").token
    first = tokens.verify(token)
    assert tokens.verify(token) is first
    assert calls == [token]


def test_cache_can_be_switched_off(monkeypatch: pytest.MonkeyPatch) -> None:
    tokens = service(cache_size=0)
    calls = counting_full_checks(tokens, monkeypatch)
    token = tokens.issue_access("42", "alice").token
    assert tokens.verify(token) == tokens.verify(token)
    assert len(calls) == 2


def test_cache_forgets_a_token_at_its_exp(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = {"now": time.time()}
    # Patched before the service exists: its cache reads the clock it was given.
    monkeypatch.setattr(time, "time", lambda: clock["now"])
    tokens = service(ttl=120)
    calls = counting_full_checks(tokens, monkeypatch)
    token = tokens.issue_access("42", "alice").token
    first = tokens.verify(token)
    clock["now"] = first.exp - 0.5
    assert tokens.verify(token) is first and len(calls) == 1
    clock["now"] = first.exp
    tokens.verify(token)  # PyJWT reads the real clock, so only the cache moved on
    assert len(calls) == 2


def test_expired_token_is_refused_even_after_it_was_cached() -> None:
    tokens = service(leeway=0)
    now = time.time()
    exp = math.ceil(now + 0.3)  # a little time to verify it while still valid
    token = jwt.encode(claims(iat=int(now), nbf=int(now), exp=exp), SECRET)
    assert tokens.verify(token).exp == exp
    while time.time() < exp:
        time.sleep(0.05)
    error = refusal(tokens, token)
    assert (error.message, error.reason) == ("Token expired", "expired")


def test_refusals_are_not_cached(monkeypatch: pytest.MonkeyPatch) -> None:
    tokens = service()
    calls = counting_full_checks(tokens, monkeypatch)
    forged = jwt.encode(claims(), "another-secret-another-secret-another-secret")
    for _ in range(2):
        refusal(tokens, forged)
    assert len(calls) == 2


# --- time claims and leeway -------------------------------------------------------------


def test_leeway_is_bounded() -> None:
    for leeway in (-1, 61):
        with pytest.raises(ValueError, match="leeway must be between 0 and 60 seconds"):
            service(leeway=leeway)
    service(leeway=0)
    service(leeway=60)


@pytest.mark.parametrize(
    ("overrides", "leeway", "reason"),
    [
        ({"exp": -10}, 30, None),
        ({"exp": -10}, 0, "expired"),
        ({"exp": -40}, 30, "expired"),
        ({"nbf": 20}, 30, None),
        ({"nbf": 20}, 0, "not_yet_valid"),
        ({"nbf": 45}, 30, "not_yet_valid"),
        ({"iat": 45}, 30, "not_yet_valid"),
    ],
)
def test_time_claims_honour_the_leeway(
    overrides: dict[str, int], leeway: int, reason: str | None
) -> None:
    now = int(time.time())
    token = jwt.encode(claims(**{k: now + v for k, v in overrides.items()}), SECRET)
    tokens = service(leeway=leeway)
    if reason is None:
        assert tokens.verify(token).user_id == "42"
    else:
        assert refusal(tokens, token).reason == reason


# --- header checks (RFC 8725) -----------------------------------------------------------


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE"])
@pytest.mark.parametrize("signature", ["", "c2ln"])
def test_alg_none_is_refused_in_every_spelling(alg: str, signature: str) -> None:
    header, payload = b64(json.dumps({"alg": alg}).encode()), b64(json.dumps(claims()).encode())
    error = refusal(service(), f"{header}.{payload}.{signature}")
    assert (error.message, error.reason) == ("Invalid token", "algorithm_not_allowed")


@pytest.mark.parametrize("alg", ["HS512", "HS384", "hs256", "", None])
def test_other_algorithms_are_refused(alg: str | None) -> None:
    token = hand_made({"alg": alg, "typ": "JWT"}, claims())
    assert refusal(service(), token).reason == "algorithm_not_allowed"


@pytest.mark.parametrize("alg", ["RS256", "ES256", "EdDSA"])
def test_an_allowed_algorithm_other_than_the_keys_own_is_refused(alg: str) -> None:
    token = hand_made({"alg": alg, "typ": "JWT"}, claims())
    assert refusal(service(), token).reason == "algorithm_mismatch"


@pytest.mark.parametrize("alg", [["HS256"], {"HS256": 1}, 256])
def test_alg_of_the_wrong_json_type_is_refused_not_crashed(alg: object) -> None:
    token = hand_made({"alg": alg}, claims())
    assert refusal(service(), token).reason == "algorithm_not_allowed"


@pytest.mark.parametrize(
    "extra",
    [
        {"jku": "https://attacker.example/jwks.json"},
        {"x5u": "https://attacker.example/cert.pem"},
        {"jwk": {"kty": "oct", "k": b64(SECRET.encode())}},
        {"x5c": ["MIIB"]},
        {"crit": ["exp"]},
    ],
    ids=lambda extra: next(iter(extra)),
)
def test_headers_that_choose_a_key_or_demand_extensions_are_refused(
    extra: dict[str, Any],
) -> None:
    token = hand_made({"alg": "HS256", "typ": "JWT", **extra}, claims())
    error = refusal(service(), token)
    assert error.message == "Invalid token"
    assert error.reason in ("forbidden_header", "malformed")


def test_oversized_token_is_refused_before_parsing() -> None:
    token = jwt.encode(claims(padding="x" * MAX_TOKEN_BYTES), SECRET)
    assert len(token) > MAX_TOKEN_BYTES
    assert refusal(service(), token).reason == "too_large"
    just_small_enough = jwt.encode(claims(padding="x" * 5000), SECRET)
    assert len(just_small_enough) <= MAX_TOKEN_BYTES
    assert service().verify(just_small_enough).user_id == "42"


@pytest.mark.parametrize(
    "token",
    ["", "abc", "a.b", "a.b.c", "....", "eyJhbGciOiJIUzI1NiJ9.e30", "ünïcode.x.y"],
)
def test_malformed_tokens_are_refused(token: str) -> None:
    error = refusal(service(), token)
    assert error.message in ("Token required", "Invalid token")


def test_empty_signature_is_refused() -> None:
    signed = jwt.encode(claims(), SECRET)
    unsigned = signed.rsplit(".", 1)[0] + "."
    assert refusal(service(), unsigned).message == "Invalid token"


def test_signature_from_another_key_is_refused() -> None:
    forged = jwt.encode(claims(), "another-secret-another-secret-another-secret")
    assert refusal(service(), forged).reason == "InvalidSignatureError"


def test_tampered_payload_is_refused() -> None:
    header, _, signature = jwt.encode(claims(), SECRET).split(".")
    payload = b64(json.dumps(claims(sub="1", user_id="1")).encode())
    assert refusal(service(), f"{header}.{payload}.{signature}").message == "Invalid token"


# --- claims ---------------------------------------------------------------------------


@pytest.mark.parametrize("missing", [*REQUIRED_CLAIMS, "typ"])
def test_each_required_claim_is_required(missing: str) -> None:
    body = {k: v for k, v in claims().items() if k != missing}
    error = refusal(service(), jwt.encode(body, SECRET))
    assert error.message in ("Invalid token", "Invalid token type"), missing


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"iss": "elsewhere"}, "InvalidIssuerError"),
        ({"aud": "elsewhere"}, "InvalidAudienceError"),
        ({"sub": 42, "user_id": 42}, "InvalidSubjectError"),
        ({"jti": 7}, "InvalidJTIError"),
        ({"exp": "tomorrow"}, "DecodeError"),
    ],
)
def test_claims_of_the_wrong_value_or_type_are_refused(
    overrides: dict[str, Any], reason: str
) -> None:
    assert refusal(service(), jwt.encode(claims(**overrides), SECRET)).reason == reason


@pytest.mark.parametrize("user_id", ["43", 42, None, ""])
def test_user_id_must_match_sub(user_id: object) -> None:
    token = jwt.encode(claims(user_id=user_id), SECRET)
    error = refusal(service(), token)
    assert (error.message, error.reason) == ("Invalid token", "bad_subject")


def test_user_id_may_be_absent_and_then_sub_names_the_user() -> None:
    body = {k: v for k, v in claims().items() if k != "user_id"}
    assert service().verify(jwt.encode(body, SECRET)).user_id == "42"


def test_refusal_messages_are_safe_to_show() -> None:
    """Reasons are for the audit log; clients only ever see these messages."""
    assert tokens_module.MISSING.message == "Token required"
    forged = jwt.encode(claims(), "another-secret-another-secret-another-secret")
    assert SECRET not in refusal(service(), forged).message
