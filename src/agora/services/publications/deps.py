"""What the publications routes ask for: `ActiveUser`, the one check in front of every
route, and `PublicationServiceDep`; both read the `PublicationsServices` that
`create_app` provides.

`ActiveUser`, in the order the contracts (docs/contracts.md) fix: a valid token (else
401, the same check as `CurrentUser`), then an active user (else 403 `{"error":
"Forbidden", "reason": "inactive_user"}`, audited). Passing it counts as activity. It
runs the token check itself rather than depending on `CurrentUser`: on this hot path
every dependency more costs FastAPI a resolution pass per request.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, NoReturn

from fastapi import Depends, Request

from agora.core.errors import InactiveUser
from agora.security.tokens import Identity
from agora.services.publications.listing import PublicationListing
from agora.services.publications.service import PublicationService
from agora.services.publications.status.consumer import UserEventConsumer
from agora.services.publications.status.service import UserStatusService
from agora.services.publications.status.sweeper import IdleSweeper
from agora.web.deps import app_of
from agora.web.guard import authenticate, token_check


@dataclass(frozen=True, slots=True)
class PublicationsServices:
    """The service's own objects, made by `create_app` (`ServiceApp.provide`)."""

    publications: PublicationService
    listing: PublicationListing  # the hot read: active-user check + first page
    user_status: UserStatusService
    user_events: UserEventConsumer  # the bus handler, consuming from startup
    idle_sweeper: IdleSweeper


@token_check
async def active_user(request: Request) -> Identity:
    app = app_of(request)
    identity = await authenticate(app.context.guard, request)
    status = app.provided(PublicationsServices).user_status
    if not await status.check_active(identity.user_id, identity.claims.get("iat")):
        await forbid(request, identity)
    return identity


async def forbid(request: Request, identity: Identity) -> NoReturn:
    """403 for a user who is not active, audited."""
    await app_of(request).context.audit.record(
        "resource.forbidden",
        status=403,
        user_id=identity.user_id,
        path=request.url.path,
        ip=request.client.host if request.client else None,
    )
    raise InactiveUser("Forbidden")


async def publication_service(request: Request) -> PublicationService:
    return app_of(request).provided(PublicationsServices).publications


ActiveUser = Annotated[Identity, Depends(active_user)]
PublicationServiceDep = Annotated[PublicationService, Depends(publication_service)]
