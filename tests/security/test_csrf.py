"""Cookie sessions and CSRF (double submit bound to the session): a state-changing
request authenticated by the cookie needs `X-CSRF-Token` equal to the `csrf_token`
cookie of the same session, else 403; safe methods and Bearer requests are exempt.

The Cookie header is written by hand, as the browser would send it: the test client's
jar keeps Secure cookies off plain http.
"""

from __future__ import annotations

import base64
import hashlib
from http.cookies import SimpleCookie
from pathlib import Path

import httpx
import jwt
import pytest

from agora.web.csrf import csrf_token_for, derive_csrf_key
from tests.security.support import Session, new_session, running_agora, wait_active
from tests.support.settings import TEST_SECRET

CSRF_REFUSED = (403, {"error": "CSRF token missing or invalid"})
NEW_POST = {"title": "Hello", "body": "from a form"}


def with_csrf(session: Session, header: str | None, cookie: str | None = None) -> dict[str, str]:
    headers = session.cookies(cookie)
    if header is not None:
        headers["X-CSRF-Token"] = header
    return headers


def forged_variants(victim: Session, attacker: Session) -> dict[str, dict[str, str]]:
    """Every way to send the victim's auth cookie without the victim's CSRF token."""
    planted = "attacker-chosen-value"
    return {
        "no header": with_csrf(victim, None),
        "empty header": with_csrf(victim, ""),
        "wrong header": with_csrf(victim, "not-the-token"),
        "header without the csrf cookie": {
            "Cookie": f"auth_token={victim.token}",
            "X-CSRF-Token": victim.csrf,
        },
        # Header and cookie agree, but belong to another session (a cookie planted by a
        # sibling subdomain, or the attacker's own login).
        "another session's csrf": with_csrf(victim, attacker.csrf, attacker.csrf),
        "planted pair": with_csrf(victim, planted, planted),
    }


async def test_login_hands_out_a_readable_csrf_cookie_bound_to_the_session(
    embedded: httpx.AsyncClient,
) -> None:
    session = await new_session(embedded)
    response = await embedded.post(
        "/auth/api/login", json={"login": session.login, "password": "correct horse battery"}
    )
    body = response.json()
    jar = SimpleCookie()
    for line in response.headers.get_list("set-cookie"):
        jar.load(line)
    assert jar["csrf_token"].value == body["csrf_token"]
    assert not jar["csrf_token"]["httponly"]  # the page must read it
    assert jar["auth_token"]["httponly"] and jar["auth_token"]["samesite"] == "strict"
    jti = jwt.decode(jar["auth_token"].value, options={"verify_signature": False})["jti"]
    assert body["csrf_token"] == csrf_token_for(jti, derive_csrf_key(TEST_SECRET))


def unkeyed_csrf(jti: str) -> str:
    """What the token used to be: a hash anyone knowing the jti could compute."""
    digest = hashlib.sha256(b"agora-csrf:" + jti.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def jti_of(token: str) -> str:
    return str(jwt.decode(token, options={"verify_signature": False})["jti"])


async def test_the_csrf_token_is_keyed_with_a_server_secret(
    embedded: httpx.AsyncClient,
) -> None:
    """Whoever learns a session's jti (a logged ticket carries it as `sid`) still cannot
    make its CSRF token: computed without the key, it is refused."""
    victim = await new_session(embedded)
    forged = unkeyed_csrf(jti_of(victim.token))
    assert forged != victim.csrf
    response = await embedded.post("/auth/api/logout", headers=with_csrf(victim, forged))
    assert (response.status_code, response.json()) == CSRF_REFUSED
    # Keyed with another secret, the value differs too.
    assert csrf_token_for(jti_of(victim.token), derive_csrf_key("x" * 48)) != victim.csrf


async def test_a_dedicated_csrf_secret_keys_the_token(tmp_path: Path) -> None:
    csrf_secret = "dedicated-csrf-secret-0123456789-abcdefghijklmnop"
    async with running_agora(tmp_path, csrf_secret=csrf_secret) as agora:
        session = await new_session(agora.client)
        assert session.csrf == csrf_token_for(jti_of(session.token), derive_csrf_key(csrf_secret))
        assert session.csrf != csrf_token_for(jti_of(session.token), derive_csrf_key(TEST_SECRET))
        response = await agora.client.post(
            "/auth/api/logout", headers=with_csrf(session, session.csrf)
        )
        assert response.status_code == 200, response.text


async def test_cookie_authenticated_logout_needs_the_sessions_csrf_token(
    embedded: httpx.AsyncClient,
) -> None:
    victim, attacker = await new_session(embedded), await new_session(embedded)
    for name, headers in forged_variants(victim, attacker).items():
        response = await embedded.post("/auth/api/logout", headers=headers)
        assert (response.status_code, response.json()) == CSRF_REFUSED, name
    # none of them logged the victim out
    assert (await embedded.get("/auth/api/me", headers=victim.bearer)).status_code == 200

    response = await embedded.post("/auth/api/logout", headers=with_csrf(victim, victim.csrf))
    assert response.status_code == 200, response.text
    assert (await embedded.get("/auth/api/me", headers=victim.bearer)).status_code == 401


async def test_cookie_authenticated_post_on_the_resource_needs_the_csrf_token(
    embedded: httpx.AsyncClient,
) -> None:
    victim, attacker = await new_session(embedded), await new_session(embedded)
    await wait_active(embedded, victim)
    for name, headers in forged_variants(victim, attacker).items():
        response = await embedded.post("/api/publications", json=NEW_POST, headers=headers)
        assert (response.status_code, response.json()) == CSRF_REFUSED, name
    listed = await embedded.get("/api/publications", headers=victim.bearer)
    assert listed.json()["publications"] == []  # nothing was created

    created = await embedded.post(
        "/api/publications", json=NEW_POST, headers=with_csrf(victim, victim.csrf)
    )
    assert created.status_code == 201, created.text


@pytest.mark.parametrize("cookie", ["auth_token", "jwt_token"])
async def test_safe_methods_need_the_cookie_alone(embedded: httpx.AsyncClient, cookie: str) -> None:
    session = await new_session(embedded)
    await wait_active(embedded, session)
    headers = {"Cookie": f"{cookie}={session.token}"}
    for path in ("/auth/api/me", "/api/publications"):
        assert (await embedded.get(path, headers=headers)).status_code == 200
    # the legacy cookie is no way around the check
    refused = await embedded.post("/api/publications", json=NEW_POST, headers=headers)
    assert (refused.status_code, refused.json()) == CSRF_REFUSED


async def test_bearer_requests_are_exempt(embedded: httpx.AsyncClient) -> None:
    session = await new_session(embedded)
    await wait_active(embedded, session)
    created = await embedded.post("/api/publications", json=NEW_POST, headers=session.bearer)
    assert created.status_code == 201, created.text
    out = await embedded.post("/auth/api/logout", headers=session.bearer)
    assert out.status_code == 200, out.text
