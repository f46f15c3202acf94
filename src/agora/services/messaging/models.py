"""Tables of the messaging service: conversations, their members, messages, uploads.

A conversation row carries its counters (`last_seq`, `last_version`): sending, editing
and deleting bump them in one `UPDATE ... RETURNING` that is also the row lock which
serializes writers of one conversation (see `repository.MessagingRepository.advance`).
Text is stored already sanitized (see `content.py`).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    ForeignKey,
    Index,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from agora.db.engine import Base, UTCDateTime, utcnow

ID_LENGTH = 32  # uuid4().hex
USER_ID_LENGTH = 64


class MsgConversation(Base):
    __tablename__ = "msg_conversations"

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # "direct" | "group"
    title: Mapped[str | None] = mapped_column(Text(), nullable=True)
    owner_id: Mapped[str | None] = mapped_column(String(USER_ID_LENGTH), nullable=True)
    # "a|b" with the two user ids sorted: one direct conversation per pair, either order.
    direct_key: Mapped[str | None] = mapped_column(
        String(2 * USER_ID_LENGTH + 1), unique=True, nullable=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_activity_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_seq: Mapped[int] = mapped_column(BigInteger(), default=0)
    last_version: Mapped[int] = mapped_column(BigInteger(), default=0)
    # Bumped (under the row lock) by every membership change: a process's cached member
    # list is good while this is what the send statement returns (repository_send.py).
    members_version: Mapped[int] = mapped_column(BigInteger(), default=0, server_default="0")


class MsgMember(Base):
    """A member of a conversation and their read cursor (never moves back)."""

    __tablename__ = "msg_members"

    conversation_id: Mapped[str] = mapped_column(
        String(ID_LENGTH), ForeignKey("msg_conversations.id"), primary_key=True
    )
    user_id: Mapped[str] = mapped_column(String(USER_ID_LENGTH), primary_key=True)
    joined_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    read_seq: Mapped[int] = mapped_column(BigInteger(), default=0)

    __table_args__ = (
        # "My conversations": the primary key leads with the conversation, not the user.
        Index("ix_msg_members_user_id", "user_id", "conversation_id"),
    )


class MsgMedia(Base):
    """An uploaded file; the bytes live in the MediaStore under the same id."""

    __tablename__ = "msg_media"

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    owner_id: Mapped[str] = mapped_column(String(USER_ID_LENGTH))
    content_type: Mapped[str] = mapped_column(String(100))
    size: Mapped[int] = mapped_column(BigInteger())
    filename: Mapped[str] = mapped_column(Text())  # safe text, like messages
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class MsgMessage(Base):
    __tablename__ = "msg_messages"

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    conversation_id: Mapped[str] = mapped_column(
        String(ID_LENGTH), ForeignKey("msg_conversations.id")
    )
    seq: Mapped[int] = mapped_column(BigInteger())
    version: Mapped[int] = mapped_column(BigInteger())
    author_id: Mapped[str] = mapped_column(String(USER_ID_LENGTH))
    client_id: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))  # "text" | "media"
    text: Mapped[str | None] = mapped_column(Text(), nullable=True)
    media_id: Mapped[str | None] = mapped_column(
        String(ID_LENGTH), ForeignKey("msg_media.id"), nullable=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    edited_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)

    __table_args__ = (
        # Pages by seq, unread counts (seq > read_seq) and the last message (seq = last_seq).
        UniqueConstraint("conversation_id", "seq", name="uq_msg_messages_conversation_seq"),
        # Idempotent sends: a client id is used once per author and conversation.
        UniqueConstraint(
            "conversation_id", "author_id", "client_id", name="uq_msg_messages_client_id"
        ),
        # Catch-up: "what changed since version V" is one range.
        Index("ix_msg_messages_conversation_version", "conversation_id", "version"),
        # "May this user see this upload": the messages referencing it.
        Index("ix_msg_messages_media_id", "media_id"),
    )
