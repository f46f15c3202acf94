"""RFC 7662 token introspection, for services that verify tokens themselves but must see
revocation (the Flask adapter, docs/flask.md).

`POST /auth/api/introspect`, form body `token=<the token>`. The caller authenticates with
HTTP Basic: its client id as the user name (recorded in the audit events), and as the
password either AGORA_INTROSPECTION_SECRET, or the password derived from the shared
AGORA_JWT_SECRET for that client id (`security.client_secrets`), so that a service
holding the JWT secret needs nothing more. With neither, the endpoint refuses everyone.
The answer is `{"active": false}` for any token that Agora would refuse now (invalid,
expired, revoked, unknown issuer), so that a caller learns nothing else; an active
token's answer carries the claims a resource server needs.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from starlette.responses import JSONResponse

from agora.core.settings import Settings
from agora.security.client_secrets import basic_credentials, client_secrets
from agora.security.tokens import TokenError
from agora.web.deps import GuardDep, SettingsDep

router = APIRouter()

INTROSPECT_PATH = "/auth/api/introspect"
MAX_FORM_BYTES = 16_384
CHALLENGE = 'Basic realm="agora-introspection", charset="UTF-8"'


def caller_of(request: Request, settings: Settings) -> str | None:
    """The client id of an authenticated caller, or None."""
    scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return None
    credentials = basic_credentials(encoded)
    if credentials is None:
        return None
    client_id, password = credentials
    return client_id if client_secrets(settings).accepts(client_id, password) else None


def active_answer(claims: dict[str, Any], login: str) -> dict[str, Any]:
    answer: dict[str, Any] = {"active": True, "token_type": "Bearer", "username": login}
    for name in ("sub", "iss", "aud", "exp", "iat", "nbf", "jti"):
        if name in claims:
            answer[name] = claims[name]
    return answer


@router.post(
    INTROSPECT_PATH,
    responses={
        200: {"description": "RFC 7662 answer: `{active: false}` or the token's claims"},
        401: {"description": "The caller did not authenticate (HTTP Basic)"},
    },
)
async def introspect(request: Request, guard: GuardDep, settings: SettingsDep) -> JSONResponse:
    client_id = caller_of(request, settings)
    ip = request.client.host if request.client else None
    if client_id is None:
        reason = "bad_client"
        await guard.audit.record(
            "auth.introspection_refused", status=401, reason=reason, path=INTROSPECT_PATH, ip=ip
        )
        return JSONResponse(
            {"error": "Client authentication required"},
            status_code=401,
            headers={"WWW-Authenticate": CHALLENGE},
        )
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        return JSONResponse({"error": "Request too large"}, status_code=413)
    try:
        token = parse_qs(body.decode(), max_num_fields=4).get("token", [""])[0]
    except (UnicodeDecodeError, ValueError):
        token = ""
    if not token:
        return JSONResponse({"error": "token is required (form field)"}, status_code=400)
    try:
        identity = await guard.verify(token)
    except TokenError:
        return JSONResponse({"active": False})
    return JSONResponse(active_answer(identity.claims, identity.login))
