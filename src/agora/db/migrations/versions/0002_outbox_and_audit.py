"""auth outbox, stored audit events, per-user event sequence

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

UNPUBLISHED = sa.text("published_at IS NULL")


def upgrade() -> None:
    op.create_table(
        "auth_outbox",
        sa.Column("id", sa.Integer(), autoincrement=True),
        sa.Column("event_id", sa.String(36), nullable=False),
        sa.Column("routing_key", sa.String(64), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_auth_outbox")),
        sa.UniqueConstraint("event_id", name=op.f("uq_auth_outbox_event_id")),
    )
    # Partial: only the few unsent rows are indexed, so the relay's scan stays tiny
    # however many published rows are kept.
    op.create_index(
        op.f("ix_auth_outbox_unpublished"),
        "auth_outbox",
        ["id"],
        postgresql_where=UNPUBLISHED,
        sqlite_where=UNPUBLISHED,
    )
    op.create_table(
        "audit_events",
        sa.Column("id", sa.Integer(), autoincrement=True),
        sa.Column("event", sa.String(64), nullable=False),
        sa.Column("service", sa.String(32), nullable=False),
        sa.Column("user_id", sa.String(64), nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("data", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_events")),
    )
    op.create_index(op.f("ix_audit_events_event"), "audit_events", ["event", "at"])
    op.create_index(op.f("ix_audit_events_user_id"), "audit_events", ["user_id"])
    with op.batch_alter_table("auth_users") as batch:
        batch.add_column(sa.Column("event_seq", sa.Integer(), server_default="0", nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("auth_users") as batch:
        batch.drop_column("event_seq")
    op.drop_index(op.f("ix_audit_events_user_id"), table_name="audit_events")
    op.drop_index(op.f("ix_audit_events_event"), table_name="audit_events")
    op.drop_table("audit_events")
    op.drop_index(op.f("ix_auth_outbox_unpublished"), table_name="auth_outbox")
    op.drop_table("auth_outbox")
