"""messaging: conversations, members with read cursors, messages, uploaded media

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "msg_conversations",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("title", sa.Text(), nullable=True),
        sa.Column("owner_id", sa.String(64), nullable=True),
        sa.Column("direct_key", sa.String(129), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_activity_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seq", sa.BigInteger(), nullable=False),
        sa.Column("last_version", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_msg_conversations")),
        # One direct conversation per pair ("a|b", sorted); NULL for groups.
        sa.UniqueConstraint("direct_key", name=op.f("uq_msg_conversations_direct_key")),
    )
    op.create_table(
        "msg_members",
        sa.Column("conversation_id", sa.String(32), nullable=False),
        sa.Column("user_id", sa.String(64), nullable=False),
        sa.Column("joined_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("read_seq", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("conversation_id", "user_id", name=op.f("pk_msg_members")),
        sa.ForeignKeyConstraint(
            ["conversation_id"],
            ["msg_conversations.id"],
            name=op.f("fk_msg_members_conversation_id_msg_conversations"),
        ),
    )
    # "My conversations": the primary key leads with the conversation.
    op.create_index("ix_msg_members_user_id", "msg_members", ["user_id", "conversation_id"])
    op.create_table(
        "msg_media",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("owner_id", sa.String(64), nullable=False),
        sa.Column("content_type", sa.String(100), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("filename", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_msg_media")),
    )
    op.create_table(
        "msg_messages",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("conversation_id", sa.String(32), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("author_id", sa.String(64), nullable=False),
        sa.Column("client_id", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("text", sa.Text(), nullable=True),
        sa.Column("media_id", sa.String(32), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("edited_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_msg_messages")),
        sa.ForeignKeyConstraint(
            ["conversation_id"],
            ["msg_conversations.id"],
            name=op.f("fk_msg_messages_conversation_id_msg_conversations"),
        ),
        sa.ForeignKeyConstraint(
            ["media_id"], ["msg_media.id"], name=op.f("fk_msg_messages_media_id_msg_media")
        ),
        # Pages by seq, unread counts (seq > read_seq), the last message (seq = last_seq).
        sa.UniqueConstraint("conversation_id", "seq", name="uq_msg_messages_conversation_seq"),
        # Idempotent sends: one message per (conversation, author, client id).
        sa.UniqueConstraint(
            "conversation_id", "author_id", "client_id", name="uq_msg_messages_client_id"
        ),
    )
    # Catch-up: what changed since version V is one range.
    op.create_index(
        "ix_msg_messages_conversation_version", "msg_messages", ["conversation_id", "version"]
    )
    # Who may read an upload: the messages referencing it.
    op.create_index("ix_msg_messages_media_id", "msg_messages", ["media_id"])


def downgrade() -> None:
    op.drop_index("ix_msg_messages_media_id", table_name="msg_messages")
    op.drop_index("ix_msg_messages_conversation_version", table_name="msg_messages")
    op.drop_table("msg_messages")
    op.drop_table("msg_media")
    op.drop_index("ix_msg_members_user_id", table_name="msg_members")
    op.drop_table("msg_members")
    op.drop_table("msg_conversations")
