"""What messaging is about, as plain values every layer shares (REST, socket, gRPC).

A conversation is `direct` (exactly two members, one per pair) or `group` (a title and
an owner who adds and removes members). Each message gets the conversation's next
`seq` (1, 2, 3, ... with no gaps) and keeps it; every change in a conversation (a new
message, an edit, a delete) takes the conversation's next `version`, so "what changed
since version V" is one indexed range, and a reconnecting device that knows its last
seq (and optionally version) gets exactly what it missed. Read cursors are per member:
`read_seq`, never moving back; unread = messages of others, not deleted, above it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

ConversationKind = Literal["direct", "group"]
MessageKind = Literal["text", "media"]


def iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class MediaRef:
    """An uploaded file: what a media message refers to."""

    id: str
    owner_id: str
    content_type: str
    size: int
    filename: str
    created_at: datetime

    @property
    def url(self) -> str:
        return f"/api/v1/media/{self.id}"

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "content_type": self.content_type,
            "size": self.size,
            "filename": self.filename,
            "url": self.url,
        }


@dataclass(frozen=True, slots=True)
class Message:
    id: str
    conversation_id: str
    seq: int
    version: int
    author_id: str
    client_id: str
    kind: MessageKind
    text: str | None  # sanitized; None for media messages and tombstones
    media: MediaRef | None
    created_at: datetime
    edited_at: datetime | None = None
    deleted_at: datetime | None = None

    @property
    def deleted(self) -> bool:
        return self.deleted_at is not None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "conversation_id": self.conversation_id,
            "seq": self.seq,
            "version": self.version,
            "author_id": self.author_id,
            "client_id": self.client_id,
            "kind": self.kind,
            "text": self.text,
            "media": self.media.to_json() if self.media is not None else None,
            "created_at": iso(self.created_at),
            "edited_at": iso(self.edited_at),
            "deleted": self.deleted,
            "deleted_at": iso(self.deleted_at),
        }


@dataclass(frozen=True, slots=True)
class Conversation:
    id: str
    kind: ConversationKind
    title: str | None
    owner_id: str | None  # None for direct conversations
    created_at: datetime
    last_seq: int
    last_version: int
    members: tuple[str, ...]  # user ids, in the order they joined

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "title": self.title,
            "owner_id": self.owner_id,
            "created_at": iso(self.created_at),
            "last_seq": self.last_seq,
            "last_version": self.last_version,
            "members": list(self.members),
        }


@dataclass(frozen=True, slots=True)
class ConversationSummary:
    """One conversation as one member sees it."""

    conversation: Conversation
    read_seq: int
    unread: int
    last_message: Message | None

    def to_json(self) -> dict[str, Any]:
        return {
            **self.conversation.to_json(),
            "read_seq": self.read_seq,
            "unread": self.unread,
            "last_message": self.last_message.to_json() if self.last_message else None,
        }


@dataclass(frozen=True, slots=True)
class SendResult:
    message: Message
    created: bool  # False: the client id was already used, this is the stored message


@dataclass(frozen=True, slots=True)
class MessagePage:
    messages: list[Message]  # ascending seq, whichever direction was asked
    has_more: bool  # more in the direction asked

    def to_json(self) -> dict[str, Any]:
        return {"messages": [m.to_json() for m in self.messages], "has_more": self.has_more}


@dataclass(frozen=True, slots=True)
class Receipt:
    conversation_id: str
    user_id: str
    read_seq: int
    unread: int  # of that user, in that conversation, after the move

    def to_json(self) -> dict[str, Any]:
        return {
            "conversation_id": self.conversation_id,
            "user_id": self.user_id,
            "read_seq": self.read_seq,
            "unread": self.unread,
        }


@dataclass(frozen=True, slots=True)
class Catchup:
    """What a reconnecting device missed in one conversation."""

    conversation_id: str
    recovered: bool  # False: too much missed; `messages` is empty, page over REST
    messages: list[Message] = field(default_factory=list)  # ascending version
    last_seq: int = 0
    last_version: int = 0
    read_seq: int = 0
    unread: int = 0

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "conversation_id": self.conversation_id,
            "recovered": self.recovered,
            "messages": [m.to_json() for m in self.messages],
            "last_seq": self.last_seq,
            "last_version": self.last_version,
            "read_seq": self.read_seq,
            "unread": self.unread,
        }
        if not self.recovered:
            body["hint"] = f"GET /api/v1/conversations/{self.conversation_id}/messages"
        return body


@dataclass(frozen=True, slots=True)
class Actor:
    """Who is calling. `token` is the caller's raw access token (REST, gRPC), forwarded
    to auth's UserService; None on the socket, which holds a ticket, not a token."""

    user_id: str
    ip: str | None = None
    token: str | None = None
