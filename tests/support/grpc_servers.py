"""Real gRPC servers on ephemeral ports, and real clients (generated stubs over
`grpc.aio.insecure_channel`), for the gRPC tests.

`running_auth(settings)` is auth alone (its app's lifespan, its servicers);
`running_embedded(settings)` is every service in one process. Both serve the servicers
the apps declare in `app.grpc_servicers` (what `agora serve` hosts) on
127.0.0.1:<ephemeral>, and an HTTP client on the same apps to register and log in.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
import httpx

from agora.core.settings import Settings
from agora.grpc.server import GrpcServer
from agora.runtime.process import registrars_of
from agora.runtime.registry import build_app


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


def trailing(error: grpc.aio.AioRpcError) -> dict[str, str]:
    return {key: str(value) for key, value in error.trailing_metadata() or ()}


@dataclass
class Running:
    http: httpx.AsyncClient
    server: GrpcServer
    channel: grpc.aio.Channel
    apps: Sequence[Any]

    def app(self, name: str) -> Any:
        return next(app for app in self.apps if app.context.name == name)


@contextlib.asynccontextmanager
async def _serving(asgi_app: Any, apps: Sequence[Any]) -> AsyncIterator[Running]:
    server = GrpcServer("127.0.0.1", 0, registrars_of(apps))
    await server.start()
    try:
        transport = httpx.ASGITransport(app=asgi_app)
        async with (
            httpx.AsyncClient(transport=transport, base_url="http://testserver") as http,
            grpc.aio.insecure_channel(server.target) as channel,
        ):
            yield Running(http, server, channel, apps)
    finally:
        await server.stop()


@contextlib.asynccontextmanager
async def running_auth(settings: Settings) -> AsyncIterator[Running]:
    app = build_app("auth", settings)
    async with app.running(), _serving(app, app.apps) as running:
        yield running


@contextlib.asynccontextmanager
async def running_embedded(settings: Settings) -> AsyncIterator[Running]:
    from agora.runtime.embedded import create_embedded_app

    app = create_embedded_app(settings)
    async with app.running(), _serving(app, app.apps) as running:
        yield running
