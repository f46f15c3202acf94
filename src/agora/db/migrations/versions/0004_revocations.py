"""auth: revoked tokens (by jti) and users (tokens issued before a moment)

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-21
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "auth_revocations",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("jti", sa.String(64), nullable=True),
        sa.Column("user_id", sa.String(64), nullable=False),
        sa.Column("revoked_before", sa.Integer(), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_auth_revocations")),
        sa.UniqueConstraint("jti", name=op.f("uq_auth_revocations_jti")),
    )
    op.create_index(op.f("ix_auth_revocations_user_id"), "auth_revocations", ["user_id"])
    op.create_index(op.f("ix_auth_revocations_expires_at"), "auth_revocations", ["expires_at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_auth_revocations_expires_at"), table_name="auth_revocations")
    op.drop_index(op.f("ix_auth_revocations_user_id"), table_name="auth_revocations")
    op.drop_table("auth_revocations")
