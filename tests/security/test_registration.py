"""Registration (issue 11): throttled per IP, hashing bounded so that a flood of
registrations never starves logins, and one answer for a taken login or email."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from agora.core.errors import Overloaded
from agora.security.passwords import PasswordHasher
from agora.services.auth.service import AuthService
from tests.security.support import Agora, audit_reasons, capture_audit, running_agora
from tests.support.users import PASSWORD, unique_login
from tests.support.waiting import eventually


def body(login: str, email: str | None = None) -> dict[str, str]:
    email = email or f"{login}@example.com"
    return {"login": login, "password": PASSWORD, "email": email, "name": login}


@asynccontextmanager
async def client_at(agora: Agora, ip: str) -> AsyncIterator[httpx.AsyncClient]:
    """A client whose requests come from `ip`."""
    transport = httpx.ASGITransport(app=agora.app, client=(ip, 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


def audit_events(caplog: pytest.LogCaptureFixture, event: str) -> list[dict[str, Any]]:
    return [
        record.audit  # type: ignore[attr-defined]
        for record in caplog.records
        if record.name == "agora.audit" and getattr(record, "audit", {}).get("event") == event
    ]


async def test_registrations_per_ip_are_throttled(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    capture_audit(caplog)
    limits = {"register_ip_max_attempts": 3, "register_ip_window": 600}
    async with (
        running_agora(tmp_path, **limits) as agora,
        client_at(agora, "203.0.113.7") as attacker,
        client_at(agora, "198.51.100.2") as neighbour,
    ):
        first = unique_login()
        assert (await attacker.post("/auth/api/register", json=body(first))).status_code == 201
        # A refused attempt (taken) counts too: it costs a hash and tells something.
        taken = await attacker.post("/auth/api/register", json=body(first))
        assert taken.status_code == 409
        third = await attacker.post("/auth/api/register", json=body(unique_login()))
        assert third.status_code == 201
        refused = await attacker.post("/auth/api/register", json=body(unique_login()))
        assert refused.status_code == 429, refused.text
        assert refused.json() == {"error": "Too many registrations"}
        assert 1 <= int(refused.headers["Retry-After"]) <= 600
        # Another address is not affected.
        other = await neighbour.post("/auth/api/register", json=body(unique_login()))
        assert other.status_code == 201, other.text
    [event] = audit_events(caplog, "auth.register_throttled")
    assert event["ip"] == "203.0.113.7"


async def test_a_taken_login_and_a_taken_email_get_the_same_answer(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    capture_audit(caplog)
    async with running_agora(tmp_path) as agora:
        client = agora.client
        login = unique_login()
        assert (await client.post("/auth/api/register", json=body(login))).status_code == 201
        same_login = await client.post(
            "/auth/api/register", json=body(login.upper(), f"other-{login}@example.com")
        )
        same_email = await client.post(
            "/auth/api/register", json=body(unique_login(), f"{login.upper()}@example.com")
        )
    answers = [
        (a.status_code, a.json(), a.headers.get("content-type")) for a in (same_login, same_email)
    ]
    assert answers[0] == answers[1] == (
        409, {"error": "Login or email already taken"}, "application/json"
    )  # fmt: skip
    # The audit trail (not the client) knows which it was.
    assert audit_reasons(caplog, "auth.register_refused") == ["login_taken", "email_taken"]


async def test_a_registration_flood_never_starves_logins(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """24 parallel registrations (each a real argon2 hash of ~0.5 s): those past the
    registration lane's capacity get 503 + Retry-After at once, and a login made in the
    middle of the flood answers before the flood is through."""
    capture_audit(caplog)
    async with running_agora(
        tmp_path,
        argon2_time_cost=4,
        argon2_memory_cost=32768,
        password_register_workers=1,
        password_register_queue=4,
    ) as agora:
        hasher = agora.auth.provided(AuthService).hasher
        lane = hasher.lanes["register"]
        owner = unique_login("owner")
        assert (await agora.client.post("/auth/api/register", json=body(owner))).status_code == 201

        async def timed(request: Any) -> tuple[httpx.Response, float]:
            started = time.perf_counter()
            response = await request
            return response, time.perf_counter() - started

        flood_started = time.perf_counter()
        flood = [
            asyncio.create_task(
                timed(agora.client.post("/auth/api/register", json=body(unique_login())))
            )
            for _ in range(24)
        ]
        # The login goes in once the registration lane is full (some were refused).
        await eventually(lambda: audit_events(caplog, "auth.password_lane_full"), timeout=30)
        login, login_seconds = await timed(
            agora.client.post("/auth/api/login", json={"login": owner, "password": PASSWORD})
        )
        login_done = time.perf_counter() - flood_started
        results = await asyncio.gather(*flood)
    assert login.status_code == 200, login.text
    created = [seconds for response, seconds in results if response.status_code == 201]
    busy = [(response, seconds) for response, seconds in results if response.status_code == 503]
    assert len(created) + len(busy) == 24, [r.status_code for r, _ in results]
    assert len(created) <= lane.capacity + 1  # one may finish before the last one arrives
    assert len(busy) >= 24 - lane.capacity - 2, len(busy)
    for response, seconds in busy:
        assert response.json() == {"error": "Too many password checks at once, try again shortly"}
        assert int(response.headers["Retry-After"]) >= 1
        assert seconds < max(created), (seconds, created)  # refused at once, not after a wait
    # The login did not wait for the registrations queued before it.
    assert login_done < max(created), (login_seconds, login_done, created)
    assert audit_events(caplog, "auth.password_lane_full")


async def test_a_full_lane_answers_at_once_and_leaves_the_other_lane_alone() -> None:
    hasher = PasswordHasher(2, 16384, 1, lanes={"register": (1, 1), "login": (1, 1)})
    try:
        stored = await hasher.hash("a password", lane="login")
        running = [asyncio.create_task(hasher.hash(f"password {i}")) for i in range(2)]
        await asyncio.sleep(0)  # both admitted: one running, one waiting
        started = time.perf_counter()
        with pytest.raises(Overloaded) as refused:
            await hasher.hash("one too many")
        assert time.perf_counter() - started < 0.05
        assert refused.value.retry_after >= 1 and refused.value.lane == "register"
        # The login lane still checks passwords meanwhile.
        assert await hasher.verify(stored, "a password")
        await asyncio.gather(*running)
        assert hasher.lanes["register"].in_flight == 0
    finally:
        hasher.close()
