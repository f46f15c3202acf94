"""Wire shapes of the publications API: request bodies, items, pages, cursors."""

from __future__ import annotations

import base64
import binascii
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from agora.core.text import LINE_PATTERN, TEXT_PATTERN

MAX_TITLE = 200
MAX_BODY = 10_000
# Ids are PostgreSQL INTEGERs: anything larger cannot exist (and must not reach SQL).
MAX_ID = 2**31 - 1


class PublicationCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # The user-text policy (core/text.py): the patterns document what the service refuses.
    title: str = Field(
        min_length=1,
        max_length=MAX_TITLE,
        json_schema_extra={"pattern": LINE_PATTERN},
        examples=["Hello"],
    )
    body: str = Field(
        "",
        max_length=MAX_BODY,
        json_schema_extra={"pattern": TEXT_PATTERN},
        examples=["<p>First post</p>"],
    )


class PublicationUpdate(BaseModel):
    # The document says what the validator below enforces: a title or a body, as text.
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "anyOf": [
                {"required": ["title"], "properties": {"title": {"type": "string"}}},
                {"required": ["body"], "properties": {"body": {"type": "string"}}},
            ]
        },
    )

    title: str | None = Field(
        None, min_length=1, max_length=MAX_TITLE, json_schema_extra={"pattern": LINE_PATTERN}
    )
    body: str | None = Field(None, max_length=MAX_BODY, json_schema_extra={"pattern": TEXT_PATTERN})

    @model_validator(mode="after")
    def _something_to_change(self) -> PublicationUpdate:
        if self.title is None and self.body is None:
            raise ValueError("give a title, a body, or both")
        return self


class PublicationOut(BaseModel):
    """Documentation of an item; routes send the same shape pre-serialized."""

    id: str
    title: str
    body: str
    created_at: datetime
    updated_at: datetime


class PublicationPage(BaseModel):
    publications: list[PublicationOut]
    next_cursor: str | None


def item(row: Any) -> dict[str, Any]:
    """A publication (ORM object or row) as the API shows it: ids are strings."""
    return {
        "id": str(row.id),
        "title": row.title,
        "body": row.body,
        "created_at": row.created_at,
        "updated_at": row.updated_at,
    }


def parse_id(raw: str) -> int | None:
    """A path id as an integer, or None if it cannot name a publication."""
    if not (raw.isascii() and raw.isdigit()) or len(raw) > len(str(MAX_ID)):
        return None
    value = int(raw)
    return value if 1 <= value <= MAX_ID else None


def encode_cursor(last_id: int) -> str:
    """Opaque to clients, so the paging key can change without breaking them."""
    return base64.urlsafe_b64encode(f"p:{last_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int | None:
    """The id to continue below, or None if `cursor` is not one of ours."""
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    prefix, _, raw_id = text.partition(":")
    return parse_id(raw_id) if prefix == "p" else None
