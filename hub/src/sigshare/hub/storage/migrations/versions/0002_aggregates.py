"""Aggregates and results: family state and count vectors, which submissions are counted,
confirmations, shared indicators, cluster sketches and campaigns.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27

On PostgreSQL the large binary columns are stored EXTERNAL (out of line, uncompressed): count
vectors and filters are near-random bytes, and compressing hundreds of megabytes with pglz on
every write costs seconds for nothing.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.sql.schema import SchemaItem

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_EXTERNAL = (
    ("submission_payloads", "payload"),
    ("count_slices", "counts"),
)


def _timestamp(name: str, *, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _token(table: str) -> list[SchemaItem]:
    return [
        sa.Column("token", sa.LargeBinary(length=16), nullable=False),
        sa.CheckConstraint("length(token) = 16", name=op.f(f"ck_{table}_token_length")),
    ]


def upgrade() -> None:
    op.create_table(
        "family_state",
        sa.Column("family_kind", sa.String(length=80), nullable=False),
        sa.Column("key_id", sa.String(length=32), nullable=False),
        sa.Column("params_digest", sa.LargeBinary(length=32), nullable=False),
        sa.Column("m", sa.BigInteger(), nullable=True),
        sa.Column("members", sa.Integer(), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("derived_version", sa.BigInteger(), nullable=False),
        _timestamp("updated_at"),
        sa.CheckConstraint(
            "length(params_digest) = 32", name=op.f("ck_family_state_params_digest_length")
        ),
        sa.CheckConstraint("members >= 0", name=op.f("ck_family_state_members_non_negative")),
        sa.PrimaryKeyConstraint("family_kind", name=op.f("pk_family_state")),
    )
    op.create_table(
        "count_slices",
        sa.Column("family_kind", sa.String(length=80), nullable=False),
        sa.Column("slice_no", sa.Integer(), nullable=False),
        sa.Column("counts", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["family_kind"],
            ["family_state.family_kind"],
            name=op.f("fk_count_slices_family_kind_family_state"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("family_kind", "slice_no", name=op.f("pk_count_slices")),
    )
    op.create_table(
        "confirmations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("key_id", sa.String(length=32), nullable=False),
        *_token("confirmations"),
        sa.Column("member_id", sa.Integer(), nullable=False),
        sa.Column("category", sa.String(length=64), nullable=False),
        _timestamp("first_seen", nullable=True),
        _timestamp("last_seen", nullable=True),
        _timestamp("confirmed_at"),
        sa.ForeignKeyConstraint(
            ["member_id"], ["principals.id"], name=op.f("fk_confirmations_member_id_principals")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_confirmations")),
        sa.UniqueConstraint(
            "kind",
            "key_id",
            "token",
            "member_id",
            name=op.f("uq_confirmations_kind_key_id_token_member_id"),
        ),
    )
    op.create_index(op.f("ix_confirmations_member_id"), "confirmations", ["member_id"])
    op.create_table(
        "shared_indicators",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("public_id", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("key_id", sa.String(length=32), nullable=False),
        *_token("shared_indicators"),
        sa.Column("reporters", sa.Integer(), nullable=False),
        sa.Column("categories", sa.Text(), nullable=False),
        _timestamp("first_seen", nullable=True),
        _timestamp("last_seen", nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        _timestamp("created_at"),
        _timestamp("updated_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_shared_indicators")),
        sa.UniqueConstraint("public_id", name=op.f("uq_shared_indicators_public_id")),
        sa.UniqueConstraint(
            "kind", "key_id", "token", name=op.f("uq_shared_indicators_kind_key_id_token")
        ),
    )
    op.create_table(
        "clusters",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("submission_id", sa.Integer(), nullable=False),
        sa.Column("row_index", sa.Integer(), nullable=False),
        sa.Column("cluster_id", sa.String(length=32), nullable=False),
        sa.Column("volume", sa.BigInteger(), nullable=False),
        sa.Column("category", sa.String(length=64), nullable=False),
        _timestamp("first_seen", nullable=True),
        _timestamp("last_seen", nullable=True),
        sa.ForeignKeyConstraint(
            ["submission_id"],
            ["submissions.id"],
            name=op.f("fk_clusters_submission_id_submissions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_clusters")),
        sa.UniqueConstraint(
            "submission_id", "cluster_id", name=op.f("uq_clusters_submission_id_cluster_id")
        ),
    )
    op.create_index(op.f("ix_clusters_submission_id"), "clusters", ["submission_id"])
    op.create_table(
        "campaigns",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("public_id", sa.String(length=32), nullable=False),
        sa.Column("family", sa.String(length=64), nullable=False),
        sa.Column("members", sa.Integer(), nullable=False),
        sa.Column("similarity", sa.Double(), nullable=False),
        sa.Column("volume", sa.BigInteger(), nullable=False),
        sa.Column("categories", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("signature", sa.LargeBinary(), nullable=False),
        _timestamp("created_at"),
        _timestamp("updated_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_campaigns")),
        sa.UniqueConstraint("public_id", name=op.f("uq_campaigns_public_id")),
    )
    op.create_index("ix_campaigns_family_active", "campaigns", ["family", "active"])
    op.create_table(
        "campaign_clusters",
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("member_id", sa.Integer(), nullable=False),
        sa.Column("cluster_id", sa.String(length=32), nullable=False),
        sa.Column("similarity", sa.Double(), nullable=False),
        sa.ForeignKeyConstraint(
            ["campaign_id"],
            ["campaigns.id"],
            name=op.f("fk_campaign_clusters_campaign_id_campaigns"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["member_id"], ["principals.id"], name=op.f("fk_campaign_clusters_member_id_principals")
        ),
        sa.PrimaryKeyConstraint(
            "campaign_id", "member_id", "cluster_id", name=op.f("pk_campaign_clusters")
        ),
    )
    op.create_index(
        "ix_campaign_clusters_member_id_cluster_id",
        "campaign_clusters",
        ["member_id", "cluster_id"],
    )
    with op.batch_alter_table("submissions") as batch:
        batch.add_column(
            sa.Column("counted", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    if op.get_bind().dialect.name == "postgresql":
        for table, column in _EXTERNAL:
            op.execute(f"ALTER TABLE {table} ALTER COLUMN {column} SET STORAGE EXTERNAL")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE submission_payloads ALTER COLUMN payload SET STORAGE EXTENDED")
    with op.batch_alter_table("submissions") as batch:
        batch.drop_column("counted")
    op.drop_index("ix_campaign_clusters_member_id_cluster_id", table_name="campaign_clusters")
    op.drop_table("campaign_clusters")
    op.drop_index("ix_campaigns_family_active", table_name="campaigns")
    op.drop_table("campaigns")
    op.drop_index(op.f("ix_clusters_submission_id"), table_name="clusters")
    op.drop_table("clusters")
    op.drop_table("shared_indicators")
    op.drop_index(op.f("ix_confirmations_member_id"), table_name="confirmations")
    op.drop_table("confirmations")
    op.drop_table("count_slices")
    op.drop_table("family_state")
