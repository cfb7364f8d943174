"""Sealed distribution of the forum secret: custodians, key registrations, rotations, envelopes.

``principals.role`` admits ``custodian``. ``member_keys`` holds each principal's registered
public keys (one pending and one approved registration at most, enforced by partial unique
indexes); ``key_rotations`` one row per key id distributed; ``key_envelopes`` the opaque sealed
envelope of each recipient, with when it was first and last fetched; ``rotation_requests`` the
reasons a rotation is due (e.g. a member revoked) and the key id that satisfied each.
``submissions.status`` admits ``pending``: a member holding the next epoch's secret sends its
sketches under it ahead of the switch; they count nowhere until ``sigshare-hub params epoch``
makes them active.

Downgrading drops every registration, rotation and envelope, and is refused while a custodian
principal exists: the earlier schema has no such role. Pending submissions end as expired,
their payloads and clusters dropped as ending a submission does (blob files no row names are
removed by the blob sweep).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | Sequence[str] | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ROLES_BEFORE = "role IN ('member', 'coordinator', 'admin')"
_ROLES_AFTER = "role IN ('member', 'coordinator', 'admin', 'custodian')"
_KEY_PENDING = "approved_at IS NULL AND retired_at IS NULL"
_KEY_APPROVED = "approved_at IS NOT NULL AND retired_at IS NULL"
_SEALING_PUBLIC_BYTES = 1216
_SIGNING_PUBLIC_BYTES = 32


def _timestamp(name: str, *, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _role_check(rule: str) -> None:
    with op.batch_alter_table("principals") as batch:
        batch.drop_constraint(op.f("ck_principals_role_valid"), type_="check")
        batch.create_check_constraint(op.f("ck_principals_role_valid"), sa.text(rule))


_STATUS_BEFORE = "status IN ('active', 'superseded', 'expired', 'withdrawn')"
_STATUS_AFTER = "status IN ('active', 'superseded', 'expired', 'withdrawn', 'pending')"
_PENDING = "SELECT id FROM submissions WHERE status = 'pending'"


def _status_check(rule: str) -> None:
    with op.batch_alter_table("submissions") as batch:
        batch.drop_constraint(op.f("ck_submissions_status_valid"), type_="check")
        batch.create_check_constraint(op.f("ck_submissions_status_valid"), sa.text(rule))


def upgrade() -> None:
    _role_check(_ROLES_AFTER)
    _status_check(_STATUS_AFTER)
    op.create_table(
        "member_keys",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("principal_id", sa.Integer(), nullable=False),
        sa.Column("sealing_public", sa.LargeBinary(), nullable=False),
        sa.Column("signing_public", sa.LargeBinary(length=_SIGNING_PUBLIC_BYTES), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        _timestamp("registered_at"),
        _timestamp("approved_at", nullable=True),
        sa.Column("approved_by", sa.String(length=128), nullable=True),
        _timestamp("retired_at", nullable=True),
        sa.CheckConstraint(
            f"length(sealing_public) = {_SEALING_PUBLIC_BYTES}",
            name=op.f("ck_member_keys_sealing_public_length"),
        ),
        sa.CheckConstraint(
            f"length(signing_public) = {_SIGNING_PUBLIC_BYTES}",
            name=op.f("ck_member_keys_signing_public_length"),
        ),
        sa.CheckConstraint(
            "(approved_at IS NULL) = (approved_by IS NULL)",
            name=op.f("ck_member_keys_approval_complete"),
        ),
        sa.ForeignKeyConstraint(
            ["principal_id"], ["principals.id"], name=op.f("fk_member_keys_principal_id_principals")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_member_keys")),
        sa.UniqueConstraint(
            "principal_id", "fingerprint", name=op.f("uq_member_keys_principal_id_fingerprint")
        ),
    )
    for name, rule in (
        ("uq_member_keys_one_pending", _KEY_PENDING),
        ("uq_member_keys_one_approved", _KEY_APPROVED),
    ):
        op.create_index(
            op.f(name),
            "member_keys",
            ["principal_id"],
            unique=True,
            sqlite_where=sa.text(rule),
            postgresql_where=sa.text(rule),
        )
    op.create_table(
        "key_rotations",
        sa.Column("key_id", sa.String(length=32), nullable=False),
        sa.Column("custodian_id", sa.Integer(), nullable=False),
        _timestamp("created_at"),
        _timestamp("activate_at", nullable=True),
        sa.Column("recipients", sa.Integer(), nullable=False),
        sa.Column("total_bytes", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("recipients >= 1", name=op.f("ck_key_rotations_recipients_positive")),
        sa.CheckConstraint(
            "total_bytes >= 0", name=op.f("ck_key_rotations_total_bytes_non_negative")
        ),
        sa.ForeignKeyConstraint(
            ["custodian_id"],
            ["principals.id"],
            name=op.f("fk_key_rotations_custodian_id_principals"),
        ),
        sa.PrimaryKeyConstraint("key_id", name=op.f("pk_key_rotations")),
    )
    op.create_table(
        "key_envelopes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("key_id", sa.String(length=32), nullable=False),
        sa.Column("recipient_id", sa.Integer(), nullable=False),
        sa.Column("member_key_id", sa.Integer(), nullable=False),
        sa.Column("envelope", sa.LargeBinary(), nullable=False),
        sa.Column("byte_size", sa.Integer(), nullable=False),
        _timestamp("created_at"),
        _timestamp("first_fetched_at", nullable=True),
        _timestamp("last_fetched_at", nullable=True),
        sa.CheckConstraint(
            "byte_size = length(envelope)", name=op.f("ck_key_envelopes_byte_size_matches")
        ),
        sa.ForeignKeyConstraint(
            ["key_id"], ["key_rotations.key_id"], name=op.f("fk_key_envelopes_key_id_key_rotations")
        ),
        sa.ForeignKeyConstraint(
            ["recipient_id"],
            ["principals.id"],
            name=op.f("fk_key_envelopes_recipient_id_principals"),
        ),
        sa.ForeignKeyConstraint(
            ["member_key_id"],
            ["member_keys.id"],
            name=op.f("fk_key_envelopes_member_key_id_member_keys"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_key_envelopes")),
        sa.UniqueConstraint(
            "key_id", "recipient_id", name=op.f("uq_key_envelopes_key_id_recipient_id")
        ),
    )
    op.create_index(op.f("ix_key_envelopes_recipient_id"), "key_envelopes", ["recipient_id"])
    op.create_table(
        "rotation_requests",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("reason", sa.String(length=200), nullable=False),
        sa.Column("requested_by", sa.String(length=128), nullable=False),
        _timestamp("requested_at"),
        sa.Column("satisfied_by", sa.String(length=32), nullable=True),
        sa.CheckConstraint(
            "length(reason) BETWEEN 1 AND 200", name=op.f("ck_rotation_requests_reason_length")
        ),
        sa.ForeignKeyConstraint(
            ["satisfied_by"],
            ["key_rotations.key_id"],
            name=op.f("fk_rotation_requests_satisfied_by_key_rotations"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rotation_requests")),
    )


def downgrade() -> None:
    custodians = op.get_bind().scalar(
        sa.text("SELECT count(*) FROM principals WHERE role = 'custodian'")
    )
    if custodians:
        raise RuntimeError(
            f"{custodians} custodian principals exist; schema 0009 has no custodian role: "
            "restore a backup taken before the upgrade instead"
        )
    op.drop_table("rotation_requests")
    op.drop_index(op.f("ix_key_envelopes_recipient_id"), table_name="key_envelopes")
    op.drop_table("key_envelopes")
    op.drop_table("key_rotations")
    op.drop_index(op.f("uq_member_keys_one_approved"), table_name="member_keys")
    op.drop_index(op.f("uq_member_keys_one_pending"), table_name="member_keys")
    op.drop_table("member_keys")
    _role_check(_ROLES_BEFORE)
    op.execute(f"DELETE FROM clusters WHERE submission_id IN ({_PENDING})")  # noqa: S608
    op.execute(f"DELETE FROM submission_payloads WHERE submission_id IN ({_PENDING})")  # noqa: S608
    op.execute(
        "UPDATE submissions SET status = 'expired', superseded_at = created_at "
        "WHERE status = 'pending'"
    )
    _status_check(_STATUS_BEFORE)
