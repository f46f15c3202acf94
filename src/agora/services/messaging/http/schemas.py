"""Wire shapes of the messaging REST API (`/api/v1`): request bodies and documented answers.

Requests are validated here for shape (types, lengths, required fields) so a client gets
a 422 naming the field; the rules that need the database or the settings (members exist,
title length after sanitizing, the message text cap) are the service's, which answers in
the same `{"error", "fields"}` form. Answers are built by the domain values' `to_json`
and sent pre-serialized; the `...Out` models below only document them for OpenAPI.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from agora.core.errors import Invalid

# Upper bounds of the shape checks; the service holds the configured limits (which may be
# lower), these only keep absurd bodies away from it.
MAX_ID_CHARS = 64
MAX_IDS_PER_REQUEST = 1000
MAX_TITLE_CHARS = 1000
# A text this long fits the default 1 MiB body limit even written as JSON \u escapes
# (12 bytes a character), so a longer one is a 422 naming `text`, not a bare 413.
MAX_TEXT_CHARS = 64_000
MAX_SEQ = 2**53 - 1  # the largest integer every JSON client reads exactly
CLIENT_ID_PATTERN = r"^[A-Za-z0-9_.:-]{1,64}$"
# Ids of conversations, messages and media in paths: anything else is "not found" at once.
PATH_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


def _number_as_text(value: object) -> object:
    # User ids are strings on the wire; accept the JSON number a client may send for one.
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value


UserId = Annotated[
    str,
    BeforeValidator(_number_as_text),
    Field(min_length=1, max_length=MAX_ID_CHARS, examples=["42"]),
]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- requests -------------------------------------------------------------------------


class ConversationCreate(Strict):
    """`{"kind": "direct", "user_id"}` or `{"kind": "group", "title", "members"}`.

    One flat shape rather than a tagged union, so an error names the field as the client
    wrote it (`user_id`, not `direct.user_id`); `check` holds the per-kind rules."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "oneOf": [
                {
                    "required": ["kind", "user_id"],
                    "properties": {
                        "kind": {"const": "direct"},
                        "user_id": {"type": "string"},
                        "title": {"type": "null"},
                        "members": {"type": "null"},
                    },
                },
                {
                    "required": ["kind", "title"],
                    "properties": {
                        "kind": {"const": "group"},
                        "title": {"type": "string"},
                        "user_id": {"type": "null"},
                    },
                },
            ]
        },
    )

    kind: Literal["direct", "group"]
    user_id: UserId | None = Field(None, description="direct: the other member")
    title: str | None = Field(
        None, min_length=1, max_length=MAX_TITLE_CHARS, examples=["Weekend trip"]
    )
    members: list[UserId] | None = Field(
        None, max_length=MAX_IDS_PER_REQUEST, description="group: members besides the caller"
    )

    def check(self) -> None:
        if self.kind == "direct":
            if self.user_id is None:
                raise Invalid("user_id", "Required for a direct conversation")
            if self.title is not None or self.members is not None:
                field = "title" if self.title is not None else "members"
                raise Invalid(field, "Only for a group conversation")
        else:
            if self.title is None:
                raise Invalid("title", "Required for a group conversation")
            if self.user_id is not None:
                raise Invalid("user_id", "Only for a direct conversation; use members")


class ConversationRename(Strict):
    title: str = Field(min_length=1, max_length=MAX_TITLE_CHARS)


class MembersAdd(Strict):
    user_ids: list[UserId] = Field(min_length=1, max_length=MAX_IDS_PER_REQUEST)


class MessageSend(Strict):
    """A text message or a media message: exactly one of `text` and `media_id`.

    `client_id` is the client's own id for the message: sending the same one again
    (a retry after a lost answer) stores nothing new and answers the stored message."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "oneOf": [
                {
                    "required": ["client_id", "text"],
                    "properties": {"text": {"type": "string"}, "media_id": {"type": "null"}},
                },
                {
                    "required": ["client_id", "media_id"],
                    "properties": {"media_id": {"type": "string"}, "text": {"type": "null"}},
                },
            ]
        },
    )

    client_id: str = Field(pattern=CLIENT_ID_PATTERN, examples=["a1b2c3-1"])
    text: str | None = Field(None, max_length=MAX_TEXT_CHARS, examples=["Hello!"])
    media_id: str | None = Field(None, min_length=1, max_length=MAX_ID_CHARS)

    def check(self) -> None:
        if self.text is None and self.media_id is None:
            raise Invalid("text", "Give text or media_id")
        if self.text is not None and self.media_id is not None:
            raise Invalid("media_id", "Give text or media_id, not both")


class MessageEdit(Strict):
    text: str = Field(max_length=MAX_TEXT_CHARS)


class ReadMark(Strict):
    seq: int = Field(ge=0, le=MAX_SEQ, description="Read up to this sequence number (included)")


# --- answers (documentation) -----------------------------------------------------------


class MediaOut(BaseModel):
    id: str
    content_type: str
    size: int
    filename: str
    url: str = Field(examples=["/api/v1/media/0f9c...e1"])


class MessageOut(BaseModel):
    id: str
    conversation_id: str
    seq: int = Field(description="1, 2, 3, ... per conversation, no gaps")
    version: int = Field(description="The conversation's change counter at the last change")
    author_id: str
    client_id: str
    kind: Literal["text", "media"]
    text: str | None = Field(description="Sanitized; null for media messages and tombstones")
    media: MediaOut | None
    created_at: str
    edited_at: str | None
    deleted: bool
    deleted_at: str | None


class ConversationState(BaseModel):
    """A conversation itself (what renames and member changes answer)."""

    id: str
    kind: Literal["direct", "group"]
    title: str | None
    owner_id: str | None = Field(description="The group's owner; null for direct")
    created_at: str
    last_seq: int
    last_version: int
    members: list[str] = Field(description="User ids, in the order they joined")


class ConversationOut(ConversationState):
    """A conversation as the caller sees it."""

    read_seq: int = Field(description="The caller's read cursor")
    unread: int = Field(description="Messages of others above the caller's read cursor")
    last_message: MessageOut | None


class UserOut(BaseModel):
    id: str
    login: str
    name: str


class ConversationDetail(ConversationOut):
    users: list[UserOut] = Field(description="The members, described")


class ConversationPage(BaseModel):
    conversations: list[ConversationOut] = Field(description="Most recent activity first")
    next_cursor: str | None


class MessagePageOut(BaseModel):
    messages: list[MessageOut] = Field(description="Ascending seq, whichever way was asked")
    has_more: bool = Field(description="More messages in the direction asked")


class SendOut(BaseModel):
    message: MessageOut
    created: bool = Field(description="False: the client id was used before; stored message")


class ReceiptOut(BaseModel):
    conversation_id: str
    user_id: str
    read_seq: int
    unread: int


class UnreadOut(BaseModel):
    total: int
    conversations: dict[str, int] = Field(description="Conversation id -> unread messages")
