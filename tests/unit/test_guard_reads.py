"""`TokenGuard.verify_reading`: the token check and a caller's cache keys in one round trip."""

from __future__ import annotations

import asyncio

import pytest

from agora.adapters.cache_memory import MemoryCache
from agora.core.audit import Audit
from agora.db.engine import Database
from agora.db.migrate import upgrade
from agora.security.guard import Reads, TokenGuard
from agora.security.revocation import RevocationStore
from agora.security.tokens import Identity, TokenError, TokenService
from tests.support.settings import TEST_SECRET


class CountingCache(MemoryCache):
    """The embedded cache, counting round trips."""

    calls = 0

    async def get_many(self, *keys: str) -> list[bytes | None]:
        self.calls += 1
        return await super().get_many(*keys)

    async def get_many_and_touch(self, keys: object, ttls: object) -> list[bytes | None]:
        self.calls += 1
        return await super().get_many_and_touch(keys, ttls)  # type: ignore[arg-type]


class PlainCheck:
    """A revocation check that cannot read along (only `is_revoked`)."""

    def __init__(self, revoked: bool) -> None:
        self.revoked = revoked

    async def is_revoked(self, identity: Identity) -> bool:
        return self.revoked


def reads(identity: Identity) -> Reads:
    return (f"status:{identity.user_id}", "other"), {f"status:{identity.user_id}": 60}


@pytest.fixture
async def store(tmp_path: object) -> RevocationStore:
    url = f"sqlite+aiosqlite:///{tmp_path}/r.db"
    await asyncio.to_thread(upgrade, url)  # blocking, runs its own loop
    cache = CountingCache()
    revocations = RevocationStore(cache, Database(url), "", max_token_age=3600)
    await revocations.rehydrate()
    return revocations


def tokens() -> TokenService:
    return TokenService(TEST_SECRET, issuer="agora-auth", audience="agora")


async def test_the_callers_keys_come_back_from_the_same_round_trip(
    store: RevocationStore,
) -> None:
    service = tokens()
    guard = TokenGuard(service, Audit("test"), store)
    token = service.issue_access("u1", "login").token
    await store.cache.set("status:u1", b"connected", ttl=1)
    cache = store.cache
    assert isinstance(cache, CountingCache)
    cache.calls = 0
    identity, values = await guard.verify_reading(token, reads)
    assert identity.user_id == "u1"
    assert values == [b"connected", None]
    assert cache.calls == 1
    left = await cache.ttl("status:u1")
    assert left is not None and left > 50  # touched

    await store.revoke(identity)
    with pytest.raises(TokenError) as refused:
        await guard.verify_reading(token, reads)
    assert refused.value.reason == "revoked"


async def test_a_check_that_cannot_read_along_still_decides() -> None:
    service = tokens()
    token = service.issue_access("u1", "login").token
    _, values = await TokenGuard(service, Audit("test"), PlainCheck(False)).verify_reading(
        token, reads
    )
    assert values is None  # the caller reads its keys itself
    with pytest.raises(TokenError):
        await TokenGuard(service, Audit("test"), PlainCheck(True)).verify_reading(token, reads)
    with pytest.raises(TokenError):
        await TokenGuard(service, Audit("test"), None).verify_reading(None, reads)
