"""Submission payloads may live in the hub's blob store.

``submission_payloads.blob`` names the payload's file in the blob directory
(:mod:`sigshare.hub.storage.blobs`); ``payload`` becomes nullable, and exactly one of the two is
set. Payloads stored before stay in the database and are read from there; new ones go to the
blob store when the hub has one (SQLite files: beside the database by default; PostgreSQL: when
``SIGSHARE_HUB_BLOB_DIR`` names a directory shared by the replicas).

Downgrading is refused while any payload lives in a file: the earlier schema has nowhere to
put it.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ONE_OF = "(payload IS NULL) <> (blob IS NULL)"


def upgrade() -> None:
    with op.batch_alter_table("submission_payloads") as batch:
        batch.add_column(sa.Column("blob", sa.String(length=81), nullable=True))
        batch.alter_column("payload", existing_type=sa.LargeBinary(), nullable=True)
        batch.create_check_constraint(op.f("ck_submission_payloads_payload_or_blob"), _ONE_OF)


def downgrade() -> None:
    in_files = op.get_bind().scalar(
        sa.text("SELECT count(*) FROM submission_payloads WHERE blob IS NOT NULL")
    )
    if in_files:
        raise RuntimeError(
            f"{in_files} submission payloads live in the blob store; schema 0006 cannot hold "
            "them: restore a backup taken before the upgrade instead"
        )
    with op.batch_alter_table("submission_payloads") as batch:
        batch.drop_constraint(op.f("ck_submission_payloads_payload_or_blob"), type_="check")
        batch.alter_column("payload", existing_type=sa.LargeBinary(), nullable=False)
        batch.drop_column("blob")
