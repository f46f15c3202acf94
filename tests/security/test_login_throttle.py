"""Login throttling (issues 4 and 11): per (login, source), per IP and per login, 429
with Retry-After, growing blocks.

Each test runs on the embedded cache (MemoryCache) and on the local Redis, through the
whole app over HTTP. The windows are short (a block of 1 s, then 3 s) so that waiting a
block out stays cheap; the defaults are 5 per (login, source), 50 per IP, 100 per login
an hour, 15 min, 60 s doubling.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import redis.asyncio as aioredis
from sqlalchemy import select

from agora.adapters.audit_database import AuditEvent
from agora.db.migrate import upgrade
from agora.runtime.embedded import create_embedded_app
from agora.runtime.process import ProcessApp
from tests.support.services import drop_namespace
from tests.support.settings import make_settings
from tests.support.users import PASSWORD, unique_login

WRONG = "not the password"
TOO_MANY = {"error": "Too many login attempts"}
# First block 1 s, then 3 s: a growth that shows in a whole-second Retry-After.
SHORT = {
    "login_failure_window": 2.0,
    "login_block_seconds": 1.0,
    "login_block_growth": 3.0,
    "login_block_max_seconds": 30.0,
    "login_block_memory": 60.0,
}
BLOCK_OVER = 1.1  # seconds: the first block (1 s) has run out


class Stack:
    """One embedded app, and clients that come from the IP of one's choice."""

    def __init__(self, app: ProcessApp, exits: AsyncExitStack) -> None:
        self.app = app
        self._exits = exits

    async def client(self, ip: str = "127.0.0.1") -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=self.app, client=(ip, 40000))
        client = httpx.AsyncClient(transport=transport, base_url="http://testserver")
        return await self._exits.enter_async_context(client)

    async def audits(self, event: str) -> list[dict[str, Any]]:
        async with self.app.backends.database.sessions() as session:
            rows = await session.execute(
                select(AuditEvent).where(AuditEvent.event == event).order_by(AuditEvent.id)
            )
            return [orjson.loads(row.data) for row in rows.scalars()]


Start = Callable[..., Awaitable[Stack]]


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
def cache_settings(request: pytest.FixtureRequest) -> dict[str, str]:
    """Empty for the embedded cache; sync so the Redis fixtures resolve only for Redis."""
    if request.param == "memory":
        return {}
    return {
        "redis_url": str(request.getfixturevalue("redis_url")),
        "redis_namespace": str(request.getfixturevalue("redis_namespace")),
    }


@pytest.fixture
async def start(cache_settings: dict[str, str], tmp_path: Path) -> AsyncIterator[Start]:
    """Builds a running app with SHORT throttling plus the given settings."""
    async with AsyncExitStack() as exits:
        if cache_settings:
            exits.push_async_callback(
                drop_namespace, cache_settings["redis_url"], cache_settings["redis_namespace"]
            )

        async def start_stack(**overrides: object) -> Stack:
            return await running_stack(exits, tmp_path, **{**SHORT, **cache_settings, **overrides})

        yield start_stack


async def running_stack(exits: AsyncExitStack, tmp_path: Path, **overrides: object) -> Stack:
    url = f"sqlite+aiosqlite:///{tmp_path / f'{uuid.uuid4().hex[:8]}.db'}"
    await asyncio.to_thread(upgrade, url)  # upgrade runs its own event loop
    app = create_embedded_app(make_settings(tmp_path, database_url=url, **overrides))
    await exits.enter_async_context(app.running())
    return Stack(app, exits)


async def register(client: httpx.AsyncClient, login: str | None = None) -> str:
    login = login or unique_login()
    body = {"login": login, "password": PASSWORD, "email": f"{login}@example.com", "name": "N"}
    response = await client.post("/auth/api/register", json=body)
    assert response.status_code == 201, response.text
    return login


async def attempt(client: httpx.AsyncClient, login: str, password: str = WRONG) -> httpx.Response:
    return await client.post("/auth/api/login", json={"login": login, "password": password})


async def fail(client: httpx.AsyncClient, login: str, times: int) -> None:
    for n in range(times):
        response = await attempt(client, login)
        assert response.status_code == 401, (n, response.text)
        assert "retry-after" not in response.headers


def assert_blocked(response: httpx.Response, retry_after: int) -> None:
    assert response.status_code == 429, response.text
    assert response.json() == TOO_MANY
    assert response.headers["retry-after"] == str(retry_after)


async def test_five_failures_then_429_and_the_password_is_not_checked(start: Start) -> None:
    stack = await start()
    client = await stack.client()
    login = await register(client)
    await fail(client, login, 5)
    assert_blocked(await attempt(client, login), 1)
    # The right password during the block: still 429, so a block is no oracle.
    assert_blocked(await attempt(client, login, PASSWORD), 1)
    # Another spelling of the same login is the same key.
    assert_blocked(await attempt(client, login.upper(), PASSWORD), 1)

    # The blocked attempts never reached the password check: 5 failures, not 8.
    assert len(await stack.audits("auth.login_failed")) == 5
    [blocked] = await stack.audits("auth.login_blocked")
    assert blocked["login"] == login and blocked["ip"] == "127.0.0.1"
    assert blocked["scope"] == "source" and blocked["level"] == 1 and blocked["seconds"] == 1.0
    throttled = await stack.audits("auth.login_throttled")
    assert [(e["scope"], e["retry_after"], e["ip"]) for e in throttled] == [
        ("source", 1, "127.0.0.1")
    ] * 3
    assert [e["login"] for e in throttled] == [login, login, login.upper()]
    assert PASSWORD not in str(throttled) and WRONG not in str(throttled)


async def test_an_unknown_login_is_throttled_exactly_like_a_known_one(start: Start) -> None:
    stack = await start()
    client = await stack.client()
    known, unknown = await register(client), unique_login()
    answers: dict[str, list[tuple[int, bytes, list[tuple[str, str]]]]] = {known: [], unknown: []}

    async def round_of_six() -> None:
        for _ in range(6):
            for login in (known, unknown):  # interleaved: both see the same clock
                response = await attempt(client, login)
                answers[login].append(
                    (response.status_code, response.content, sorted(response.headers.items()))
                )

    await round_of_six()
    await asyncio.sleep(BLOCK_OVER)
    await round_of_six()
    assert answers[known] == answers[unknown]
    statuses = [status for status, _, _ in answers[known]]
    assert statuses == [401] * 5 + [429] + [401] * 5 + [429]
    retry_afters = [dict(headers).get("retry-after") for _, _, headers in answers[known]]
    assert (retry_afters[5], retry_afters[11]) == ("1", "3")  # the second block is longer


async def test_after_the_block_login_works_and_the_next_block_is_longer(start: Start) -> None:
    stack = await start()
    client = await stack.client()
    login = await register(client)
    await fail(client, login, 5)
    assert_blocked(await attempt(client, login, PASSWORD), 1)
    await asyncio.sleep(BLOCK_OVER)
    assert (await attempt(client, login, PASSWORD)).status_code == 200
    # The success forgave the failures but kept the level: the next block is level 2.
    await fail(client, login, 5)
    assert_blocked(await attempt(client, login, PASSWORD), 3)
    levels = [(e["level"], e["seconds"]) for e in await stack.audits("auth.login_blocked")]
    assert levels == [(1, 1.0), (2, 3.0)]


async def test_a_success_resets_the_login_count(start: Start) -> None:
    stack = await start()
    client = await stack.client()
    login = await register(client)
    await fail(client, login, 4)
    assert (await attempt(client, login, PASSWORD)).status_code == 200
    await fail(client, login, 4)  # 8 failures in the window, but only 4 since the success
    assert (await attempt(client, login, PASSWORD)).status_code == 200
    assert await stack.audits("auth.login_blocked") == []


async def test_failures_older_than_the_window_are_forgotten(start: Start) -> None:
    stack = await start(login_failure_window=0.5)
    client = await stack.client()
    login = await register(client)
    await fail(client, login, 4)
    await asyncio.sleep(0.6)
    await fail(client, login, 4)
    assert (await attempt(client, login, PASSWORD)).status_code == 200


async def test_per_ip_limit_across_many_logins(start: Start) -> None:
    stack = await start(login_ip_max_failures=6, login_max_failures=100)
    attacker, bystander = await stack.client("203.0.113.7"), await stack.client("198.51.100.2")
    own = await register(attacker)
    victims = [await register(bystander) for _ in range(2)]
    for n in range(3):
        await fail(attacker, unique_login(f"guess{n}"), 1)
    # A success on the attacker's own account does not reset the IP's count.
    assert (await attempt(attacker, own, PASSWORD)).status_code == 200
    await fail(attacker, victims[0], 2)
    await fail(attacker, unique_login(), 1)  # the sixth failure from this IP: a block
    for login in (victims[1], own):
        assert_blocked(await attempt(attacker, login, PASSWORD), 1)
    # The block is the IP's: the victims log in from elsewhere.
    for login in victims:
        assert (await attempt(bystander, login, PASSWORD)).status_code == 200
    [blocked] = await stack.audits("auth.login_blocked")
    assert blocked["scope"] == "ip" and blocked["ip"] == "203.0.113.7"
    throttled = await stack.audits("auth.login_throttled")
    assert {(e["scope"], e["ip"]) for e in throttled} == {("ip", "203.0.113.7")}


async def test_a_burst_cannot_slip_past_the_limits(start: Start) -> None:
    """Attempts are counted before the password check, so simultaneous ones count too."""
    # Windows and blocks longer than a burst may take on a loaded machine.
    stack = await start(
        login_ip_max_failures=8,
        login_failure_window=60.0,
        login_block_seconds=30.0,
        login_block_max_seconds=60.0,
    )
    client = await stack.client()
    login = await register(client)
    burst = await asyncio.gather(*(attempt(client, login) for _ in range(20)))
    assert sorted(r.status_code for r in burst) == [401] * 5 + [429] * 15
    assert len(await stack.audits("auth.login_failed")) == 5
    sprayer = await stack.client("203.0.113.7")
    spray = await asyncio.gather(*(attempt(sprayer, unique_login()) for _ in range(20)))
    assert sorted(r.status_code for r in spray) == [401] * 8 + [429] * 12
    assert len(await stack.audits("auth.login_failed")) == 5 + 8
    scopes = sorted(e["scope"] for e in await stack.audits("auth.login_blocked"))
    assert scopes == ["ip", "source"]  # one block each, however many were over the limit


async def test_a_stranger_cannot_lock_the_owner_out(start: Start) -> None:
    """Issue 11: the small limit is per (login, source); a stranger blocks only
    themselves, whatever the password they then try."""
    stack = await start()
    stranger, owner = await stack.client("203.0.113.7"), await stack.client("198.51.100.2")
    login = await register(owner)
    await fail(stranger, login, 5)
    assert_blocked(await attempt(stranger, login, PASSWORD), 1)
    assert_blocked(await attempt(stranger, login), 1)
    assert (await attempt(owner, login, PASSWORD)).status_code == 200
    # A third address has a budget of its own too.
    third = await stack.client("192.0.2.44")
    await fail(third, login, 5)
    assert_blocked(await attempt(third, login), 1)
    assert (await attempt(owner, login, PASSWORD)).status_code == 200
    scopes = {(e["scope"], e["ip"]) for e in await stack.audits("auth.login_blocked")}
    assert scopes == {("source", "203.0.113.7"), ("source", "192.0.2.44")}


async def test_guessing_spread_over_many_sources_stays_capped_per_login(start: Start) -> None:
    """The per-login cap (ASVS V2.2.1): 6 here, from 3 addresses of 2 guesses each; the
    7th guess blocks the login for every new source, and the cap holds after the block
    (the count is kept: the next guess blocks again, longer). A source the owner logged
    in from before is not locked out."""
    stack = await start(login_global_max_failures=6, login_global_window=60.0)
    owner = await stack.client("198.51.100.2")
    login = await register(owner)
    assert (await attempt(owner, login, PASSWORD)).status_code == 200  # a known source
    botnet = [await stack.client(f"203.0.113.{n}") for n in range(1, 5)]
    for bot in botnet[:3]:
        await fail(bot, login, 2)
    assert_blocked(await attempt(botnet[3], login), 1)
    assert_blocked(await attempt(botnet[0], login, PASSWORD), 1)  # no oracle either
    newcomer = await stack.client("192.0.2.80")
    assert_blocked(await attempt(newcomer, login, PASSWORD), 1)
    assert (await attempt(owner, login, PASSWORD)).status_code == 200
    assert len(await stack.audits("auth.login_failed")) == 6  # no 7th guess checked
    await asyncio.sleep(BLOCK_OVER)
    assert_blocked(await attempt(botnet[3], login), 3)  # the count was kept: blocked again
    levels = [(e["scope"], e["level"]) for e in await stack.audits("auth.login_blocked")]
    assert levels == [("login", 1), ("login", 2)]


@pytest.mark.redis
async def test_redis_keys_live_under_the_prefix(
    tmp_path: Path, redis_url: str, redis_namespace: str
) -> None:
    async with AsyncExitStack() as exits:
        stack = await running_stack(
            exits, tmp_path, redis_url=redis_url, redis_namespace=redis_namespace, **SHORT
        )
        client = await stack.client()
        login = await register(client)
        await fail(client, login, 5)
        assert_blocked(await attempt(client, login), 1)
        raw = aioredis.Redis.from_url(redis_url, decode_responses=True)
        try:
            names = sorted(await raw.keys(f"{redis_namespace}*login-*"))
            prefix = f"{redis_namespace}agora:"
            block = f"{prefix}login-block:source:{login}:127.0.0.1"
            assert names == sorted(
                [
                    block,
                    f"{prefix}login-block-level:source:{login}:127.0.0.1",
                    f"{prefix}login-fail:source:{login}:127.0.0.1",  # round 0, kept
                    f"{prefix}login-fail:ip:127.0.0.1",
                    f"{prefix}login-fail:login:{login}",
                ]
            )
            assert 0 < await raw.pttl(block) <= 1000
            assert await raw.get(f"{redis_namespace}agora:login-fail:ip:127.0.0.1") == "5"
        finally:
            await raw.aclose()
            await drop_namespace(redis_url, redis_namespace)


async def test_with_the_cache_down_logins_still_work(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Fail open: nothing listens on port 1, so every cache call is CacheUnavailable."""
    async with AsyncExitStack() as exits:
        stack = await running_stack(
            exits, tmp_path, redis_url="redis://127.0.0.1:1/0", login_max_failures=2, **SHORT
        )
        client = await stack.client()
        login = await register(client)
        with caplog.at_level(logging.WARNING, logger="agora.auth.throttle"):
            await fail(client, login, 3)
            assert (await attempt(client, login, PASSWORD)).status_code == 200
        warnings = [r.getMessage() for r in caplog.records if r.name == "agora.auth.throttle"]
        assert warnings and all("cache is unavailable" in w for w in warnings)


def test_block_durations_grow_to_the_cap_and_settings_refuse_nonsense(tmp_path: Path) -> None:
    from pydantic import ValidationError

    from agora.adapters.cache_memory import MemoryCache
    from agora.core.audit import Audit
    from agora.services.auth.throttle import LoginThrottle

    defaults = make_settings(tmp_path)
    throttle = LoginThrottle(MemoryCache(), Audit("test"), defaults)
    assert [throttle.block_seconds(level) for level in (1, 2, 3, 7, 8)] == [
        60,
        120,
        240,
        3600,
        3600,
    ]
    assert throttle.block_seconds(100_000) == 3600  # no float overflow on a long siege
    for bad in (
        {"login_block_seconds": 120, "login_block_max_seconds": 60},
        {"login_block_memory": 60, "login_block_max_seconds": 3600},
        {"login_max_failures": 0},
        {"login_block_growth": 0.5},
    ):
        with pytest.raises(ValidationError):
            make_settings(tmp_path, **bad)
