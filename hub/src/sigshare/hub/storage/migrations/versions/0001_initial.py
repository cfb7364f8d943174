"""Initial schema: principals, published parameters, submissions and their payloads, audit log.

Revision ID: 0001
Revises:
Create Date: 2026-11-27

Written out in full rather than importing the models, so this revision keeps creating the same
schema whatever the models become. Every constraint is named (``op.f`` marks the names final).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.sql.schema import SchemaItem

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ACTIVE_ONLY = "status = 'active'"


def _timestamp(name: str, *, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _sha256(name: str, table: str, *, unique: bool = False) -> list[SchemaItem]:
    items: list[SchemaItem] = [
        sa.Column(name, sa.LargeBinary(length=32), nullable=False),
        sa.CheckConstraint(f"length({name}) = 32", name=op.f(f"ck_{table}_{name}_length")),
    ]
    if unique:
        items.append(sa.UniqueConstraint(name, name=op.f(f"uq_{table}_{name}")))
    return items


def _policy_columns(table: str) -> list[SchemaItem]:
    return [
        sa.Column("quorum", sa.Integer(), nullable=False),
        sa.Column("retention_days", sa.Integer(), nullable=False),
        sa.Column("reveal_members", sa.Boolean(), nullable=False),
        _timestamp("updated_at"),
        sa.CheckConstraint("quorum >= 2", name=op.f(f"ck_{table}_quorum_at_least_two")),
        sa.CheckConstraint("retention_days >= 1", name=op.f(f"ck_{table}_retention_positive")),
    ]


def upgrade() -> None:
    op.create_table(
        "principals",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("credential_id", sa.String(length=32), nullable=False),
        *_sha256("credential_hash", "principals"),
        _timestamp("created_at"),
        _timestamp("revoked_at", nullable=True),
        sa.CheckConstraint(
            "role IN ('member', 'coordinator', 'admin')", name=op.f("ck_principals_role_valid")
        ),
        sa.CheckConstraint("length(name) BETWEEN 1 AND 64", name=op.f("ck_principals_name_length")),
        sa.CheckConstraint(
            "length(credential_id) BETWEEN 16 AND 32",
            name=op.f("ck_principals_credential_id_length"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_principals")),
        sa.UniqueConstraint("name", name=op.f("uq_principals_name")),
        sa.UniqueConstraint("credential_id", name=op.f("uq_principals_credential_id")),
    )
    op.create_table(
        "kind_parameters",
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("key_id", sa.String(length=32), nullable=False),
        sa.Column("capacity", sa.BigInteger(), nullable=False),
        sa.Column("target_fpr", sa.Double(), nullable=False),
        sa.Column("m", sa.BigInteger(), nullable=False),
        sa.Column("k", sa.Integer(), nullable=False),
        *_policy_columns("kind_parameters"),
        sa.PrimaryKeyConstraint("kind", name=op.f("pk_kind_parameters")),
    )
    op.create_table(
        "minhash_parameters",
        sa.Column("family", sa.String(length=64), nullable=False),
        sa.Column("key_id", sa.String(length=32), nullable=False),
        sa.Column("num_perm", sa.Integer(), nullable=False),
        sa.Column("shingle_unit", sa.String(length=8), nullable=False),
        sa.Column("shingle_size", sa.Integer(), nullable=False),
        sa.Column("threshold", sa.Double(), nullable=False),
        *_policy_columns("minhash_parameters"),
        sa.PrimaryKeyConstraint("family", name=op.f("pk_minhash_parameters")),
    )
    op.create_table(
        "submissions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("member_id", sa.Integer(), nullable=False),
        sa.Column("family_kind", sa.String(length=80), nullable=False),
        sa.Column("key_id", sa.String(length=32), nullable=False),
        *_sha256("params_digest", "submissions"),
        *_sha256("content_sha256", "submissions"),
        sa.Column("declared_count", sa.BigInteger(), nullable=False),
        sa.Column("byte_size", sa.BigInteger(), nullable=False),
        sa.Column("set_bits", sa.BigInteger(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        _timestamp("created_at"),
        _timestamp("superseded_at", nullable=True),
        _timestamp("expires_at"),
        sa.CheckConstraint(
            "status IN ('active', 'superseded', 'expired')",
            name=op.f("ck_submissions_status_valid"),
        ),
        sa.ForeignKeyConstraint(
            ["member_id"], ["principals.id"], name=op.f("fk_submissions_member_id_principals")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_submissions")),
        sa.UniqueConstraint(
            "member_id",
            "family_kind",
            "content_sha256",
            name=op.f("uq_submissions_member_id_family_kind_content_sha256"),
        ),
    )
    op.create_index(
        op.f("ix_submissions_family_kind_key_id_status"),
        "submissions",
        ["family_kind", "key_id", "status"],
    )
    op.create_index(
        op.f("uq_submissions_one_active"),
        "submissions",
        ["member_id", "family_kind"],
        unique=True,
        sqlite_where=sa.text(ACTIVE_ONLY),
        postgresql_where=sa.text(ACTIVE_ONLY),
    )
    op.create_table(
        "submission_payloads",
        sa.Column("submission_id", sa.Integer(), nullable=False),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["submission_id"],
            ["submissions.id"],
            name=op.f("fk_submission_payloads_submission_id_submissions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("submission_id", name=op.f("pk_submission_payloads")),
    )
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        _timestamp("at"),
        sa.Column("actor", sa.String(length=128), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("target", sa.String(length=255), nullable=False),
        sa.Column("details", sa.Text(), nullable=False),
        *_sha256("prev_hash", "audit_log", unique=True),
        *_sha256("entry_hash", "audit_log", unique=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
        sqlite_autoincrement=True,
    )


def downgrade() -> None:
    op.drop_table("audit_log")
    op.drop_table("submission_payloads")
    op.drop_index(op.f("uq_submissions_one_active"), table_name="submissions")
    op.drop_index(op.f("ix_submissions_family_kind_key_id_status"), table_name="submissions")
    op.drop_table("submissions")
    op.drop_table("minhash_parameters")
    op.drop_table("kind_parameters")
    op.drop_table("principals")
