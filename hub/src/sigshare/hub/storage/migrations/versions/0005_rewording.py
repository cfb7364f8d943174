"""MinHash families: stopwords, core rules and the members' own clustering threshold.

- ``minhash_parameters.drop_stopwords`` (false) and ``core_rules`` (1): families published
  before keep their signatures and digests exactly;
- ``minhash_parameters.cluster_threshold`` (null: members cluster at the family's threshold,
  as before);
- ``clusters.core_size`` (0 for clusters sent before: not stated), the distinct shingles of a
  cluster's template core, which families with core rules 2 match on as well.

Nothing is recomputed: ``sigshare-hub params upgrade-minhash FAMILY`` moves a family to the
recommended profile when the operator chooses to (members resubmit at their next sync).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("minhash_parameters") as batch:
        batch.add_column(
            sa.Column("drop_stopwords", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch.add_column(
            sa.Column("core_rules", sa.Integer(), nullable=False, server_default=sa.text("1"))
        )
        batch.add_column(sa.Column("cluster_threshold", sa.Double(), nullable=True))
    with op.batch_alter_table("minhash_parameters") as batch:
        batch.alter_column("drop_stopwords", server_default=None)
        batch.alter_column("core_rules", server_default=None)
    with op.batch_alter_table("clusters") as batch:
        batch.add_column(
            sa.Column("core_size", sa.Integer(), nullable=False, server_default=sa.text("0"))
        )
    with op.batch_alter_table("clusters") as batch:
        batch.alter_column("core_size", server_default=None)


def downgrade() -> None:
    with op.batch_alter_table("clusters") as batch:
        batch.drop_column("core_size")
    with op.batch_alter_table("minhash_parameters") as batch:
        batch.drop_column("cluster_threshold")
        batch.drop_column("core_rules")
        batch.drop_column("drop_stopwords")
