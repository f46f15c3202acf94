"""HTTP and WebSocket routes of the social service: translate, then call the socket."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from agora.services.social.deps import SocialServicesDep
from agora.web.deps import AuditDep
from agora.web.guard import CurrentUser, GuardedRoute

router = APIRouter(route_class=GuardedRoute)  # `CurrentUser` checked without a sub-dependency

CONNECT_TOKEN = "/social/api/socials/connect-token"
ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "Missing, invalid, expired or revoked access token"}
}


@router.get(CONNECT_TOKEN, responses=ERRORS)
@router.post(CONNECT_TOKEN, responses=ERRORS)
async def connect_token(
    user: CurrentUser, social: SocialServicesDep, audit: AuditDep
) -> dict[str, object]:
    """A one-time ticket (10 s) for `/social/api/socials/ws?token=...`."""
    issued = social.tickets.issue(user)
    await audit.record(
        "social.ticket_issued", user_id=user.user_id, jti=issued.jti, session=user.jti
    )
    return {"success": True, "token": issued.token}


SOCKET = "/social/api/socials/ws"  # `create_app` routes it to `SocialSocket.handle`
