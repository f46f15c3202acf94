"""Users a test creates through the HTTP API, with logins no other test or run uses."""

from __future__ import annotations

import uuid

import httpx

PASSWORD = "correct horse battery"


def unique_login(prefix: str = "user") -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


async def register_and_login(
    client: httpx.AsyncClient, login: str | None = None, password: str = PASSWORD
) -> tuple[dict[str, object], str]:
    """Register a user and log in: (the created user, their access token)."""
    login = login or unique_login()
    created = await client.post(
        "/auth/api/register",
        json={"login": login, "password": password, "email": f"{login}@example.com", "name": login},
    )
    assert created.status_code == 201, created.text
    response = await client.post("/auth/api/login", json={"login": login, "password": password})
    assert response.status_code == 200, response.text
    return created.json(), response.json()["token"]
