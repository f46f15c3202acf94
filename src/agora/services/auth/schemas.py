from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, EmailStr, Field

from agora.core.text import LINE_RULE, LINE_SCHEMA, DisplayText, Line

LOGIN_PATTERN = r"^[A-Za-z0-9_.-]{3,64}$"


class RegisterRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    login: str = Field(pattern=LOGIN_PATTERN, examples=["alice"])
    password: str = Field(min_length=8, max_length=128)
    # The user-text policy (core/text.py): a control character is a 422 in every field;
    # the display name is stored as safe text (markup dropped, `&<>"'` escaped).
    email: Annotated[EmailStr, LINE_RULE, LINE_SCHEMA]
    name: DisplayText = Field(min_length=1, max_length=200)


class LoginRequest(BaseModel):
    # "username" too, for OAuth2 password-form clients. The plugin cannot type a keyword
    # __init__ for such a dynamic alias; the model is only built by model_validate.
    login: Line = Field(  # type: ignore[pydantic-alias]
        min_length=1, max_length=320, validation_alias=AliasChoices("login", "username")
    )
    password: str = Field(min_length=1, max_length=1024)


class UserOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    login: str
    email: str
    name: str
    created_at: datetime


class LoginResponse(BaseModel):
    token: str
    token_type: Literal["Bearer"] = "Bearer"
    expires_in: int
    user: UserOut
    # Echo in X-CSRF-Token on state-changing requests that rely on the cookie.
    csrf_token: str


class LogoutResponse(BaseModel):
    success: bool = True
