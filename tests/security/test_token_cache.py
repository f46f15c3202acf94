"""The verified-token cache: a second check of a token costs a lookup instead of a full
verification, yet a revoked or expired token never passes through it, and it is
bounded in size."""

from __future__ import annotations

import time
import timeit
from pathlib import Path
from typing import Any

import jwt
import pytest

from agora.security.keys import KeyDirectory
from agora.security.tokens import TokenError, TokenService
from tests.security.support import new_session, running_agora, wait_active


def count_full_verifications(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every signature check goes through `jwt.decode`: count those calls."""
    calls: list[str] = []
    real = jwt.decode

    def counting(token: str, *args: Any, **kwargs: Any) -> Any:
        calls.append(token)
        return real(token, *args, **kwargs)

    monkeypatch.setattr(jwt, "decode", counting)
    return calls


def rs256_tokens(tmp_path: Path, **options: Any) -> TokenService:
    keys = KeyDirectory(tmp_path / "keys").load_or_create("RS256", keep_for=3600)
    return TokenService(keys, issuer="agora-auth", audience="agora", **options)


async def test_checking_a_token_again_skips_the_full_verification(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with running_agora(tmp_path, jwt_algorithm="RS256") as agora:
        session = await new_session(agora.client)
        calls = count_full_verifications(monkeypatch)
        await wait_active(agora.client, session)  # polls until the user is active
        for _ in range(5):
            for path in ("/auth/api/me", "/api/publications"):
                response = await agora.client.get(path, headers=session.bearer)
                assert response.status_code == 200
        # Each service has its own cache, so one full verification per service, then none.
        assert calls == [session.token, session.token]


def test_a_cached_check_costs_far_less_than_a_full_one(tmp_path: Path) -> None:
    cached = rs256_tokens(tmp_path)
    uncached = rs256_tokens(tmp_path, cache_size=0)
    token = cached.issue_access("42", "alice").token
    cached.verify(token)
    full = min(timeit.repeat(lambda: uncached.verify(token), number=50, repeat=5)) / 50
    hit = min(timeit.repeat(lambda: cached.verify(token), number=50, repeat=5)) / 50
    assert hit * 20 < full, f"cached {hit * 1e6:.1f} us vs full {full * 1e6:.1f} us"


async def test_a_revoked_token_never_passes_through_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with running_agora(tmp_path, jwt_algorithm="EdDSA") as agora:
        session = await new_session(agora.client)
        await wait_active(agora.client, session)
        for path in ("/auth/api/me", "/api/publications"):  # now cached by both services
            assert (await agora.client.get(path, headers=session.bearer)).status_code == 200
        calls = count_full_verifications(monkeypatch)

        out = await agora.client.post("/auth/api/logout", headers=session.bearer)
        assert out.status_code == 200
        for path in ("/auth/api/me", "/api/publications"):
            response = await agora.client.get(path, headers=session.bearer)
            assert (response.status_code, response.json()) == (401, {"error": "Token revoked"})
        assert calls == []  # the cache answered "valid"; revocation still refused it


def test_an_expired_token_never_passes_through_the_cache(tmp_path: Path) -> None:
    tokens = rs256_tokens(tmp_path, leeway=0)
    issued = tokens.issue("42", "access", ttl=2, login="alice")
    assert tokens.verify(issued.token).user_id == "42"  # cached until its exp
    time.sleep(max(0.0, issued.expires_at - time.time()) + 0.05)
    with pytest.raises(TokenError) as refused:
        tokens.verify(issued.token)
    assert refused.value.reason == "expired"


def test_the_cache_is_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tokens = TokenService("s" * 40, issuer="agora-auth", audience="agora", cache_size=16)
    issued = [tokens.issue_access(str(n), f"user{n}").token for n in range(100)]
    for token in issued:
        tokens.verify(token)
    assert tokens._verified is not None
    assert len(tokens._verified) == 16
    calls = count_full_verifications(monkeypatch)
    tokens.verify(issued[0])  # pushed out long ago: verified in full again
    tokens.verify(issued[-1])  # among the most recent: still cached
    assert calls == [issued[0]]
