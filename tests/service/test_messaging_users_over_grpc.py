"""Messaging finding its members through auth's gRPC UserService (`AGORA_USERS_GRPC_TARGET`),
as a deployment with separate processes does: the embedded app's own gRPC server on a
free port is the target, and the REST calls that check or describe members go through
it, messaging calling as a service (a user's own token would see only their contacts,
not the people they are about to add). With auth unreachable, they answer 503 with a clear error,
within the configured deadline x retries."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx

from agora.adapters.users_grpc import GrpcUserDirectory
from agora.ports.users import UNAVAILABLE_MESSAGE
from agora.runtime.embedded import create_embedded_app
from agora.runtime.process import ProcessApp
from agora.services.messaging.service.messages import MessagingService
from tests.support.net import free_port
from tests.support.settings import make_settings
from tests.support.users import register_and_login


@contextlib.asynccontextmanager
async def agora(
    tmp_path: Path, database_url: str, **overrides: object
) -> AsyncIterator[tuple[httpx.AsyncClient, ProcessApp]]:
    app = create_embedded_app(make_settings(tmp_path, database_url=database_url, **overrides))
    async with app.running():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            yield http, app


async def test_members_are_checked_and_described_over_grpc(
    tmp_path: Path, database_url: str
) -> None:
    port = free_port()
    target = f"127.0.0.1:{port}"
    async with agora(tmp_path, database_url, grpc_port=port, users_grpc_target=target) as (
        http,
        app,
    ):
        messaging = next(a for a in app.apps if a.context.name == "messaging")
        assert isinstance(messaging.provided(MessagingService).users, GrpcUserDirectory)
        alice, alice_token = await register_and_login(http)
        bob, _ = await register_and_login(http)
        headers = {"Authorization": f"Bearer {alice_token}"}
        created = await http.post(
            "/api/v1/conversations",
            json={"kind": "direct", "user_id": str(bob["id"])},
            headers=headers,
        )
        assert created.status_code == 201, created.text
        unknown = await http.post(
            "/api/v1/conversations", json={"kind": "direct", "user_id": "987654"}, headers=headers
        )
        assert unknown.status_code == 422, unknown.text
        described = await http.get(f"/api/v1/conversations/{created.json()['id']}", headers=headers)
        assert described.status_code == 200, described.text
        logins = {user["login"] for user in described.json()["users"]}
        assert logins == {alice["login"], bob["login"]}
        assert "email" not in described.text


async def test_messaging_calls_as_a_service_not_with_the_users_token(
    tmp_path: Path, database_url: str
) -> None:
    port = free_port()
    target = f"127.0.0.1:{port}"
    async with agora(tmp_path, database_url, grpc_port=port, users_grpc_target=target) as (
        http,
        app,
    ):
        messaging = next(a for a in app.apps if a.context.name == "messaging")
        directory = messaging.provided(MessagingService).users
        _, alice_token = await register_and_login(http)
        carol, _ = await register_and_login(http)
        carol_id = str(carol["id"])
        # Messaging's directory finds carol, not yet alice's contact...
        assert set(await directory.get_users([carol_id], alice_token)) == {carol_id}
        # ...which alice's own token would not: auth shows a user their contacts only.
        as_alice = GrpcUserDirectory(target)
        try:
            assert await as_alice.get_users([carol_id], alice_token) == {}
        finally:
            await as_alice.close()
        group = await http.post(
            "/api/v1/conversations",
            json={"kind": "group", "title": "Team", "members": [carol_id]},
            headers={"Authorization": f"Bearer {alice_token}"},
        )
        assert group.status_code == 201, group.text


async def test_auth_down_is_a_clear_503_within_the_deadline(
    tmp_path: Path, database_url: str
) -> None:
    dead = f"127.0.0.1:{free_port()}"
    async with agora(
        tmp_path,
        database_url,
        users_grpc_target=dead,
        users_grpc_deadline=0.3,
        users_grpc_retries=2,
    ) as (http, _app):
        _, token = await register_and_login(http)
        bob, _ = await register_and_login(http)
        started = time.monotonic()
        response = await http.post(
            "/api/v1/conversations",
            json={"kind": "direct", "user_id": str(bob["id"])},
            headers={"Authorization": f"Bearer {token}"},
        )
        elapsed = time.monotonic() - started
    assert response.status_code == 503, response.text
    assert response.json()["error"] == UNAVAILABLE_MESSAGE  # where auth lives is not told
    assert elapsed <= 0.3 * 2 + 0.5
