"""The Flask baseline: the classic `@token_required` doing a PyJWT decode on every request.

This is the design Agora replaces, written as such services usually are (no verified-
token cache), with the same checks as Agora's guard: Bearer header then the
`auth_token` / `jwt_token` cookies, HS256 only, exp/nbf/iss/aud/typ and required
claims, 401 JSON on refusal. `contrib_app` is the same route behind
`agora.contrib.flask.token_required`, to show what the shared verifier changes in Flask.
Served by bench.run with gunicorn, 2 sync workers.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any

import jwt
from flask import Flask, g, jsonify, request

from agora.contrib.flask import token_required as agora_token_required

PROTECTED_PATH = "/bench/me"
SECRET = os.environ.get("AGORA_JWT_SECRET", "")
ISSUER = os.environ.get("AGORA_JWT_ISSUER", "agora-auth")
AUDIENCE = os.environ.get("AGORA_JWT_AUDIENCE", "agora")


def unauthorized(message: str) -> Any:
    response = jsonify(error=message)
    response.status_code = 401
    response.headers["WWW-Authenticate"] = "Bearer"
    return response


def token_required(view: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        token = None
        header = request.headers.get("Authorization", "")
        if header.lower().startswith("bearer "):
            token = header[7:].strip()
        token = token or request.cookies.get("auth_token") or request.cookies.get("jwt_token")
        if not token:
            return unauthorized("Token required")
        try:
            claims = jwt.decode(
                token,
                SECRET,
                algorithms=["HS256"],
                audience=AUDIENCE,
                issuer=ISSUER,
                leeway=30,
                options={"require": ["exp", "iat", "nbf", "iss", "aud", "sub", "jti"]},
            )
        except jwt.ExpiredSignatureError:
            return unauthorized("Token expired")
        except jwt.InvalidTokenError:
            return unauthorized("Invalid token")
        if claims.get("typ") != "access":
            return unauthorized("Invalid token type")
        g.current_user = claims
        return view(*args, **kwargs)

    return wrapper


app = Flask("bench-flask-pyjwt")


@app.get(PROTECTED_PATH)
@token_required
def me() -> Any:
    return jsonify(user_id=g.current_user["sub"], login=g.current_user["login"])


contrib_app = Flask("bench-flask-agora-contrib")
# The guard is built from this config on the first request, once per worker.
# No revocation source, as the classic `@token_required` above has none: the two rows
# do the same checks (the extension refuses to start without this being said).
contrib_app.config.update(
    AGORA_JWT_SECRET=SECRET, AGORA_JWT_ISSUER=ISSUER, AGORA_JWT_AUDIENCE=AUDIENCE,
    AGORA_REVOCATION_CHECK=False,
)  # fmt: skip


@contrib_app.get(PROTECTED_PATH)
@agora_token_required
def contrib_me() -> Any:
    return jsonify(user_id=g.current_user.user_id, login=g.current_user.login)
