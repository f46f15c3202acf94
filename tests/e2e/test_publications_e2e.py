"""the contracts (docs/contracts.md) across separate processes: `agora serve auth` and `agora serve
publications` on PostgreSQL, Redis and RabbitMQ, seen only from outside.

Login in one process must reach the other through the broker; the tests poll (bounded)
for what a user would see, then check Redis and PostgreSQL for what docs/contracts.md fixes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from agora.security.tokens import TokenService
from tests.e2e.processes import (
    Deployment,
    bearer,
    deployment,
    login,
    register,
    token_issued,
    wait_until,
)
from tests.support.services import require_rabbitmq, require_redis
from tests.support.settings import TEST_SECRET

pytestmark = pytest.mark.e2e

CACHE_FIELDS = {"status", "name", "email", "last_activity_at"}
INACTIVE = {"error": "Forbidden", "reason": "inactive_user"}


@pytest.fixture(scope="module")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    """auth and publications as two processes, shared by this module's tests."""
    redis_url, amqp_url = require_redis(), require_rabbitmq()
    root = tmp_path_factory.mktemp("e2e-publications")
    with deployment(root, redis_url=redis_url, amqp_url=amqp_url) as deployed:
        deployed.start("auth")
        deployed.start("publications")
        yield deployed


async def wait_answer(
    deployed: Deployment, client: httpx.AsyncClient, token: str, status: int
) -> httpx.Response:
    async def answered() -> httpx.Response | None:
        response = await client.get("/api/publications", headers=bearer(token))
        return response if response.status_code == status else None

    return await wait_until(
        answered, timeout=15, what=f"GET /api/publications -> {status}", logs=deployed.logs
    )


def assert_cached_entry(entry: dict[str, object] | None, pttl: int, name: str, email: str) -> None:
    assert entry is not None
    assert set(entry) == CACHE_FIELDS, entry
    assert entry["status"] == "connected"
    assert (entry["name"], entry["email"]) == (name, email)
    assert 0 < pttl <= 3600 * 1000
    if entry["last_activity_at"] is not None:
        seen = datetime.fromisoformat(str(entry["last_activity_at"]))
        assert abs(datetime.now(UTC) - seen) < timedelta(minutes=5)


async def test_login_event_publications_logout(services: Deployment) -> None:
    async with (
        httpx.AsyncClient(base_url=services.url("auth"), timeout=10) as auth,
        httpx.AsyncClient(base_url=services.url("publications"), timeout=10) as pubs,
    ):
        user = await register(auth)
        user_id = user["id"]
        # Before any login the publications service has never heard of this user.
        first = await login(auth, user)
        second = await login(auth, user)  # a second session: never revoked below

        # flow 1 -> 2: the `connected` event crosses the broker, then the user is let in
        listing = await wait_answer(services, pubs, first, 200)
        assert listing.json()["publications"] == []
        entry, pttl = await services.cached_user(user_id)
        assert_cached_entry(entry, pttl, user["name"], user["email"])
        assert await services.user_status(user_id) == "connected"

        created = await pubs.post(
            "/api/publications",
            json={"title": "Hello <script>alert(1)</script>", "body": "<b>first</b> post"},
            headers=bearer(first),
        )
        assert created.status_code == 201, created.text
        publication = created.json()
        assert "<script>" not in publication["title"]
        listed = (await pubs.get("/api/publications", headers=bearer(second))).json()
        assert [p["id"] for p in listed["publications"]] == [publication["id"]]
        one = await pubs.get(f"/api/publications/{publication['id']}", headers=bearer(first))
        assert one.status_code == 200 and one.json() == publication

        # flow 3: logout of every session -> `disconnected` -> refused, key gone
        logout = await auth.post("/auth/api/logout/all", headers=bearer(first))
        assert logout.status_code == 200, logout.text
        await services.wait_status(user_id, "disconnected")
        assert await services.cached_user(user_id) == (None, -2)
        # The logged-out tokens are revoked in every process (shared Redis + DB).
        for token in (first, second):
            revoked = await pubs.get("/api/publications", headers=bearer(token))
            assert revoked.status_code == 401, revoked.text
            assert revoked.json() == {"error": "Token revoked"}


async def events_applied(deployed: Deployment, user_id: str) -> None:
    """Until publications has applied every event auth wrote for the user."""

    async def caught_up() -> bool:
        written = await deployed.fetchval(
            "SELECT event_seq FROM auth_users WHERE id = $1", int(user_id)
        )
        applied = await deployed.fetchval(
            "SELECT last_event_seq FROM pub_users WHERE user_id = $1", user_id
        )
        return bool(written) and written == applied

    await wait_until(caught_up, timeout=15, what="events applied", logs=deployed.logs)


async def test_a_user_stays_connected_while_any_session_is_live(services: Deployment) -> None:
    """Issue 15 §5: logging out one device leaves the user's other sessions working;
    `disconnected` comes with the end of the last one."""
    async with (
        httpx.AsyncClient(base_url=services.url("auth"), timeout=10) as auth,
        httpx.AsyncClient(base_url=services.url("publications"), timeout=10) as pubs,
    ):
        user = await register(auth)
        phone, laptop = await login(auth, user), await login(auth, user)
        await events_applied(services, user["id"])

        assert (await auth.post("/auth/api/logout", headers=bearer(phone))).status_code == 200
        await events_applied(services, user["id"])  # whatever the logout wrote is applied
        still = await pubs.get("/api/publications", headers=bearer(laptop))
        assert still.status_code == 200, still.text
        assert await services.user_status(user["id"]) == "connected"
        events = await services.fetch(
            "SELECT routing_key FROM auth_outbox WHERE payload::json->>'user_id' = $1 ORDER BY id",
            user["id"],
        )
        assert [row[0] for row in events] == ["user.connected", "user.connected"]

        assert (await auth.post("/auth/api/logout", headers=bearer(laptop))).status_code == 200
        await services.wait_status(user["id"], "disconnected")
        assert (await pubs.get("/api/publications", headers=bearer(laptop))).status_code == 401
        before = token_issued(user["id"], time.time() - 5)
        refused = await pubs.get("/api/publications", headers=bearer(before))
        assert refused.status_code == 403 and refused.json() == INACTIVE


async def test_the_first_read_after_login_is_answered_at_once(services: Deployment) -> None:
    """Issue 10 §4: no 403 in the ~100 ms the `connected` event takes through RabbitMQ."""
    async with (
        httpx.AsyncClient(base_url=services.url("auth"), timeout=10) as auth,
        httpx.AsyncClient(base_url=services.url("publications"), timeout=10) as pubs,
    ):
        for _ in range(5):
            token = await login(auth, await register(auth))
            first = await pubs.get("/api/publications", headers=bearer(token))
            assert first.status_code == 200, first.text


async def test_foreign_publisher_feeds_the_status(services: Deployment) -> None:
    """A plain AMQP client with docs/contracts.md's bare body, no event_id, seq or message_id."""
    token = TokenService(TEST_SECRET, issuer="agora-auth", audience="agora")
    john = token.issue_access("12345", "john").token
    async with httpx.AsyncClient(base_url=services.url("publications"), timeout=10) as pubs:
        # No event yet, and no disconnect known: the token of a login is a live session.
        assert (await pubs.get("/api/publications", headers=bearer(john))).status_code == 200

        await services.publish(
            "user.connected",
            {"event": "connected", "user_id": "12345", "name": "John Doe",
             "email": "john@example.com"},
        )  # fmt: skip
        await services.wait_cache("12345", present=True)
        entry, pttl = await services.cached_user("12345")
        assert_cached_entry(entry, pttl, "John Doe", "john@example.com")
        row = await services.fetch(
            "SELECT status, name, email FROM pub_users WHERE user_id = '12345'"
        )
        assert [tuple(r) for r in row] == [("connected", "John Doe", "john@example.com")]
        assert (await pubs.get("/api/publications", headers=bearer(john))).status_code == 200

        await services.publish("user.disconnected", {"event": "disconnected", "user_id": "12345"})
        await services.wait_cache("12345", present=False)
        await services.wait_status("12345", "disconnected")
        refused = await pubs.get("/api/publications", headers=bearer(john))
        assert refused.status_code == 403 and refused.json() == INACTIVE


@pytest.fixture
def idle_services(tmp_path: Path) -> Iterator[Deployment]:
    """Its own deployment: a 2 s idle timeout would sweep the other tests' users."""
    redis_url, amqp_url = require_redis(), require_rabbitmq()
    with deployment(tmp_path, redis_url=redis_url, amqp_url=amqp_url) as deployed:
        deployed.start("auth")
        deployed.start(
            "publications",
            AGORA_IDLE_TIMEOUT="2",
            AGORA_IDLE_SWEEP_INTERVAL="0.5",
            AGORA_ACTIVITY_WRITE_INTERVAL="0",  # every request is recorded activity
        )
        yield deployed


async def test_idle_sweeper_disconnects(idle_services: Deployment) -> None:
    """Activity keeps a user in; silence longer than AGORA_IDLE_TIMEOUT puts them out."""
    deployed = idle_services
    async with (
        httpx.AsyncClient(base_url=deployed.url("auth"), timeout=10) as auth,
        httpx.AsyncClient(base_url=deployed.url("publications"), timeout=10) as pubs,
    ):
        user = await register(auth)
        token = await login(auth, user)
        await wait_answer(deployed, pubs, token, 200)

        # Busy for longer than the idle timeout: still in.
        busy_until = datetime.now(UTC) + timedelta(seconds=3)
        while datetime.now(UTC) < busy_until:
            response = await pubs.get("/api/publications", headers=bearer(token))
            assert response.status_code == 200, deployed.logs()
            await asyncio.sleep(0.25)

        # Silent: swept within timeout + a few sweep intervals.
        await deployed.wait_status(user["id"], "disconnected", timeout=15)
        assert await deployed.cached_user(user["id"]) == (None, -2)
        refused = await pubs.get("/api/publications", headers=bearer(token))
        assert refused.status_code == 403 and refused.json() == INACTIVE
        audited = await deployed.fetchval(
            "SELECT count(*) FROM audit_events"
            " WHERE event = 'user.idle_disconnected' AND user_id = $1",
            user["id"],
        )
        assert audited == 1


async def test_patch_racing_delete_answers_404_never_500(services: Deployment) -> None:
    """Issue 15 §4: PATCHes racing a DELETE of the same publication, on PostgreSQL. Each
    PATCH is applied before the DELETE (200) or finds it gone (404); none is a 500."""
    async with (
        httpx.AsyncClient(base_url=services.url("auth"), timeout=10) as auth,
        httpx.AsyncClient(base_url=services.url("publications"), timeout=30) as pubs,
    ):
        token = await login(auth, await register(auth))
        headers = bearer(token)
        await wait_answer(services, pubs, token, 200)
        seen: dict[int, int] = {}
        for n in range(30):
            created = await pubs.post(
                "/api/publications", json={"title": f"t{n}", "body": "b"}, headers=headers
            )
            assert created.status_code == 201, created.text
            path = f"/api/publications/{created.json()['id']}"
            patches = [
                pubs.patch(path, json={"title": f"t{n}-{k}"}, headers=headers) for k in range(4)
            ]
            # The DELETE among the PATCHes: some are read before it, some after.
            answers = await asyncio.gather(*patches[:2], pubs.delete(path, headers=headers),
                                           *patches[2:])  # fmt: skip
            deleted = answers.pop(2)
            assert deleted.status_code == 204, deleted.text
            for answer in answers:
                seen[answer.status_code] = seen.get(answer.status_code, 0) + 1
                assert answer.status_code in (200, 404), (answer.status_code, answer.text)
            assert (await pubs.get(path, headers=headers)).status_code == 404
        print("PATCH answers racing a DELETE:", seen)
