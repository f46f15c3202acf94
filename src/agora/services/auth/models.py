from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from agora.db.engine import Base, UTCDateTime, utcnow


class User(Base):
    """An account. `login_key`/`email_key` are the case-folded forms that must be unique."""

    __tablename__ = "auth_users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    login: Mapped[str] = mapped_column(String(64))
    login_key: Mapped[str] = mapped_column(String(64), unique=True)
    email: Mapped[str] = mapped_column(String(320))
    email_key: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    password_hash: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # The `seq` of this user's last login/logout event: consumers use it to never let
    # an older event overwrite a newer one.
    event_seq: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


UNPUBLISHED = text("published_at IS NULL")


class OutboxEvent(Base):
    """An event to publish, written in the transaction of the change it reports.

    `payload` is the exact JSON body the relay publishes; `published_at` is set once the
    broker confirmed it.
    """

    __tablename__ = "auth_outbox"
    __table_args__ = (
        Index(
            "ix_auth_outbox_unpublished",
            "id",
            postgresql_where=UNPUBLISHED,
            sqlite_where=UNPUBLISHED,
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(String(36), unique=True)
    routing_key: Mapped[str] = mapped_column(String(64))
    payload: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    published_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)


class LiveSession(Base):
    """One access token handed out by login, until it ends: its logout, a logout-all,
    or its expiry. A user is connected while they have one (services/auth/sessions.py).

    `live_until` is the token's `exp` plus the verification leeway: the last moment the
    token is still accepted.
    """

    __tablename__ = "auth_sessions"

    jti: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(Integer, index=True)
    live_until: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
