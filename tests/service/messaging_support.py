"""Helpers of the messaging REST tests: people with tokens, conversations, uploads."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from agora.core.settings import Settings
from tests.support.settings import make_settings
from tests.support.users import register_and_login

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + bytes(range(256)) * 4


@dataclass(frozen=True)
class Person:
    id: str
    login: str
    token: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


async def sign_up(client: httpx.AsyncClient, count: int) -> list[Person]:
    people = []
    for _ in range(count):
        user, token = await register_and_login(client)
        people.append(Person(str(user["id"]), str(user["login"]), token))
    return people


def api_settings(tmp_path: Path, **overrides: object) -> Settings:
    """Small caps, so the limits can be reached in a test."""
    values: dict[str, object] = {
        "media_max_bytes": 100_000,
        "max_body_bytes": 16_384,
        "messaging_max_message_chars": 200,
        "messaging_group_max_title_chars": 40,
    }
    values.update(overrides)
    return make_settings(tmp_path, **values)


@asynccontextmanager
async def embedded_client(
    settings: Settings, database_url: str
) -> AsyncIterator[httpx.AsyncClient]:
    """The embedded app with `settings` (the `embedded` fixture, other settings)."""
    from agora.runtime.embedded import create_embedded_app

    app = create_embedded_app(settings.model_copy(update={"database_url": database_url}))
    async with app.running():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield client


async def direct(client: httpx.AsyncClient, me: Person, other: Person) -> dict[str, Any]:
    response = await client.post(
        "/api/v1/conversations", json={"kind": "direct", "user_id": other.id}, headers=me.auth
    )
    assert response.status_code in (200, 201), response.text
    return response.json()  # type: ignore[no-any-return]


async def group(
    client: httpx.AsyncClient, owner: Person, members: list[Person], title: str = "Team"
) -> dict[str, Any]:
    response = await client.post(
        "/api/v1/conversations",
        json={"kind": "group", "title": title, "members": [m.id for m in members]},
        headers=owner.auth,
    )
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


async def send(
    client: httpx.AsyncClient, me: Person, conversation_id: str, text: str
) -> dict[str, Any]:
    response = await client.post(
        f"/api/v1/conversations/{conversation_id}/messages",
        json={"client_id": uuid.uuid4().hex, "text": text},
        headers=me.auth,
    )
    assert response.status_code == 201, response.text
    return response.json()["message"]  # type: ignore[no-any-return]


async def upload(
    client: httpx.AsyncClient,
    me: Person,
    content: bytes,
    content_type: str = "image/png",
    filename: str = "photo.png",
) -> httpx.Response:
    return await client.post(
        "/api/v1/media", files={"file": (filename, content, content_type)}, headers=me.auth
    )


def unknown_id() -> str:
    return uuid.uuid4().hex
