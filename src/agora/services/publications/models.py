"""Tables of the publications service: who is connected, which events were applied, posts."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Index, Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from agora.db.engine import Base, UTCDateTime

CONNECTED = "connected"
DISCONNECTED = "disconnected"


class PubUser(Base):
    """A user's status as the events told it; the source of truth behind `user:<id>`.

    `last_event_seq` / `last_event_at` remember the newest event applied so that an
    older one arriving late is ignored (see `repository.UserStatusRepository.apply`).
    """

    __tablename__ = "pub_users"

    user_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    email: Mapped[str] = mapped_column(String(320), default="")
    status: Mapped[str] = mapped_column(String(16))
    last_activity_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_event_seq: Mapped[int | None] = mapped_column(BigInteger(), nullable=True)
    last_event_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)

    __table_args__ = (
        # The idle sweeper only ever looks at connected users.
        Index(
            "ix_pub_users_connected_activity",
            "last_activity_at",
            postgresql_where=text("status = 'connected'"),
            sqlite_where=text("status = 'connected'"),
        ),
    )


class ProcessedEvent(Base):
    """Events already applied, by `event_id` (or AMQP `message_id`): redeliveries are no-ops."""

    __tablename__ = "pub_processed_events"

    event_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    processed_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)


class Publication(Base):
    """A user's post. Title and body are stored already sanitized (safe to embed as HTML)."""

    __tablename__ = "publications"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[str] = mapped_column(String(64))
    title: Mapped[str] = mapped_column(Text())
    body: Mapped[str] = mapped_column(Text())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


# Serves both "this user's" filters and the newest-first cursor (user_id = u AND id < c).
Index("ix_publications_user_id_id", Publication.user_id, Publication.id.desc())
