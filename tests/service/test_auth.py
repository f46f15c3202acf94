"""The auth service through HTTP, in process, on SQLite and PostgreSQL."""

from __future__ import annotations

import time

import httpx
import jwt

from tests.support.settings import TEST_SECRET
from tests.support.users import PASSWORD, register_and_login, unique_login


def registration(login: str, **overrides: str) -> dict[str, str]:
    body = {"login": login, "password": PASSWORD, "email": f"{login}@example.com", "name": "N"}
    body.update(overrides)
    return body


async def test_register_returns_user_without_hash(embedded: httpx.AsyncClient) -> None:
    login = unique_login()
    response = await embedded.post("/auth/api/register", json=registration(login))
    assert response.status_code == 201
    body = response.json()
    assert body["login"] == login and body["id"].isdigit()
    assert "password" not in response.text and "argon2" not in response.text
    assert body["created_at"].endswith("Z") or "+00:00" in body["created_at"]


async def test_login_is_unique_without_regard_to_case(embedded: httpx.AsyncClient) -> None:
    login = unique_login("Case")
    assert (await embedded.post("/auth/api/register", json=registration(login))).status_code == 201
    again = await embedded.post(
        "/auth/api/register", json=registration(login.upper(), email=f"other{login}@example.com")
    )
    assert again.status_code == 409
    assert again.json() == {"error": "Login or email already taken"}


async def test_taken_email_is_a_conflict(embedded: httpx.AsyncClient) -> None:
    login = unique_login()
    await embedded.post("/auth/api/register", json=registration(login))
    same_email = registration(unique_login(), email=f"{login.upper()}@example.com")
    again = await embedded.post("/auth/api/register", json=same_email)
    assert again.status_code == 409
    # The same answer as a taken login: which accounts exist is not confirmed.
    assert again.json() == {"error": "Login or email already taken"}


async def test_register_reports_each_bad_field(embedded: httpx.AsyncClient) -> None:
    response = await embedded.post(
        "/auth/api/register",
        json={"login": "a!", "password": "short", "email": "not-an-email", "name": ""},
    )
    assert response.status_code == 422
    assert set(response.json()["fields"]) == {"login", "password", "email", "name"}


async def test_login_issues_token_and_strict_cookie(embedded: httpx.AsyncClient) -> None:
    user, _ = await register_and_login(embedded)
    response = await embedded.post(
        "/auth/api/login", json={"login": user["login"], "password": PASSWORD}
    )
    body = response.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 3600
    assert body["user"]["id"] == user["id"]
    cookie = response.headers["set-cookie"]
    for attribute in (
        "auth_token=",
        "HttpOnly",
        "SameSite=strict",
        "Secure",
        "Path=/",
        "Max-Age=3600",
    ):
        assert attribute in cookie
    assert response.headers["cache-control"] == "no-store"
    claims = jwt.decode(body["token"], TEST_SECRET, algorithms=["HS256"], audience="agora")
    assert claims["sub"] == claims["user_id"] == user["id"]
    assert claims["login"] == user["login"] and claims["typ"] == "access"
    assert claims["exp"] == claims["iat"] + 3600 and claims["nbf"] == claims["iat"]
    assert claims["iss"] == "agora-auth" and len(claims["jti"]) == 32


async def test_login_accepts_username_form_and_alias(embedded: httpx.AsyncClient) -> None:
    user, _ = await register_and_login(embedded)
    response = await embedded.post("/login", data={"username": user["login"], "password": PASSWORD})
    assert response.status_code == 200
    assert response.json()["user"]["login"] == user["login"]


async def test_wrong_password_and_unknown_login_look_the_same(
    embedded: httpx.AsyncClient,
) -> None:
    user, _ = await register_and_login(embedded)
    wrong = await embedded.post("/auth/api/login", json={"login": user["login"], "password": "x"})
    unknown = await embedded.post(
        "/auth/api/login", json={"login": unique_login(), "password": "x"}
    )
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json() == unknown.json() == {"error": "Invalid credentials"}


async def test_malformed_login_bodies_are_client_errors(embedded: httpx.AsyncClient) -> None:
    cases = [
        {"content": b"{not json", "headers": {"content-type": "application/json"}},
        {"content": b"[1, 2]", "headers": {"content-type": "application/json"}},
        {"json": {"login": "someone"}},
        {"json": {"login": 5, "password": None}},
        {"content": b"\xff\xfe", "headers": {"content-type": "application/json"}},
    ]
    for case in cases:
        response = await embedded.post("/auth/api/login", **case)
        assert response.status_code in (400, 422), (case, response.text)
        assert "error" in response.json()


async def test_me_with_bearer_and_with_cookie(embedded: httpx.AsyncClient) -> None:
    user, token = await register_and_login(embedded)
    by_header = await embedded.get("/auth/api/me", headers={"Authorization": f"Bearer {token}"})
    assert by_header.status_code == 200 and by_header.json()["id"] == user["id"]
    embedded.cookies.clear()
    for cookie in ("auth_token", "jwt_token"):
        response = await embedded.get("/auth/api/me", headers={"Cookie": f"{cookie}={token}"})
        assert response.status_code == 200, cookie
        assert response.json()["login"] == user["login"]


async def test_me_refuses_missing_expired_and_forged_tokens(embedded: httpx.AsyncClient) -> None:
    user, token = await register_and_login(embedded)
    embedded.cookies.clear()
    now = int(time.time())
    base = {
        "sub": user["id"],
        "user_id": user["id"],
        "iss": "agora-auth",
        "aud": "agora",
        "iat": now,
        "nbf": now,
        "exp": now + 600,
        "jti": "x",
        "typ": "access",
    }
    expired = jwt.encode(
        {**base, "iat": now - 7200, "nbf": now - 7200, "exp": now - 3600}, TEST_SECRET
    )
    forged = jwt.encode(base, "another-secret-another-secret-another-secret")
    cases = {
        "": "Token required",
        expired: "Token expired",
        forged: "Invalid token",
        token[:-4] + "AAAA": "Invalid token",
        "not.a.jwt": "Invalid token",
        jwt.encode({**base, "aud": "elsewhere"}, TEST_SECRET): "Invalid token",
        jwt.encode({**base, "iss": "elsewhere"}, TEST_SECRET): "Invalid token",
        jwt.encode({**base, "nbf": now + 600}, TEST_SECRET): "Invalid token",
        jwt.encode({**base, "typ": "ws-connect"}, TEST_SECRET): "Invalid token type",
        jwt.encode({k: v for k, v in base.items() if k != "exp"}, TEST_SECRET): "Invalid token",
        jwt.encode(base, TEST_SECRET, algorithm="HS512"): "Invalid token",
    }
    for bad, message in cases.items():
        headers = {"Authorization": f"Bearer {bad}"} if bad else {}
        response = await embedded.get("/auth/api/me", headers=headers)
        assert response.status_code == 401, bad
        assert response.json() == {"error": message}, bad
        assert response.headers["www-authenticate"].startswith("Bearer")


async def test_logout_expires_the_cookie(embedded: httpx.AsyncClient) -> None:
    _, token = await register_and_login(embedded)
    response = await embedded.post("/auth/api/logout", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200
    assert 'auth_token=""' in response.headers["set-cookie"]
    assert "Max-Age=0" in response.headers["set-cookie"]


async def test_unknown_path_is_json_404(embedded: httpx.AsyncClient) -> None:
    response = await embedded.get("/nowhere")
    assert response.status_code == 404 and response.json() == {"error": "Not found"}
