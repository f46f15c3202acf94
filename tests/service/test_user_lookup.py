"""`GET /auth/api/users/by-login/{login}`: the exact-login lookup the web client uses to
start a direct conversation (issue 14). Exact login only, authenticated, no email."""

from __future__ import annotations

import httpx

from tests.support.users import register_and_login, unique_login

PATH = "/auth/api/users/by-login/"


async def test_an_exact_login_gives_the_public_card(embedded: httpx.AsyncClient) -> None:
    _, token = await register_and_login(embedded)
    bob, _ = await register_and_login(embedded, unique_login("bob"))
    auth = {"Authorization": f"Bearer {token}"}
    found = await embedded.get(f"{PATH}{bob['login']}", headers=auth)
    assert found.status_code == 200, found.text
    assert found.json() == {"id": bob["id"], "login": bob["login"], "name": bob["name"]}
    # Logins are unique without regard to case, so the lookup folds case too.
    upper = await embedded.get(f"{PATH}{str(bob['login']).upper()}", headers=auth)
    assert upper.json()["id"] == bob["id"]


async def test_no_prefix_search_and_no_email(embedded: httpx.AsyncClient) -> None:
    _, token = await register_and_login(embedded)
    bob, _ = await register_and_login(embedded, unique_login("bob"))
    auth = {"Authorization": f"Bearer {token}"}
    prefix = await embedded.get(f"{PATH}{str(bob['login'])[:-2]}", headers=auth)
    assert prefix.status_code == 404
    assert prefix.json() == {"error": "User not found"}
    wildcard = await embedded.get(f"{PATH}{str(bob['login'])[:-2]}%25", headers=auth)
    assert wildcard.status_code == 422
    found = await embedded.get(f"{PATH}{bob['login']}", headers=auth)
    assert "email" not in found.json() and "@" not in found.text


async def test_the_lookup_needs_a_token(embedded: httpx.AsyncClient) -> None:
    bob, _ = await register_and_login(embedded, unique_login("bob"))
    refused = await embedded.get(f"{PATH}{bob['login']}")
    assert refused.status_code == 401
