"""HTTP for the publications service: translate requests into PublicationService calls.

Responses are serialized once with orjson (the service already returns plain dicts),
which keeps FastAPI's response-model pass off the hot path; the models in `schemas`
still document the shapes.
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response

from agora.core.errors import InactiveUser, Invalid, NotFound, Unauthorized
from agora.services.publications.deps import (
    ActiveUser,
    PublicationServiceDep,
    PublicationsServices,
    forbid,
)
from agora.services.publications.schemas import (
    PublicationCreate,
    PublicationOut,
    PublicationPage,
    PublicationUpdate,
)
from agora.services.publications.service import InvalidInput
from agora.web.deps import app_of
from agora.web.errors import error_responses
from agora.web.exact_routes import exact_route
from agora.web.guard import authenticate, authenticate_reading, token_check

LIMIT = 20
MAX_LIMIT = 100
MAX_CURSOR = 64

router = APIRouter(prefix="/api/publications", tags=["publications"])

# From the error classes the routes raise (the token's 401, a body's 400 and 413 are
# added to the document by web/openapi.py): a cursor not one of ours is a 422.
ERRORS = error_responses(Unauthorized, InactiveUser, Invalid, InvalidInput)
ITEM_ERRORS = error_responses(Unauthorized, InactiveUser, Invalid, InvalidInput, NotFound)


def json_response(content: Any, status_code: int = 200) -> Response:
    return Response(
        orjson.dumps(content, option=orjson.OPT_UTC_Z),
        status_code=status_code,
        media_type="application/json",
    )


# The list route's query, documented here since the route reads it itself.
PAGE_QUERY = [
    {
        "name": "limit",
        "in": "query",
        "required": False,
        "schema": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": LIMIT},
    },
    {
        "name": "cursor",
        "in": "query",
        "required": False,
        "schema": {"type": "string", "maxLength": MAX_CURSOR},
        "description": "`next_cursor` of the previous page",
    },
]


def page_query(request: Request) -> tuple[int, str | None]:
    """`limit` and `cursor`, checked as `Query(ge=1, le=100)` / `Query(max_length=64)`
    would, without FastAPI solving two parameters on every request (~30 µs here)."""
    params = request.query_params
    raw_limit = params.get("limit")
    limit = LIMIT
    if raw_limit is not None:
        # ASCII digits only: int() would also take "1_0", " 7" or other scripts' digits.
        if not (raw_limit.isascii() and raw_limit.isdigit() and len(raw_limit) <= 4):
            raise Invalid("limit", f"Input should be an integer from 1 to {MAX_LIMIT}")
        limit = int(raw_limit)
        if not 1 <= limit <= MAX_LIMIT:
            raise Invalid("limit", f"Input should be between 1 and {MAX_LIMIT}")
    cursor = params.get("cursor")
    if cursor is not None and len(cursor) > MAX_CURSOR:
        raise Invalid("cursor", f"String should have at most {MAX_CURSOR} characters")
    return limit, cursor


@router.get(
    "",
    responses={200: {"model": PublicationPage}, **ERRORS},
    openapi_extra={"parameters": PAGE_QUERY},
)
@exact_route  # found by its exact path, ahead of FastAPI's router (web/exact_routes.py)
@token_check  # the route runs the token check itself: marked for the OpenAPI document
async def list_publications(request: Request) -> Response:
    # The hot read: `ActiveUser`'s checks, in its order (422 for the query, 401, then
    # 403), but the token's revocation, the active-user check and the cached page in
    # one cache round trip (`PublicationListing`), and no dependency to solve.
    limit, cursor = page_query(request)
    app = app_of(request)
    listing = app.provided(PublicationsServices).listing
    reads = listing.reads(cursor, limit)
    if reads is None:
        identity, values = await authenticate(app.context.guard, request), None
    else:
        identity, values = await authenticate_reading(app.context.guard, request, reads)
    body = await listing.page(identity, cursor, limit, values)
    if body is None:
        await forbid(request, identity)
    return Response(body, media_type="application/json")


@router.post("", status_code=201, responses={201: {"model": PublicationOut}, **ERRORS})
async def create_publication(
    body: PublicationCreate, user: ActiveUser, service: PublicationServiceDep
) -> Response:
    return json_response(await service.create(user.user_id, body), 201)


@router.get("/{publication_id}", responses={200: {"model": PublicationOut}, **ITEM_ERRORS})
async def get_publication(
    publication_id: str, user: ActiveUser, service: PublicationServiceDep
) -> Response:
    return json_response(await service.get(user.user_id, publication_id))


@router.patch("/{publication_id}", responses={200: {"model": PublicationOut}, **ITEM_ERRORS})
async def update_publication(
    publication_id: str, body: PublicationUpdate, user: ActiveUser, service: PublicationServiceDep
) -> Response:
    return json_response(await service.update(user.user_id, publication_id, body))


@router.delete("/{publication_id}", status_code=204, responses=ITEM_ERRORS)
async def delete_publication(
    publication_id: str, user: ActiveUser, service: PublicationServiceDep
) -> Response:
    await service.delete(user.user_id, publication_id)
    return Response(status_code=204)
