"""`/metrics` of a real `agora serve`: real traffic moves each family by what it should,
prod hides the page unless told, and `--workers 2` answers for both workers."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.agora_command import Server, agora_env
from tests.e2e.gateway import ticket
from tests.support.messaging_client import SOCKET_PATH, Device, handshake_refusal
from tests.support.metrics import Samples, label_values, scrape, value
from tests.support.services import REDIS_URL, RUN_ID, drop_namespace, require_redis
from tests.support.users import PASSWORD, register_and_login, unique_login
from tests.support.waiting import eventually

pytestmark = pytest.mark.e2e

REQUESTS = "agora_http_requests_total"
PROD_SECRET = "a-production-secret-of-more-than-32-bytes"


def moved(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def ws_url(server: Server) -> str:
    return server.base_url.replace("http://", "ws://", 1)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data_dir = tmp_path_factory.mktemp("agora-metrics")
    started = Server(data_dir, agora_env(data_dir, AGORA_LOGIN_MAX_FAILURES="2")).start()
    try:
        yield started
    finally:
        started.stop_cleanly()


async def test_real_traffic_moves_every_family(server: Server) -> None:
    base = server.base_url
    before = scrape(base)
    async with httpx.AsyncClient(base_url=base, timeout=10) as client:
        _alice, alice_token = await register_and_login(client)
        bob, bob_token = await register_and_login(client)

        # Both logins' `connected` events reach publications through the outbox and bus.
        await eventually(
            lambda: moved(before, scrape(base), "agora_event_consumer_lag_seconds_count") == 2
        )
        assert (await client.get("/api/publications", headers=bearer(alice_token))).is_success
        bad = await client.get("/api/publications", headers=bearer("not.a.token"))
        assert bad.status_code == 401
        for path in ("/no/such/path", f"/no/such/{uuid.uuid4().hex}"):
            assert (await client.get(path)).status_code == 404
        stranger = unique_login("nobody")
        attempts = [
            (await client.post("/auth/api/login", json={"login": stranger, "password": "x"}))
            for _ in range(3)
        ]
        assert [r.status_code for r in attempts] == [401, 401, 429]

        created = await client.post(
            "/api/v1/conversations",
            json={"kind": "direct", "user_id": bob["id"]},
            headers=bearer(alice_token),
        )
        assert created.status_code == 201, created.text
        conversation = created.json()["id"]

        # Refused at the handshake (403), as a Phoenix server refuses `connect`.
        status, _ = await handshake_refusal(f"{ws_url(server)}{SOCKET_PATH}?token=not-a-ticket")
        assert status == 403

        device = await Device.open(ws_url(server), await ticket(client, bob_token), "bob")
        async with device:
            reply = await device.join(
                device.user_topic, {"conversations": {conversation: {"last_seq": 0}}}
            )
            assert reply["conversations"][conversation]["recovered"] is True
            sent = await client.post(
                f"/api/v1/conversations/{conversation}/messages",
                json={"client_id": "m-1", "text": "hello"},
                headers=bearer(alice_token),
            )
            assert sent.status_code == 201, sent.text
            await device.expect("message:new", topic=device.user_topic)
            during = scrape(base)
        await eventually(
            lambda: value(scrape(base), "agora_sockets_open", service="messaging") == 0
        )
    after = scrape(base)

    # HTTP, by route template, method and status
    assert (
        moved(before, after, REQUESTS, route="/auth/api/register", method="POST", status="201") == 2
    )
    assert moved(before, after, REQUESTS, route="/auth/api/login", method="POST", status="200") == 2
    assert moved(before, after, REQUESTS, route="/auth/api/login", method="POST", status="401") == 2
    assert moved(before, after, REQUESTS, route="/auth/api/login", method="POST", status="429") == 1
    assert (
        moved(before, after, REQUESTS, route="/api/publications", method="GET", status="200") == 1
    )
    assert (
        moved(before, after, REQUESTS, route="/api/publications", method="GET", status="401") == 1
    )
    assert moved(before, after, REQUESTS, route="<unmatched>", method="GET", status="404") == 2
    messages_route = "/api/v1/conversations/{conversation_id}/messages"
    assert moved(before, after, REQUESTS, route=messages_route, method="POST", status="201") == 1
    histogram = "agora_http_request_duration_seconds_count"
    assert (
        moved(before, after, histogram, route="/api/publications", method="GET", status="200") == 1
    )
    assert not any("/no/such" in route or conversation in route
                   for route in label_values(after, REQUESTS, "route"))  # fmt: skip

    # sockets and joins
    assert value(during, "agora_sockets_open", service="messaging") == 1
    assert value(after, "agora_sockets_open", service="messaging") == 0
    assert moved(before, after, "agora_socket_connections_total", service="messaging") == 1
    assert moved(before, after, "agora_socket_joins_total", service="messaging", topic="user") == 1
    assert moved(before, after, "agora_catch_up_replies_total", recovered="true") == 1

    # messages and deliveries: one stored, pushed to bob's one joined socket
    assert moved(before, after, "agora_messages_stored_total") == 1
    assert moved(before, after, "agora_deliveries_pushed_total") == 1

    # events: two logins consumed, the outbox drained
    assert moved(before, after, "agora_event_consumer_lag_seconds_count") == 2
    assert value(after, "agora_outbox_depth") == 0

    # refusals by reason, blocks by scope
    refusals = "agora_auth_refusals_total"
    rejected = {"service": "publications", "event": "auth.rejected", "reason": "malformed"}
    assert moved(before, after, refusals, **rejected) == 1
    assert moved(before, after, refusals, service="auth", event="auth.login_failed", reason="") == 2
    ticket_refusals = [
        moved(before, after, refusals, service="messaging", event="messaging.ticket_refused",
              reason=reason)
        for reason in label_values(after, refusals, "reason")
    ]  # fmt: skip
    assert sum(ticket_refusals) == 1
    blocks = "agora_rate_limit_blocks_total"
    assert (
        moved(before, after, blocks, service="auth", event="auth.login_blocked", scope="source")
        == 1
    )
    assert (
        moved(before, after, blocks, service="auth", event="auth.login_throttled", scope="source")
        == 1
    )


def test_prod_serves_metrics_only_when_enabled(tmp_path: Path) -> None:
    prod = {"AGORA_ENV": "prod", "AGORA_JWT_SECRET": PROD_SECRET, "AGORA_COOKIE_SECURE": "true"}
    hidden = Server(tmp_path / "off", agora_env(tmp_path / "off", **prod))
    (tmp_path / "off").mkdir()
    hidden.start()
    try:
        response = httpx.get(f"{hidden.base_url}/metrics")
        assert response.status_code == 404
        assert "agora_" not in response.text
    finally:
        hidden.stop_cleanly()

    (tmp_path / "on").mkdir()
    env = agora_env(tmp_path / "on", AGORA_METRICS_ENABLED="true", **prod)
    shown = Server(tmp_path / "on", env).start()
    try:
        assert "agora_http_requests_total" in httpx.get(f"{shown.base_url}/metrics").text
    finally:
        shown.stop_cleanly()


@pytest.mark.redis
async def test_two_workers_answer_for_both(tmp_path: Path) -> None:
    redis_url = require_redis()
    namespace = f"agora-test-{RUN_ID}-metrics-{uuid.uuid4().hex[:6]}:"
    env = agora_env(tmp_path, AGORA_REDIS_URL=redis_url, AGORA_REDIS_NAMESPACE=namespace)
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    server = Server(tmp_path, env, args=("--workers", "2")).start()
    try:
        base = server.base_url
        before = scrape(base)
        # A new connection each: the kernel hands them to either worker.
        for _ in range(30):
            assert httpx.get(f"{base}/no/such/path").status_code == 404
        # Whichever worker answers the scrape, it counts every worker's requests.
        for _ in range(6):
            now = scrape(base)
            assert (
                moved(before, now, REQUESTS, route="<unmatched>", method="GET", status="404") == 30
            )

        async with httpx.AsyncClient(base_url=base, timeout=10) as client:
            _, token = await register_and_login(client, password=PASSWORD)
            device = await Device.open(ws_url(server), await ticket(client, token), "worker")
            async with device:
                for _ in range(6):
                    assert value(scrape(base), "agora_sockets_open", service="messaging") == 1
        await eventually(
            lambda: value(scrape(base), "agora_sockets_open", service="messaging") == 0
        )
    finally:
        server.stop_cleanly()
        await drop_namespace(REDIS_URL, namespace)
