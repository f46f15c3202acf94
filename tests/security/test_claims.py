"""The claims of a correctly signed token: every time claim required and checked, issuer
and audience exact, leeway at most 60 s. Sent over HTTP to both services.

The deployment under test runs with the largest leeway allowed (60 s), so the bounds
below are the widest Agora can ever accept.
"""

from __future__ import annotations

import math
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from pydantic import ValidationError

from agora.security.tokens import MAX_LIFETIME, REQUIRED_CLAIMS, TokenService
from tests.security.support import (
    DROP,
    Target,
    audit_reasons,
    capture_audit,
    new_session,
    running_agora,
    sign,
    wait_active,
)
from tests.support.settings import make_settings

pytestmark = pytest.mark.asyncio(loop_scope="module")

LEEWAY = 60


@pytest_asyncio.fixture(scope="module", loop_scope="module", params=["HS256", "EdDSA"])
async def target(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Target]:
    data_dir: Path = tmp_path_factory.mktemp(f"claims-{request.param}")
    async with running_agora(data_dir, jwt_algorithm=request.param, token_leeway=LEEWAY) as agora:
        session = await new_session(agora.client)
        await wait_active(agora.client, session)
        yield Target(agora, session)


@pytest.fixture(autouse=True)
def _audit(caplog: pytest.LogCaptureFixture) -> None:
    capture_audit(caplog)


def with_claims(target: Target, **overrides: Any) -> str:
    return sign(target.agora.signing_key, target.claims(**overrides))


async def refused_as(target: Target, token: str, error: str = "Invalid token") -> None:
    for status, body in await target.statuses(token):
        assert (status, body) == (401, {"error": error})


@pytest.mark.parametrize("claim", REQUIRED_CLAIMS)
async def test_each_required_claim_missing(
    target: Target, caplog: pytest.LogCaptureFixture, claim: str
) -> None:
    await refused_as(target, with_claims(target, **{claim: DROP}))
    assert audit_reasons(caplog) == ["MissingRequiredClaimError"] * 2


async def test_missing_exp_is_refused_even_with_everything_else_right(target: Target) -> None:
    # The one an attacker most wants: a token that never expires.
    assert "exp" in REQUIRED_CLAIMS
    await refused_as(target, with_claims(target, exp=DROP))
    await target.accepted(with_claims(target))


async def test_nbf_in_the_future_beyond_the_leeway(
    target: Target, caplog: pytest.LogCaptureFixture
) -> None:
    now = int(time.time())
    await refused_as(target, with_claims(target, nbf=now + LEEWAY + 5))
    assert audit_reasons(caplog) == ["not_yet_valid"] * 2
    await target.accepted(with_claims(target, nbf=now + LEEWAY - 5))  # clock skew tolerated


async def test_iat_in_the_future_beyond_the_leeway(target: Target) -> None:
    await refused_as(target, with_claims(target, iat=int(time.time()) + LEEWAY + 5))


@pytest.mark.parametrize(
    "issuer", ["someone-else", "agora-auth ", "AGORA-AUTH", "", 7, ["agora-auth"]], ids=repr
)
async def test_wrong_issuer(target: Target, caplog: pytest.LogCaptureFixture, issuer: Any) -> None:
    await refused_as(target, with_claims(target, iss=issuer))
    assert set(audit_reasons(caplog)) == {"InvalidIssuerError"}


@pytest.mark.parametrize("audience", ["other", "agora2", "", ["other", "billing"], 7], ids=repr)
async def test_wrong_audience(
    target: Target, caplog: pytest.LogCaptureFixture, audience: Any
) -> None:
    await refused_as(target, with_claims(target, aud=audience))
    # An empty audience counts as none at all.
    assert set(audit_reasons(caplog)) <= {"InvalidAudienceError", "MissingRequiredClaimError"}


async def test_our_audience_among_others_is_accepted(target: Target) -> None:
    await target.accepted(with_claims(target, aud=["billing", target.agora.settings.jwt_audience]))


async def test_expiry_with_the_largest_leeway(
    target: Target, caplog: pytest.LogCaptureFixture
) -> None:
    now = math.ceil(time.time())
    await target.accepted(with_claims(target, iat=now - 600, nbf=now - 600, exp=now - 59))
    await refused_as(
        target, with_claims(target, iat=now - 600, nbf=now - 600, exp=now - 61), "Token expired"
    )
    assert audit_reasons(caplog) == ["expired"] * 2


async def test_an_exp_beyond_the_longest_lifetime_is_refused(
    target: Target, caplog: pytest.LogCaptureFixture
) -> None:
    """Only a key holder can sign one (an HS256 peer's bug); it must not reach logout,
    which would have to keep its revocation until the year 33658."""
    now = int(time.time())
    await target.accepted(with_claims(target, exp=now + MAX_LIFETIME))
    for exp in (now + MAX_LIFETIME + LEEWAY + 5, 10**12, 10**30):
        token = with_claims(target, exp=exp)
        await refused_as(target, token)
        out = await target.agora.client.post(
            "/auth/api/logout", headers={"Authorization": f"Bearer {token}"}
        )
        assert out.status_code == 401
    assert set(audit_reasons(caplog)) == {"lifetime_too_long"}


async def test_leeway_over_60_seconds_is_refused(tmp_path: Path) -> None:
    assert make_settings(tmp_path, token_leeway=60).token_leeway == 60
    with pytest.raises(ValidationError, match="token_leeway"):
        make_settings(tmp_path, token_leeway=61)
    with pytest.raises(ValueError, match="leeway"):
        TokenService("s" * 40, issuer="i", audience="a", leeway=61)
