"""`agora serve` as a user runs it: the README walk-through over real HTTP, restarts,
refusals at start, and the same process on PostgreSQL."""

from __future__ import annotations

import stat
import time
from pathlib import Path

import httpx
import jwt
import pytest

from tests.e2e.agora_command import Server, agora_env, login, register, run_agora
from tests.support.users import PASSWORD, unique_login

pytestmark = pytest.mark.e2e

FORGERY_KEY = "not-the-server-secret-not-the-server-secret"


def access_claims(user_id: str, login_name: str, **overrides: object) -> dict[str, object]:
    now = int(time.time())
    claims: dict[str, object] = {
        "sub": user_id, "user_id": user_id, "login": login_name, "iss": "agora-auth",
        "aud": "agora", "iat": now, "nbf": now, "exp": now + 600, "jti": "e2e", "typ": "access",
    }  # fmt: skip
    claims.update(overrides)
    return claims


def assert_unauthorized(response: httpx.Response, message: str) -> None:
    assert response.status_code == 401, response.text
    assert response.json() == {"error": message}
    assert response.headers["www-authenticate"].startswith("Bearer")


def test_readme_walkthrough(dev_server: Server, http: httpx.Client) -> None:
    user = register(http)
    assert "password" not in user

    response = http.post("/auth/api/login", json={"login": user["login"], "password": PASSWORD})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 3600
    assert body["user"] == user
    token = body["token"]
    cookie = response.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Max-Age=3600" in cookie
    assert "Secure" not in cookie  # switched off by AGORA_COOKIE_SECURE=false, for http

    # me with Bearer, from a client that has no cookie
    with httpx.Client(base_url=dev_server.base_url) as stranger:
        me = stranger.get("/auth/api/me", headers={"Authorization": f"Bearer {token}"})
        assert me.status_code == 200 and me.json() == user
        assert_unauthorized(stranger.get("/auth/api/me"), "Token required")

    # me with the cookie: the jar kept what Set-Cookie said and sends it back
    assert http.cookies.get("auth_token") == token
    me = http.get("/auth/api/me")
    assert me.status_code == 200 and me.json()["id"] == user["id"]

    # refused tokens
    secret = (dev_server.data_dir / "jwt_secret").read_text()
    now = int(time.time())
    expired = jwt.encode(
        access_claims(user["id"], user["login"], iat=now - 7200, nbf=now - 7200, exp=now - 3600),
        secret,
    )
    forged = jwt.encode(access_claims(user["id"], user["login"]), FORGERY_KEY)
    with httpx.Client(base_url=dev_server.base_url) as stranger:
        for bad, message in ((expired, "Token expired"), (forged, "Invalid token")):
            response = stranger.get("/auth/api/me", headers={"Authorization": f"Bearer {bad}"})
            assert_unauthorized(response, message)
            with httpx.Client(base_url=dev_server.base_url, cookies={"auth_token": bad}) as jar:
                assert_unauthorized(jar.get("/auth/api/me"), message)
    # the same claims signed with the server's secret are fine: the refusal above was the key
    good = jwt.encode(access_claims(user["id"], user["login"]), secret)
    assert http.get("/auth/api/me", headers={"Authorization": f"Bearer {good}"}).is_success

    # logout expires the cookie in the jar
    response = http.post("/auth/api/logout", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200 and response.json() == {"success": True}
    assert "Max-Age=0" in response.headers["set-cookie"]
    assert "auth_token" not in http.cookies
    assert_unauthorized(http.get("/auth/api/me"), "Token required")


def test_login_alias_accepts_a_form(http: httpx.Client) -> None:
    user = register(http)
    response = http.post("/login", data={"username": user["login"], "password": PASSWORD})
    assert response.status_code == 200, response.text
    assert response.json()["user"]["id"] == user["id"]
    assert http.get("/auth/api/me").json()["login"] == user["login"]  # cookie set by the alias


def test_bad_requests_get_json_errors(http: httpx.Client) -> None:
    cases = [
        http.post("/auth/api/login", json={"login": "nobody", "password": "whatever"}),
        http.post("/login", data={"username": "nobody"}),
        http.post("/auth/api/login", content=b"{", headers={"content-type": "application/json"}),
        http.post("/auth/api/register", json={"login": "x"}),
        http.get("/no/such/path"),
    ]
    assert [r.status_code for r in cases] == [401, 422, 400, 422, 404]
    assert all("error" in r.json() for r in cases)


def test_token_survives_a_restart_on_the_same_data_dir(tmp_path: Path) -> None:
    env = agora_env(tmp_path)
    first = Server(tmp_path, env).start()
    try:
        with httpx.Client(base_url=first.base_url) as client:
            user = register(client)
            token = login(client, user["login"])
    finally:
        first.stop_cleanly()

    secret_file = tmp_path / "jwt_secret"
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    secret = secret_file.read_text()

    # Restarted as the auth service alone: same secret, same database, same answers.
    second = Server(tmp_path, env, args=("auth",)).start()
    try:
        headers = {"Authorization": f"Bearer {token}"}
        response = httpx.get(f"{second.base_url}/auth/api/me", headers=headers)
        assert response.status_code == 200 and response.json() == user
    finally:
        second.stop_cleanly()
    assert secret_file.read_text() == secret


def test_prod_with_a_short_secret_refuses_to_start(tmp_path: Path) -> None:
    env = agora_env(tmp_path, AGORA_ENV="prod", AGORA_JWT_SECRET="too-short",
                    AGORA_COOKIE_SECURE="true")  # fmt: skip
    result = run_agora("serve", "--port", "1", env=env)
    assert result.returncode != 0
    assert "AGORA_JWT_SECRET must be at least 32 bytes outside dev" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "jwt_secret").exists() and not (tmp_path / "agora.db").exists()


@pytest.mark.postgres
def test_same_process_on_postgresql(throwaway_postgres: str, tmp_path: Path) -> None:
    env = agora_env(tmp_path, AGORA_DATABASE_URL=throwaway_postgres)
    upgraded = run_agora("db", "upgrade", env=env)
    assert upgraded.returncode == 0, upgraded.stderr
    assert "database is at the latest revision" in upgraded.stdout

    server = Server(tmp_path, env).start()
    try:
        with httpx.Client(base_url=server.base_url) as client:
            user = register(client, unique_login("PgUser"))
            token = login(client, user["login"].lower())  # logins are case-insensitive
            me = client.get("/auth/api/me", headers={"Authorization": f"Bearer {token}"})
            assert me.status_code == 200 and me.json() == user
            assert client.get("/auth/api/me").status_code == 200  # cookie jar
            taken = client.post(
                "/auth/api/register",
                json={"login": user["login"].upper(), "password": PASSWORD,
                      "email": "other@example.com", "name": "N"},
            )  # fmt: skip
            assert taken.status_code == 409
    finally:
        server.stop_cleanly()
    assert not (tmp_path / "agora.db").exists(), "nothing went to the embedded database"
