"""HTTP for the publications service: translate requests into PublicationService calls.

Responses are serialized once with orjson (the service already returns plain dicts),
which keeps FastAPI's response-model pass off the hot path; the models in `schemas`
still document the shapes.
"""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Query
from starlette.responses import Response

from agora.core.errors import InactiveUser, Invalid, NotFound, Unauthorized
from agora.services.publications.deps import ActiveUser, PublicationServiceDep
from agora.services.publications.schemas import (
    PublicationCreate,
    PublicationOut,
    PublicationPage,
    PublicationUpdate,
)
from agora.services.publications.service import InvalidInput
from agora.web.errors import error_responses

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


@router.get("", responses={200: {"model": PublicationPage}, **ERRORS})
async def list_publications(
    user: ActiveUser,
    service: PublicationServiceDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=64)] = None,
) -> Response:
    return json_response(await service.page(user.user_id, cursor, limit))


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
