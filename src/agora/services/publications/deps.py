"""`ActiveUser`: the one check in front of every publications route.

Order, as the contracts (docs/contracts.md) fixes it: a valid token (else 401, from `CurrentUser`),
then an active user (else 403 `{"error": "Forbidden"}`, audited). Passing it counts
as activity.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from agora.core.errors import Forbidden
from agora.security.tokens import Identity
from agora.services.publications.status.service import UserStatusService
from agora.web.guard import CurrentUser


async def active_user(identity: CurrentUser, request: Request) -> Identity:
    status: UserStatusService = request.app.state.user_status
    if not await status.check_active(identity.user_id):
        await request.app.state.audit.record(
            "resource.forbidden",
            status=403,
            user_id=identity.user_id,
            path=request.url.path,
            ip=request.client.host if request.client else None,
        )
        raise Forbidden("Forbidden")
    return identity


ActiveUser = Annotated[Identity, Depends(active_user)]
