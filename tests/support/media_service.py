"""A media service as a deployment might run one, for `HttpMediaStore`'s contract: the
three calls of `agora.adapters.media_http` over a directory (the disk store, which
keeps a file whole or not at all), behind a bearer token."""

from __future__ import annotations

from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from agora.adapters.media_disk import DiskMediaStore
from agora.ports.media import MediaMissing

TOKEN = "media-service-token"
MAX_BYTES = 64 * 1024 * 1024  # the service's own cap; the client enforces the real one


def media_service(root: Path) -> Starlette:
    disk = DiskMediaStore(root)

    async def item(request: Request) -> Response:
        if request.headers.get("authorization") != f"Bearer {TOKEN}":
            return Response(status_code=401)
        media_id = request.path_params["media_id"]
        if request.method == "PUT":
            try:
                await disk.save(media_id, request.stream(), MAX_BYTES)
            except ClientDisconnect:  # a body cut short: nothing kept
                return Response(status_code=400)
            except ValueError:
                return Response(status_code=404)
            return Response(status_code=204)
        if request.method == "DELETE":
            await disk.delete(media_id)
            return Response(status_code=204)
        try:
            return StreamingResponse(await disk.open(media_id))
        except MediaMissing:
            return Response(status_code=404)

    return Starlette(routes=[Route("/media/{media_id}", item, methods=["GET", "PUT", "DELETE"])])
