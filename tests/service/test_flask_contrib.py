"""`agora.contrib.flask.token_required` on a real Flask app, with real auth service tokens."""

from __future__ import annotations

import logging
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from typing import Any

import httpx
import jwt
import pytest
from flask import Flask, g

from agora.contrib.flask import EXTENSION, init_app, token_required
from agora.security.tokens import TokenService
from agora.web.csrf import csrf_token_for, derive_csrf_key
from tests.support.settings import TEST_SECRET
from tests.support.users import register_and_login

ISSUER, AUDIENCE = "agora-auth", "agora"


def make_app(**config: Any) -> Flask:
    app = Flask("flask-contrib-test")
    # Revocation is checked by default; these tests are about the token checks, and
    # tests/service/test_flask_revocation.py about revocation.
    app.config.update({"AGORA_JWT_SECRET": TEST_SECRET, "AGORA_REVOCATION_CHECK": False, **config})

    @app.get("/api/whoami")
    @token_required
    def whoami() -> dict[str, Any]:
        user = g.current_user
        return {"user_id": user.user_id, "login": user.login, "jti": user.jti, "exp": user.exp}

    @app.post("/api/things")
    @token_required
    def create_thing() -> tuple[dict[str, str], int]:
        return {"owner": g.current_user.user_id}, 201

    @app.get("/public")
    def public() -> dict[str, str]:
        return {"ok": "yes"}

    return app


def tokens(secret: str = TEST_SECRET) -> TokenService:
    return TokenService(secret, issuer=ISSUER, audience=AUDIENCE)


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    values: dict[str, Any] = {
        "sub": "42",
        "user_id": "42",
        "login": "alice",
        "iss": ISSUER,
        "aud": AUDIENCE,
        "iat": now,
        "nbf": now,
        "exp": now + 600,
        "jti": "j" * 32,
        "typ": "access",
    }
    values.update(overrides)
    return values


def signed(secret: str = TEST_SECRET, algorithm: str = "HS256", **overrides: Any) -> str:
    return jwt.encode(claims(**overrides), secret, algorithm=algorithm)


def assert_refused(response: Any, message: str = "Invalid token") -> None:
    assert response.status_code == 401
    assert response.is_json and response.get_json() == {"error": message}
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_token_from_the_auth_token_service_sets_current_user() -> None:
    issued = tokens().issue_access("42", "alice")
    response = (
        make_app()
        .test_client()
        .get("/api/whoami", headers={"Authorization": f"Bearer {issued.token}"})
    )
    assert response.status_code == 200
    assert response.get_json() == {
        "user_id": "42",
        "login": "alice",
        "jti": issued.jti,
        "exp": issued.expires_at,
    }


async def test_token_from_a_real_login_is_accepted(embedded: httpx.AsyncClient) -> None:
    user, token = await register_and_login(embedded)
    client = make_app().test_client()
    response = client.get("/api/whoami", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200
    assert response.get_json()["user_id"] == user["id"]
    assert response.get_json()["login"] == user["login"]


@pytest.mark.parametrize("cookie", ["auth_token", "jwt_token"])
def test_token_is_read_from_either_cookie(cookie: str) -> None:
    client = make_app().test_client()
    client.set_cookie(cookie, tokens().issue_access("7", "bob").token)
    response = client.get("/api/whoami")
    assert response.status_code == 200 and response.get_json()["user_id"] == "7"


def test_bearer_header_wins_over_cookie() -> None:
    client = make_app().test_client()
    client.set_cookie("auth_token", tokens().issue_access("7", "cookie").token)
    header = tokens().issue_access("8", "header").token
    response = client.get("/api/whoami", headers={"Authorization": f"Bearer {header}"})
    assert response.get_json()["login"] == "header"


def test_auth_token_cookie_wins_over_jwt_token() -> None:
    client = make_app().test_client()
    client.set_cookie("jwt_token", "garbage")
    client.set_cookie("auth_token", tokens().issue_access("9", "new").token)
    assert client.get("/api/whoami").get_json()["login"] == "new"


def test_missing_token_is_401() -> None:
    client = make_app().test_client()
    assert_refused(client.get("/api/whoami"), "Token required")
    assert_refused(
        client.get("/api/whoami", headers={"Authorization": "Bearer "}), "Token required"
    )
    assert client.get("/public").status_code == 200


def hs512_with_the_right_secret() -> str:
    with warnings.catch_warnings():  # PyJWT warns that the key is short for SHA-512
        warnings.simplefilter("ignore")
        return signed(algorithm="HS512")


# Made when the test runs, not at collection: a long suite would see them expire.
BAD_TOKENS: dict[str, Callable[[], tuple[str, str]]] = {
    "expired": lambda: (signed(iat=1000, nbf=1000, exp=2000), "Token expired"),
    "forged": lambda: (
        signed(secret="another-secret-of-sufficient-length-0123456789"),
        "Invalid token",
    ),
    "wrong_audience": lambda: (signed(aud="elsewhere"), "Invalid token"),
    "wrong_issuer": lambda: (signed(iss="someone-else"), "Invalid token"),
    "wrong_type": lambda: (signed(typ="ws-connect"), "Invalid token type"),
    "not_yet_valid": lambda: (signed(nbf=int(time.time()) + 3600), "Invalid token"),
    "alg_none": lambda: (jwt.encode(claims(), None, algorithm="none"), "Invalid token"),
    "other_hmac_alg": lambda: (hs512_with_the_right_secret(), "Invalid token"),
    "no_jti": lambda: (
        jwt.encode({k: v for k, v in claims().items() if k != "jti"}, TEST_SECRET),
        "Invalid token",
    ),
    "malformed": lambda: ("not.a.jwt", "Invalid token"),
    "huge": lambda: ("a" * 10_000, "Invalid token"),
}


@pytest.mark.filterwarnings("ignore:The 'auth_token' cookie is too large")
@pytest.mark.parametrize("case", sorted(BAD_TOKENS))
def test_bad_token_is_401_json_never_500(case: str) -> None:
    token, message = BAD_TOKENS[case]()
    client = make_app().test_client()
    assert_refused(client.get("/api/whoami", headers={"Authorization": f"Bearer {token}"}), message)
    client.set_cookie("auth_token", token)
    assert_refused(client.get("/api/whoami"), message)


def test_refusal_is_an_audit_event(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="agora.audit"):
        make_app().test_client().get("/api/whoami", headers={"Authorization": "Bearer x.y.z"})
    entries = [r.audit for r in caplog.records if hasattr(r, "audit")]  # type: ignore[attr-defined]
    assert entries and entries[-1]["event"] == "auth.rejected"
    assert entries[-1]["reason"] == "malformed" and entries[-1]["path"] == "/api/whoami"


def test_issuer_audience_and_leeway_come_from_config() -> None:
    app = make_app(AGORA_JWT_ISSUER="corp-auth", AGORA_JWT_AUDIENCE="corp", AGORA_TOKEN_LEEWAY=0)
    client = app.test_client()
    own = signed(iss="corp-auth", aud="corp")
    assert client.get("/api/whoami", headers={"Authorization": f"Bearer {own}"}).status_code == 200
    default = tokens().issue_access("1", "a").token
    assert_refused(client.get("/api/whoami", headers={"Authorization": f"Bearer {default}"}))
    guard = app.extensions[EXTENSION]
    assert guard.tokens.issuer == "corp-auth" and guard.tokens.leeway == 0


def test_token_service_is_built_once_per_app() -> None:
    app = make_app()
    client = app.test_client()
    token = tokens().issue_access("1", "a").token
    client.get("/api/whoami", headers={"Authorization": f"Bearer {token}"})
    first = app.extensions[EXTENSION].tokens
    client.get("/api/whoami", headers={"Authorization": f"Bearer {token}"})
    assert app.extensions[EXTENSION].tokens is first


def test_explicit_token_service_is_used() -> None:
    app = make_app(AGORA_JWT_SECRET="")
    init_app(app, tokens=TokenService("x" * 40, issuer="i", audience="a"))
    token = TokenService("x" * 40, issuer="i", audience="a").issue_access("5", "e").token
    response = app.test_client().get("/api/whoami", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200 and response.get_json()["user_id"] == "5"


def test_revocation_check_refuses_revoked_tokens() -> None:
    app = make_app(AGORA_REVOCATION_CHECK=True)
    revoked: set[str] = set()
    init_app(app, is_revoked=lambda identity: identity.jti in revoked)
    issued = tokens().issue_access("3", "c")
    client = app.test_client()
    headers = {"Authorization": f"Bearer {issued.token}"}
    assert client.get("/api/whoami", headers=headers).status_code == 200
    revoked.add(issued.jti)
    assert_refused(client.get("/api/whoami", headers=headers), "Token revoked")


@pytest.mark.parametrize("secret", [None, "", "too-short"])
def test_missing_or_short_secret_fails_at_init(secret: str | None) -> None:
    app = Flask("no-secret")
    if secret is not None:
        app.config["AGORA_JWT_SECRET"] = secret
    with pytest.raises(RuntimeError, match="AGORA_JWT_SECRET"):
        init_app(app)


def test_agora_imports_without_flask() -> None:
    code = (
        "import sys; sys.modules['flask'] = None\n"  # makes `import flask` fail
        "import agora, agora.security.tokens, agora.web.guard, agora.runtime.embedded, agora.cli\n"
        "try:\n    import agora.contrib.flask\nexcept ImportError as e:\n    print(e)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "pip install 'agora[flask]'" in result.stdout


def test_cookie_post_needs_the_csrf_token() -> None:
    issued = tokens().issue_access("11", "k")
    client = make_app().test_client()
    client.set_cookie("auth_token", issued.token)
    refused = client.post("/api/things")
    assert refused.status_code == 403
    assert refused.get_json() == {"error": "CSRF token missing or invalid"}
    client.set_cookie("csrf_token", "forged")
    assert client.post("/api/things", headers={"X-CSRF-Token": "forged"}).status_code == 403
    csrf = csrf_token_for(issued.jti, derive_csrf_key(TEST_SECRET))
    client.set_cookie("csrf_token", csrf)
    accepted = client.post("/api/things", headers={"X-CSRF-Token": csrf})
    assert accepted.status_code == 201 and accepted.get_json() == {"owner": "11"}


def test_bearer_post_needs_no_csrf_token() -> None:
    token = tokens().issue_access("12", "m").token
    response = (
        make_app().test_client().post("/api/things", headers={"Authorization": f"Bearer {token}"})
    )
    assert response.status_code == 201
