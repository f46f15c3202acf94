"""What the messaging routes share: the service, the caller as an `Actor`, path ids,
JSON answers."""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import Depends, Request
from starlette.responses import Response

from agora.core.errors import NotFound
from agora.security.tokens import Identity
from agora.services.messaging.domain import Actor
from agora.services.messaging.http.schemas import PATH_ID
from agora.services.messaging.service.messages import MessagingService
from agora.web.deps import from_app
from agora.web.guard import extract_token

PREFIX = "/api/v1"

Responses = dict[int | str, dict[str, Any]]
ERRORS: Responses = {
    400: {"description": "Malformed JSON body"},
    401: {"description": "Missing, invalid, expired or revoked token"},
    413: {"description": "Request body over AGORA_MAX_BODY_BYTES"},
    422: {"description": "Invalid fields: `{'error', 'fields': {name: message}}`"},
    503: {"description": "The user directory (auth) cannot be reached"},
}
LIMITED: Responses = {429: {"description": "Rate limited; `Retry-After` says for how long"}}


# Provided by `create_app`; the socket and gRPC doors get the same one at assembly.
MessagingServiceDep = Annotated[MessagingService, Depends(from_app(MessagingService))]


def actor_of(user: Identity, request: Request) -> Actor:
    """The caller, with the raw access token the guard has just accepted (the user
    directory forwards it to auth's UserService)."""
    token, _ = extract_token(request)
    return Actor(user.user_id, ip=request.client.host if request.client else None, token=token)


def path_id(raw: str, what: str) -> str:
    """`raw` if it can be one of our ids; anything else names nothing: 404."""
    if PATH_ID.fullmatch(raw) is None:
        raise NotFound(f"{what} not found")
    return raw


def json_response(content: Any, status_code: int = 200) -> Response:
    return Response(orjson.dumps(content), status_code=status_code, media_type="application/json")
