"""The benchmark's Agora app: exactly "token check + small JSON" beside the same JSON unguarded.

Built from the same pieces as every service (`build_service_app`, `CurrentUser`), so
the protected row measures Agora's real guard (verify, revocation lookup in the
embedded cache) and no database or business work; both routes go through the same
middleware (security headers, body limit).
Run by bench.run under uvicorn as `bench.agora_app:create_app --factory`.
"""

from __future__ import annotations

import orjson
from fastapi import APIRouter, FastAPI
from starlette.responses import Response

from agora.core.settings import load_settings
from agora.runtime.backends import build_backends
from agora.web.app import build_service_app
from agora.web.guard import CurrentUser, GuardedRoute

PUBLIC_PATH = "/bench/public"
PROTECTED_PATH = "/bench/me"

router = APIRouter(route_class=GuardedRoute)  # `CurrentUser` checked without a sub-dependency


def json(content: dict[str, str]) -> Response:
    # Pre-serialized, as the services' hot routes answer (docs/contracts.md: no model pass
    # where a model adds nothing); both rows pay the same.
    return Response(orjson.dumps(content), media_type="application/json")


@router.get(PUBLIC_PATH)
async def public() -> Response:
    return json({"user_id": "anonymous", "login": "anonymous"})


@router.get(PROTECTED_PATH)
async def me(user: CurrentUser) -> Response:
    return json({"user_id": user.user_id, "login": user.login})


def create_app() -> FastAPI:
    """Settings come from AGORA_* variables, which bench.run sets for the workers."""
    settings = load_settings()
    return build_service_app(
        name="bench",
        settings=settings,
        backends=build_backends(settings),
        routers=[router],
        path_prefixes=("/bench/",),
    )
