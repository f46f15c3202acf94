"""Real servers and real socket clients for the social tests.

`serving(app)` runs an ASGI app under a real uvicorn server on a free port, in the
test's own event loop, with the protocol pings and frame limit of the app's settings
(as `agora serve` passes them). `Client` logs in over HTTP and opens sockets with the
`websockets` package, as a browser or wscat would.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
from sqlalchemy import select
from websockets.asyncio.client import ClientConnection, connect

from agora.adapters.audit_database import AuditEvent
from agora.adapters.bus_memory import MemoryBus
from agora.adapters.cache_redis import RedisCache
from agora.adapters.counters_redis import RedisCounters
from agora.adapters.presence_redis import RedisPresence
from agora.adapters.pubsub_redis import RedisPubSub
from agora.core.settings import Settings
from agora.db.engine import Database
from agora.db.migrate import upgrade
from agora.ports.backends import Backends
from agora.runtime.embedded import create_embedded_app
from agora.runtime.process import ProcessApp
from agora.runtime.registry import service_app
from agora.runtime.websocket_protocol import websocket_protocol
from agora.web.service_app import ServiceApp
from tests.support.http_server import serving as http_serving
from tests.support.settings import make_settings
from tests.support.users import PASSWORD

WS_PATH = "/social/api/socials/ws"
TICKET_PATH = "/social/api/socials/connect-token"


def social_settings(tmp_path: Path, **overrides: object) -> Settings:
    """Test settings on an SQLite file (`migrated` makes it), plain-http cookies, short
    timers."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'agora.db'}"
    values: dict[str, object] = {
        "env": "dev",
        "database_url": url,
        "cookie_secure": False,
        "ws_ping_interval": 5.0,
        "ws_ping_timeout": 5.0,
        "ws_close_grace": 0.5,
        "presence_ttl": 3.0,
        "presence_recheck_interval": 1.0,
        # These tests are about the socket's mechanics between any two users; who may
        # reach whom is tests/security/test_social_reach.py's, on the default.
        "social_chat_reach": "anyone",
    }
    values.update(overrides)
    return make_settings(tmp_path, **values)


async def migrated(settings: Settings) -> Settings:
    await asyncio.to_thread(upgrade, settings.resolved_database_url)
    return settings


@contextlib.asynccontextmanager
async def serving(
    app: Any, settings: Settings, ws_max_size: int | None = None
) -> AsyncIterator[str]:
    """`http://127.0.0.1:<port>` of a real uvicorn server running `app` (lifespan
    included) with the socket settings `agora serve` gives uvicorn, its WebSocket
    protocol included (direct frame writes, aborts after the close grace)."""
    async with http_serving(
        app,
        force_exit=False,
        lifespan="on",
        ws_max_size=ws_max_size or settings.ws_max_message_bytes,
        ws_ping_interval=settings.ws_ping_interval,
        ws_ping_timeout=settings.ws_ping_timeout,
        ws_per_message_deflate=False,
        ws=websocket_protocol(
            abort_after=settings.ws_close_grace,
            user_timeout=settings.ws_ping_interval + settings.ws_ping_timeout,
        ),
        timeout_graceful_shutdown=2,
    ) as base_url:
        yield base_url


@dataclass
class Client:
    """One user: an access token, and sockets opened with fresh tickets."""

    base_url: str
    http: httpx.AsyncClient
    user_id: str
    login: str
    token: str

    @classmethod
    async def register(cls, base_url: str, http: httpx.AsyncClient) -> Client:
        login = f"user_{uuid.uuid4().hex[:10]}"
        created = await http.post(
            f"{base_url}/auth/api/register",
            json={
                "login": login,
                "password": PASSWORD,
                "email": f"{login}@example.com",
                "name": login,
            },
        )
        assert created.status_code == 201, created.text
        response = await http.post(
            f"{base_url}/auth/api/login", json={"login": login, "password": PASSWORD}
        )
        assert response.status_code == 200, response.text
        http.cookies.clear()  # Bearer only: cookies would bring CSRF rules into play
        return cls(base_url, http, created.json()["id"], login, response.json()["token"])

    async def ticket(self, base_url: str | None = None, method: str = "GET") -> str:
        response = await self.http.request(
            method,
            f"{base_url or self.base_url}{TICKET_PATH}",
            headers={"Authorization": f"Bearer {self.token}"},
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["success"] is True
        return str(body["token"])

    async def socket(self, base_url: str | None = None, **options: Any) -> ClientConnection:
        """An open socket past its welcome frame."""
        base = base_url or self.base_url
        ws = await open_socket(base, await self.ticket(base), **options)
        welcome = await receive(ws)
        assert welcome["type"] == "connected", welcome
        return ws


def ws_url(base_url: str, token: str | None) -> str:
    url = base_url.replace("http://", "ws://") + WS_PATH
    return url if token is None else f"{url}?token={token}"


async def open_socket(base_url: str, token: str | None, **options: Any) -> ClientConnection:
    options.setdefault("ping_interval", None)  # the server's pings are under test
    return await connect(ws_url(base_url, token), open_timeout=5, **options)


async def receive(ws: ClientConnection, timeout: float = 5.0) -> dict[str, Any]:
    frame = await asyncio.wait_for(ws.recv(), timeout)
    data = orjson.loads(frame)
    assert isinstance(data, dict)
    return data


async def send(ws: ClientConnection, frame: dict[str, Any]) -> None:
    await ws.send(orjson.dumps(frame).decode())


async def receive_until(ws: ClientConnection, kind: str, timeout: float = 5.0) -> dict[str, Any]:
    """The next frame of type `kind`, skipping others."""
    async with asyncio.timeout(timeout):
        while True:
            frame = await receive(ws, timeout)
            if frame["type"] == kind:
                return frame


async def closed_with(ws: ClientConnection, timeout: float = 5.0) -> tuple[int | None, str]:
    """Wait for the server's close; the close code and reason the client saw."""
    with contextlib.suppress(Exception):
        async with asyncio.timeout(timeout):
            async for _ in ws:
                pass
    await asyncio.wait_for(ws.wait_closed(), timeout)
    received = ws.protocol.close_rcvd
    return (received.code, received.reason) if received else (None, "")


async def refusal(base_url: str, token: str | None) -> tuple[dict[str, Any], int | None]:
    """The error frame and close code of a socket the server refuses."""
    ws = await open_socket(base_url, token)
    frame = await receive(ws)
    code, _reason = await closed_with(ws)
    return frame, code


class Server:
    def __init__(self, app: ProcessApp, base_url: str, http: httpx.AsyncClient) -> None:
        self.app = app
        self.base_url = base_url
        self.http = http

    @property
    def social(self) -> ServiceApp:
        return next(a for a in self.app.apps if a.context.name == "social")

    async def user(self) -> Client:
        return await Client.register(self.base_url, self.http)

    async def audit_events(self, event: str) -> list[dict[str, Any]]:
        async with self.app.backends.database.sessions() as session:
            rows = await session.scalars(select(AuditEvent).where(AuditEvent.event == event))
            return [orjson.loads(row.data) for row in rows.all()]


@contextlib.asynccontextmanager
async def start(settings: Settings, ws_max_size: int | None = None) -> AsyncIterator[Server]:
    """The embedded app (every service) under a real server."""
    app = create_embedded_app(await migrated(settings))
    async with (
        serving(app, settings, ws_max_size) as base_url,
        httpx.AsyncClient(timeout=10) as http,
    ):
        yield Server(app, base_url, http)


# --- two instances sharing Redis ---------------------------------------------------------


def redis_backends(settings: Settings, redis_url: str, namespace: str) -> Backends:
    return Backends(
        database=Database(settings.resolved_database_url),
        cache=RedisCache(redis_url, namespace=namespace),
        counters=RedisCounters(
            redis_url,
            namespace=namespace,
            flush_interval=settings.rate_limit_flush_interval,
            max_batch=settings.rate_limit_max_batch,
        ),
        bus=MemoryBus(),
        pubsub=RedisPubSub(redis_url, namespace=namespace),
        presence=RedisPresence(redis_url, namespace=namespace),
    )


@contextlib.asynccontextmanager
async def two_instances(
    settings: Settings,
    redis_url: str,
    namespace: str,
    alone: str,
) -> AsyncIterator[tuple[str, str, httpx.AsyncClient]]:
    """Instance A runs every service (auth, tickets), instance B only the service
    named `alone`; both on one database and one Redis namespace. Yields their base URLs and a
    client."""
    backends_a = redis_backends(settings, redis_url, namespace)
    backends_b = redis_backends(settings, redis_url, namespace)
    await backends_b.start()
    try:
        async with contextlib.AsyncExitStack() as stack:
            a = await stack.enter_async_context(
                serving(create_embedded_app(settings, backends_a), settings)
            )
            b = await stack.enter_async_context(
                serving(service_app(alone, settings, backends_b), settings)
            )
            http = await stack.enter_async_context(httpx.AsyncClient(timeout=10))
            yield a, b, http
    finally:
        await backends_a.close()
        await backends_b.close()
