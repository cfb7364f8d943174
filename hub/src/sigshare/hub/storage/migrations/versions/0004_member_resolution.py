"""Per-member resolution: forum-level false-shared rate, query budgets, no count vectors.

- ``kind_parameters``: the stated rate becomes the forum-level false-shared rate ``forum_fpr``;
  filters are sized for ``forum_fpr / (max_members − 1)`` (``max_members`` 32 for existing
  kinds, or the largest forum down to the quorum whose filters fit in 2³² bits), so ``m`` and
  ``k`` are recomputed; ``replace_interval_seconds`` (default one hour)
  limits how often a member may replace its filter.
- ``submissions.counted`` and ``count_slices`` go (resolution no longer uses count vectors);
  ``submissions.tokens_asked`` counts the distinct tokens asked against a submission.
- ``query_ledgers``: per member and kind, the tokens asked and when (query budgets).

Existing filters were built with the version-1 bit positions and are retired at the next
request for their kind (their parameter digest no longer matches): members rebuild them at their
next sync.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

DEFAULT_MAX_MEMBERS = 32
MAX_BITS = 1 << 32


def _sized(capacity: int, per_filter_fpr: float) -> tuple[int, int] | None:
    """``(m, k)`` as ``BloomParams.for_capacity`` sized them when this migration was written."""
    ln2 = math.log(2.0)
    bits = math.ceil(-capacity * math.log(per_filter_fpr) / (ln2 * ln2))
    m = -(-bits // 64) * 64
    if m > MAX_BITS:
        return None
    return m, max(1, min(64, round(m / capacity * ln2)))


def upgrade() -> None:
    with op.batch_alter_table("kind_parameters") as batch:
        batch.alter_column("target_fpr", new_column_name="forum_fpr")
        batch.add_column(
            sa.Column(
                "max_members",
                sa.Integer(),
                nullable=False,
                server_default=sa.text(str(DEFAULT_MAX_MEMBERS)),
            )
        )
        batch.add_column(
            sa.Column(
                "replace_interval_seconds",
                sa.Integer(),
                nullable=False,
                server_default=sa.text("3600"),
            )
        )
        batch.create_check_constraint(
            op.f("ck_kind_parameters_max_members_at_least_two"), sa.text("max_members >= 2")
        )
        batch.create_check_constraint(
            op.f("ck_kind_parameters_replace_interval_non_negative"),
            sa.text("replace_interval_seconds >= 0"),
        )
    with op.batch_alter_table("kind_parameters") as batch:
        batch.alter_column("max_members", server_default=None)
        batch.alter_column("replace_interval_seconds", server_default=None)
    bind = op.get_bind()
    kinds = sa.table(
        "kind_parameters",
        sa.column("kind", sa.String()),
        sa.column("capacity", sa.BigInteger()),
        sa.column("forum_fpr", sa.Double()),
        sa.column("max_members", sa.Integer()),
        sa.column("quorum", sa.Integer()),
        sa.column("m", sa.BigInteger()),
        sa.column("k", sa.Integer()),
    )
    for kind, capacity, forum_fpr, quorum, m, k in bind.execute(
        sa.select(
            kinds.c.kind, kinds.c.capacity, kinds.c.forum_fpr, kinds.c.quorum, kinds.c.m, kinds.c.k
        )
    ).all():
        # The largest forum, from 32 (or the quorum) down to the quorum, whose filters fit in
        # 2^32 bits; if none does, the old filter size (quorum members keep it loadable).
        fewest = max(2, quorum)
        members, sized = fewest, (m, k)
        for candidate in range(max(DEFAULT_MAX_MEMBERS, quorum), fewest - 1, -1):
            fits = _sized(capacity, forum_fpr / (candidate - 1))
            if fits is not None:
                members, sized = candidate, fits
                break
        bind.execute(
            sa.update(kinds)
            .where(kinds.c.kind == kind)
            .values(max_members=members, m=sized[0], k=sized[1])
        )

    with op.batch_alter_table("submissions") as batch:
        batch.drop_column("counted")
        batch.add_column(
            sa.Column("tokens_asked", sa.BigInteger(), nullable=False, server_default=sa.text("0"))
        )
    op.drop_table("count_slices")
    with op.batch_alter_table("family_state") as batch:
        batch.drop_constraint(op.f("ck_family_state_members_non_negative"), type_="check")
        batch.drop_column("members")

    op.create_table(
        "query_ledgers",
        sa.Column("member_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("entries", sa.BigInteger(), nullable=False),
        sa.Column("tokens", sa.LargeBinary(), nullable=False),
        sa.Column("asked_at", sa.LargeBinary(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("entries >= 0", name=op.f("ck_query_ledgers_entries_non_negative")),
        sa.ForeignKeyConstraint(
            ["member_id"], ["principals.id"], name=op.f("fk_query_ledgers_member_id_principals")
        ),
        sa.PrimaryKeyConstraint("member_id", "kind", name=op.f("pk_query_ledgers")),
    )
    if bind.dialect.name == "postgresql":
        # Random tokens do not compress: store them out of line without trying.
        for column in ("tokens", "asked_at"):
            op.execute(f"ALTER TABLE query_ledgers ALTER COLUMN {column} SET STORAGE EXTERNAL")


def downgrade() -> None:
    op.drop_table("query_ledgers")
    with op.batch_alter_table("family_state") as batch:
        batch.add_column(
            sa.Column("members", sa.Integer(), nullable=False, server_default=sa.text("0"))
        )
        batch.create_check_constraint(
            op.f("ck_family_state_members_non_negative"), sa.text("members >= 0")
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
    with op.batch_alter_table("submissions") as batch:
        batch.drop_column("tokens_asked")
        batch.add_column(
            sa.Column("counted", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    # Every family starts afresh: the count vectors are rebuilt from the active filters.
    op.execute("DELETE FROM family_state")
    with op.batch_alter_table("kind_parameters") as batch:
        batch.drop_constraint(
            op.f("ck_kind_parameters_replace_interval_non_negative"), type_="check"
        )
        batch.drop_constraint(op.f("ck_kind_parameters_max_members_at_least_two"), type_="check")
        batch.drop_column("replace_interval_seconds")
        batch.drop_column("max_members")
        batch.alter_column("forum_fpr", new_column_name="target_fpr")
