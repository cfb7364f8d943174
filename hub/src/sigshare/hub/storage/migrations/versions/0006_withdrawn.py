"""Submissions withdrawn at their member's revocation.

``submissions.status`` admits ``withdrawn``: revoking a member ends its active submissions with
that status in the same transaction, so no aggregate counts them from then on and they are
never revived. Downgrading turns withdrawn rows into expired ones (their payloads are gone
either way), which the earlier schema admits.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BEFORE = "status IN ('active', 'superseded', 'expired')"
_AFTER = "status IN ('active', 'superseded', 'expired', 'withdrawn')"


def _status_check(rule: str) -> None:
    with op.batch_alter_table("submissions") as batch:
        batch.drop_constraint(op.f("ck_submissions_status_valid"), type_="check")
        batch.create_check_constraint(op.f("ck_submissions_status_valid"), sa.text(rule))


def upgrade() -> None:
    _status_check(_AFTER)


def downgrade() -> None:
    op.execute("UPDATE submissions SET status = 'expired' WHERE status = 'withdrawn'")
    _status_check(_BEFORE)
