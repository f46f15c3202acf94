"""The HTTP metrics' labels (route template, bounded methods) and which audit events count."""

from __future__ import annotations

import uuid

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client import generate_latest

from agora.core.audit import Audit
from agora.core.metrics import REGISTRY
from agora.web.metrics import UNMATCHED, HttpMetricsMiddleware
from tests.support.metrics import label_values, parse, value

REQUESTS = "agora_http_requests_total"


def app_under_test(prefix: str) -> HttpMetricsMiddleware:
    app = FastAPI()

    @app.get(prefix + "/items/{item_id}")
    async def item(item_id: str) -> dict[str, str]:
        return {"id": item_id}

    @app.get(prefix + "/boom")
    async def boom() -> None:
        raise RuntimeError("a bug")

    return HttpMetricsMiddleware(app)


def client(app: HttpMetricsMiddleware) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://test")


def samples() -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return parse(generate_latest(REGISTRY).decode())


@pytest.fixture
def prefix() -> str:
    return f"/t{uuid.uuid4().hex[:8]}"  # this test's own routes: counts start at 0


async def test_requests_are_labelled_by_route_template(prefix: str) -> None:
    async with client(app_under_test(prefix)) as http:
        for item in ("a", "b", "c"):
            assert (await http.get(f"{prefix}/items/{item}")).status_code == 200
        assert (await http.get(f"{prefix}/boom")).status_code == 500
    found = samples()
    template = f"{prefix}/items/{{item_id}}"
    assert value(found, REQUESTS, route=template, method="GET", status="200") == 3
    assert value(found, REQUESTS, route=f"{prefix}/boom", method="GET", status="500") == 1
    histogram = "agora_http_request_duration_seconds_count"
    assert value(found, histogram, route=template, method="GET", status="200") == 3
    assert not any(route.startswith(f"{prefix}/items/") and route != template
                   for route in label_values(found, REQUESTS, "route"))  # fmt: skip


async def test_unknown_paths_and_methods_make_no_new_label_values(prefix: str) -> None:
    before = samples()
    routes_before = label_values(before, REQUESTS, "route")
    methods_before = label_values(before, REQUESTS, "method")
    async with client(app_under_test(prefix)) as http:
        for _ in range(5):
            assert (await http.get(f"{prefix}/{uuid.uuid4().hex}")).status_code == 404
            response = await http.request(uuid.uuid4().hex[:8].upper(), f"{prefix}/items/x")
            assert response.status_code == 405
    after = samples()
    new_routes = label_values(after, REQUESTS, "route") - routes_before
    assert new_routes <= {UNMATCHED, f"{prefix}/items/{{item_id}}"}
    assert label_values(after, REQUESTS, "method") - methods_before <= {"GET", "other"}
    unmatched = {"route": UNMATCHED, "method": "GET", "status": "404"}
    assert value(after, REQUESTS, **unmatched) - value(before, REQUESTS, **unmatched) == 5
    other = {"route": f"{prefix}/items/{{item_id}}", "method": "other", "status": "405"}
    assert value(after, REQUESTS, **other) == 5


async def test_refusals_and_blocks_are_counted_from_the_audit_trail() -> None:
    service = f"svc{uuid.uuid4().hex[:8]}"
    audit = Audit(service)
    await audit.record("auth.rejected", status=401, reason="expired", path="/x")
    await audit.record("auth.rejected", status=401, reason="expired", path="/y")
    await audit.record("messaging.ticket_refused", reason="reused", code=4403)
    await audit.record("messaging.rate_limited", kind="message", scope="user", user_id="1")
    await audit.record("auth.login_blocked", login="a", ip="1.2.3.4", scope="ip")
    await audit.record("auth.login", user_id="1")  # no decision against anyone: not counted
    found = samples()
    refusals = "agora_auth_refusals_total"
    assert value(found, refusals, service=service, event="auth.rejected", reason="expired") == 2
    ticket = {"service": service, "event": "messaging.ticket_refused", "reason": "reused"}
    assert value(found, refusals, **ticket) == 1
    blocks = "agora_rate_limit_blocks_total"
    limited = {"service": service, "event": "messaging.rate_limited", "scope": "message:user"}
    assert value(found, blocks, **limited) == 1
    blocked = {"service": service, "event": "auth.login_blocked", "scope": "ip"}
    assert value(found, blocks, **blocked) == 1
    assert not any(
        dict(labels).get("service") == service and dict(labels).get("event") == "auth.login"
        for (_name, labels) in found
    )
