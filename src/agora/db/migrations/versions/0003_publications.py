"""publications: user status fed by events, processed event ids, publications

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-21
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

CONNECTED = sa.text("status = 'connected'")


def upgrade() -> None:
    op.create_table(
        "pub_users",
        sa.Column("user_id", sa.String(64), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("last_activity_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_event_seq", sa.BigInteger(), nullable=True),
        sa.Column("last_event_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_pub_users")),
    )
    # Partial: the idle sweeper only looks at connected users.
    op.create_index(
        "ix_pub_users_connected_activity",
        "pub_users",
        ["last_activity_at"],
        postgresql_where=CONNECTED,
        sqlite_where=CONNECTED,
    )
    op.create_table(
        "pub_processed_events",
        sa.Column("event_id", sa.String(128), nullable=False),
        sa.Column("processed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("event_id", name=op.f("pk_pub_processed_events")),
    )
    op.create_index(
        op.f("ix_pub_processed_events_processed_at"), "pub_processed_events", ["processed_at"]
    )
    op.create_table(
        "publications",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("user_id", sa.String(64), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_publications")),
    )
    # Newest-first pages of one user's publications: WHERE user_id = ? AND id < ?.
    op.create_index("ix_publications_user_id_id", "publications", ["user_id", sa.text("id DESC")])


def downgrade() -> None:
    op.drop_index("ix_publications_user_id_id", table_name="publications")
    op.drop_table("publications")
    op.drop_index(op.f("ix_pub_processed_events_processed_at"), table_name="pub_processed_events")
    op.drop_table("pub_processed_events")
    op.drop_index("ix_pub_users_connected_activity", table_name="pub_users")
    op.drop_table("pub_users")
