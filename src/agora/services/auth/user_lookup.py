"""`GET /auth/api/users/by-login/{login}`: one user's public card, by their exact login.

What the web client needs to start a direct conversation with someone whose login it
was told. Exact login only (case folded, as logins are unique without regard to case):
no prefix, no search, no listing, so the route cannot enumerate users faster than
guessing logins one by one; it needs a valid access token, and answers the public card
(id, login, name), never the email.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Path
from pydantic import BaseModel

from agora.core.errors import NotFound
from agora.services.auth.deps import AuthServiceDep
from agora.services.auth.schemas import LOGIN_PATTERN
from agora.web.guard import CurrentUser

router = APIRouter()

UNKNOWN = "User not found"
ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "Invalid or missing token"},
    404: {"description": "No user has this exact login"},
    422: {"description": "Not a login"},
}


class UserCard(BaseModel):
    id: str
    login: str
    name: str


@router.get("/auth/api/users/by-login/{login}", response_model=UserCard, responses=ERRORS)
async def user_by_login(
    _: CurrentUser,
    auth: AuthServiceDep,
    login: str = Path(pattern=LOGIN_PATTERN),
) -> UserCard:
    user = await auth.by_login(login)
    if user is None:
        raise NotFound(UNKNOWN)
    return UserCard(id=str(user.id), login=user.login, name=user.name)
