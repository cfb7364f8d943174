"""Review workflow and web sign-in: assignees, review history, browser sessions.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    for table in ("shared_indicators", "campaigns"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("assignee", sa.String(length=64), nullable=True))
    op.create_table(
        "review_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("record_type", sa.String(length=16), nullable=False),
        sa.Column("record_id", sa.String(length=32), nullable=False),
        sa.Column("actor", sa.String(length=128), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("from_status", sa.String(length=16), nullable=True),
        sa.Column("to_status", sa.String(length=16), nullable=True),
        sa.Column("assignee", sa.String(length=64), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "record_type IN ('indicator', 'campaign')",
            name=op.f("ck_review_events_record_type_valid"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_review_events")),
    )
    op.create_index("ix_review_events_record", "review_events", ["record_type", "record_id", "id"])
    op.create_table(
        "web_sessions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("token_hash", sa.LargeBinary(length=32), nullable=False),
        sa.Column("principal_id", sa.Integer(), nullable=False),
        sa.Column("csrf_token", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "length(token_hash) = 32", name=op.f("ck_web_sessions_token_hash_length")
        ),
        sa.ForeignKeyConstraint(
            ["principal_id"],
            ["principals.id"],
            name=op.f("fk_web_sessions_principal_id_principals"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_web_sessions")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_web_sessions_token_hash")),
    )
    op.create_index(op.f("ix_web_sessions_principal_id"), "web_sessions", ["principal_id"])
    # Listing and sorting tens of thousands of records for review.
    op.create_index("ix_shared_indicators_status", "shared_indicators", ["status", "id"])
    op.create_index("ix_campaigns_status", "campaigns", ["status", "id"])
    op.create_index("ix_shared_indicators_last_seen", "shared_indicators", ["last_seen", "id"])
    op.create_index("ix_shared_indicators_reporters", "shared_indicators", ["reporters", "id"])


def downgrade() -> None:
    op.drop_index("ix_shared_indicators_reporters", table_name="shared_indicators")
    op.drop_index("ix_shared_indicators_last_seen", table_name="shared_indicators")
    op.drop_index("ix_campaigns_status", table_name="campaigns")
    op.drop_index("ix_shared_indicators_status", table_name="shared_indicators")
    op.drop_index(op.f("ix_web_sessions_principal_id"), table_name="web_sessions")
    op.drop_table("web_sessions")
    op.drop_index("ix_review_events_record", table_name="review_events")
    op.drop_table("review_events")
    for table in ("campaigns", "shared_indicators"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("assignee")
