"""The Notifier port's contract, run against both backends: LogNotifier (the embedded
default, observed through its log lines) and WebhookNotifier (observed through a real
HTTP server started here, on a free port, recording every POST).

Both must tell each user about the notification, exactly once, do nothing for nobody,
and never raise: the webhook is also pointed at a dead port, a server answering 500 and
one that never answers in time, and messaging's send must not notice any of that.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from agora.adapters.notify_log import LogNotifier
from agora.adapters.notify_webhook import WebhookNotifier
from agora.ports.notify import Notifier
from tests.support.http_server import serving
from tests.support.net import free_port

NOTIFICATION = {
    "type": "message",
    "conversation_id": "c1",
    "message_id": "m1",
    "author_id": "u0",
    "preview": "hello <b>there</b> ✓",
}


@dataclass
class Receiver:
    """What the webhook server saw: every POST's headers and decoded body."""

    posts: list[tuple[dict[str, str], Any]] = field(default_factory=list)
    status: int = 204
    delay: float = 0.0

    async def endpoint(self, request: Request) -> Response:
        body = await request.body()
        self.posts.append((dict(request.headers), orjson.loads(body)))
        if self.delay:
            await asyncio.sleep(self.delay)
        return Response(status_code=self.status)


@contextlib.asynccontextmanager
async def webhook_server(receiver: Receiver) -> AsyncIterator[str]:
    """A real uvicorn server with `POST /hook` on a free port; yields the hook's URL."""
    app = Starlette(routes=[Route("/hook", receiver.endpoint, methods=["POST"])])
    async with serving(app) as base_url:
        yield f"{base_url}/hook"


Delivered = Callable[[], list[tuple[str, dict[str, Any]]]]


@dataclass
class Case:
    notifier: Notifier
    delivered: Delivered  # (user id, notification) for everything told so far


@pytest.fixture(params=[pytest.param("log", marks=pytest.mark.embedded), "webhook"])
async def case(
    request: pytest.FixtureRequest, caplog: pytest.LogCaptureFixture
) -> AsyncIterator[Case]:
    if request.param == "log":
        caplog.set_level(logging.INFO, logger="agora.notify")

        def from_log() -> list[tuple[str, dict[str, Any]]]:
            return [
                (record.user_id, record.notification)  # type: ignore[attr-defined]
                for record in caplog.records
                if record.name == "agora.notify"
            ]

        notifier = LogNotifier()
        yield Case(notifier, from_log)
        await notifier.close()
        return
    receiver = Receiver()
    async with webhook_server(receiver) as url:
        webhook = WebhookNotifier(url, timeout=2.0)

        def from_posts() -> list[tuple[str, dict[str, Any]]]:
            return [
                (user_id, body["notification"])
                for _headers, body in receiver.posts
                for user_id in body["user_ids"]
            ]

        yield Case(webhook, from_posts)
        await webhook.close()


async def test_each_user_is_told_once(case: Case) -> None:
    await case.notifier.notify(["u1", "u2", "u3"], NOTIFICATION)
    assert case.delivered() == [("u1", NOTIFICATION), ("u2", NOTIFICATION), ("u3", NOTIFICATION)]


async def test_separate_calls_are_separate_notifications(case: Case) -> None:
    await case.notifier.notify(["u1"], NOTIFICATION)
    await case.notifier.notify(["u2"], {**NOTIFICATION, "message_id": "m2"})
    assert case.delivered() == [
        ("u1", NOTIFICATION),
        ("u2", {**NOTIFICATION, "message_id": "m2"}),
    ]


async def test_nobody_means_nothing(case: Case) -> None:
    await case.notifier.notify([], NOTIFICATION)
    assert case.delivered() == []


async def test_a_tuple_of_ids_is_a_sequence_too(case: Case) -> None:
    await case.notifier.notify(("u9",), NOTIFICATION)
    assert case.delivered() == [("u9", NOTIFICATION)]


# --- the webhook's own behaviour -------------------------------------------------------


async def test_webhook_posts_one_json_request_per_call() -> None:
    receiver = Receiver()
    async with webhook_server(receiver) as url:
        webhook = WebhookNotifier(url, timeout=2.0)
        try:
            await webhook.notify(["u1", "u2"], NOTIFICATION)
        finally:
            await webhook.close()
    assert len(receiver.posts) == 1
    headers, body = receiver.posts[0]
    assert headers["content-type"] == "application/json"
    assert body == {"user_ids": ["u1", "u2"], "notification": NOTIFICATION}


async def test_webhook_dead_url_is_logged_never_raised(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="agora.notify")
    webhook = WebhookNotifier(f"http://127.0.0.1:{free_port()}/hook", timeout=1.0)
    try:
        await webhook.notify(["u1"], NOTIFICATION)
    finally:
        await webhook.close()
    assert [record.getMessage() for record in caplog.records] == [
        "notification webhook unreachable"
    ]


async def test_webhook_error_status_is_logged_never_raised(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="agora.notify")
    receiver = Receiver(status=500)
    async with webhook_server(receiver) as url:
        webhook = WebhookNotifier(url, timeout=2.0)
        try:
            await webhook.notify(["u1"], NOTIFICATION)
        finally:
            await webhook.close()
    assert len(receiver.posts) == 1  # sent once: no retry
    [record] = caplog.records
    assert record.getMessage() == "notification webhook refused"
    assert record.status == 500  # type: ignore[attr-defined]


async def test_webhook_slow_server_costs_the_timeout_at_most(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="agora.notify")
    receiver = Receiver(delay=5.0)
    async with webhook_server(receiver) as url:
        webhook = WebhookNotifier(url, timeout=0.3)
        try:
            started = time.monotonic()
            await webhook.notify(["u1"], NOTIFICATION)
            elapsed = time.monotonic() - started
        finally:
            await webhook.close()
    assert elapsed < 2.0
    assert [record.getMessage() for record in caplog.records] == [
        "notification webhook unreachable"
    ]


async def test_webhook_a_notification_that_is_not_json_is_logged_not_raised(
    caplog: pytest.LogCaptureFixture,
) -> None:
    receiver = Receiver()
    async with webhook_server(receiver) as url:
        webhook = WebhookNotifier(url, timeout=2.0)
        try:
            await webhook.notify(["u1"], {"when": object()})
        finally:
            await webhook.close()
    assert receiver.posts == []
    assert "notification is not JSON" in caplog.text


def test_webhook_refuses_a_url_that_is_not_http() -> None:
    for url in ("", "ftp://example.com/hook", "file:///etc/passwd", "127.0.0.1:80"):
        with pytest.raises(ValueError, match="notify url must be http:// or https://"):
            WebhookNotifier(url)
