"""`agora users create`: an account made from the command line logs in over HTTP."""

from __future__ import annotations

import json
import subprocess

import httpx
import pytest

from tests.e2e.agora_command import Server, run_agora
from tests.support.users import unique_login

pytestmark = pytest.mark.e2e


def create_user(
    server: Server, login: str, email: str, password: str = "a strong password\n"
) -> subprocess.CompletedProcess[str]:
    return run_agora(
        "users", "create", "--login", login, "--email", email, "--name", f"Name {login}",
        env=server.env, stdin=password,
    )  # fmt: skip


def test_created_user_logs_in_over_http(dev_server: Server, http: httpx.Client) -> None:
    login = unique_login("cli")
    result = create_user(dev_server, login, f"{login}@example.com", " spaces kept \n")
    assert result.returncode == 0, result.stderr
    created = json.loads(result.stdout)
    assert created["login"] == login and created["id"].isdigit()
    assert "password" not in result.stdout and "argon2" not in result.stdout

    response = http.post("/auth/api/login", json={"login": login, "password": " spaces kept "})
    assert response.status_code == 200, response.text
    assert response.json()["user"]["id"] == created["id"]
    assert http.get("/auth/api/me").json()["name"] == f"Name {login}"
    wrong = http.post("/auth/api/login", json={"login": login, "password": "spaces kept"})
    assert wrong.status_code == 401


def test_duplicate_login_is_refused_clearly(dev_server: Server) -> None:
    login = unique_login("dup")
    assert create_user(dev_server, login, f"{login}@example.com").returncode == 0
    again = create_user(dev_server, login.upper(), f"other-{login}@example.com")
    assert again.returncode != 0
    assert "Login or email already taken" in again.stderr
    assert "Traceback" not in again.stderr and again.stdout == ""


def test_bad_email_is_refused(dev_server: Server) -> None:
    result = create_user(dev_server, unique_login("mail"), "not-an-email")
    assert result.returncode != 0
    assert "email:" in result.stderr and "Traceback" not in result.stderr
