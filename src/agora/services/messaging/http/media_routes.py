"""HTTP for messaging media (`/api/v1/media`): uploads streamed to the service, downloads
streamed from the store.

The upload route has a request body limit of its own (`upload_body_limits`, given to the
app's BodyLimitMiddleware): the media cap plus the multipart envelope, where every other
route keeps `max_body_bytes`. A declared Content-Length over it is a 413 before a byte
is read; an undeclared one is counted as it arrives, and the file itself is capped at
`media_max_bytes` by the service while the store writes it.
"""

from __future__ import annotations

from urllib.parse import quote

from fastapi import APIRouter, Request
from starlette.responses import Response, StreamingResponse

from agora.core.errors import PayloadTooLarge
from agora.core.settings import Settings
from agora.services.messaging.http.deps import (
    ERRORS,
    LIMITED,
    PREFIX,
    MessagingServiceDep,
    actor_of,
    json_response,
    path_id,
)
from agora.services.messaging.http.multipart import MULTIPART_OVERHEAD, read_file_part
from agora.services.messaging.http.schemas import MediaOut
from agora.web.deps import SettingsDep
from agora.web.guard import CurrentUser

MEDIA_UPLOAD_PATH = f"{PREFIX}/media"
# The default allow-list, for the OpenAPI document (a deployment may change it).
DOCUMENTED_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp", "application/pdf")

# Included by `routes.router`, which adds the /api/v1 prefix.
router = APIRouter()


def upload_body_limits(settings: Settings) -> dict[str, int]:
    """The request body limit of the upload route (every other route keeps
    `max_body_bytes`): the file cap plus the multipart envelope around it."""
    return {MEDIA_UPLOAD_PATH: settings.media_max_bytes + MULTIPART_OVERHEAD}


@router.post(
    "/media",
    status_code=201,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": ["file"],
                        "properties": {
                            "file": {
                                "type": "string",
                                "format": "binary",
                                "description": "A part with a filename and the file's "
                                "Content-Type (one of AGORA_MEDIA_ALLOWED_TYPES, matching "
                                "the bytes)",
                            }
                        },
                    },
                    "encoding": {"file": {"contentType": ", ".join(DOCUMENTED_TYPES)}},
                }
            },
        }
    },
    responses={
        201: {"model": MediaOut},
        **ERRORS,
        408: {"description": "The body sent nothing for AGORA_MEDIA_UPLOAD_IDLE_TIMEOUT s"},
        413: {"description": "Larger than the media cap (refused before or while reading)"},
        415: {"description": "Not multipart, a type not allowed, or bytes not of that type"},
        **LIMITED,
    },
)
async def upload_media(
    user: CurrentUser, service: MessagingServiceDep, settings: SettingsDep, request: Request
) -> Response:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > settings.media_max_bytes + MULTIPART_OVERHEAD:
        raise PayloadTooLarge(f"File larger than {settings.media_max_bytes} bytes")
    part = await read_file_part(request, settings.media_upload_idle_timeout)
    try:
        media = await service.upload_media(
            actor_of(user, request), part.content_type, part.filename, part.chunks
        )
    finally:
        await part.aclose()
    return json_response(media.to_json(), 201)


@router.get(
    "/media/{media_id}",
    response_class=StreamingResponse,
    responses={
        200: {"description": "The file's bytes", "content": {"application/octet-stream": {}}},
        401: ERRORS[401],
        404: {"description": "No such file, or not the caller's nor in their conversations"},
    },
)
async def download_media(
    media_id: str, user: CurrentUser, service: MessagingServiceDep, request: Request
) -> Response:
    media_id = path_id(media_id, "Media")
    media, chunks = await service.open_media(actor_of(user, request), media_id)
    return StreamingResponse(
        chunks,
        media_type=media.content_type,
        headers={
            "content-length": str(media.size),
            # Never rendered as a page of ours, whatever the bytes are.
            "content-disposition": f"attachment; filename*=UTF-8''{quote(media.filename)}",
        },
    )
