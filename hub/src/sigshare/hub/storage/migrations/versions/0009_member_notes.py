"""Notes for members: the coordinators' word on a shared indicator or campaign that its members
receive with their matches.

``shared_indicators.member_note`` and ``campaigns.member_note`` hold the note members see now
(a status change replaces it); ``review_events.member_note`` keeps the note each step gave, so
the history shows what members were told and when. Existing records have none.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TABLES = ("shared_indicators", "campaigns", "review_events")


def upgrade() -> None:
    for table in _TABLES:
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("member_note", sa.Text(), nullable=True))


def downgrade() -> None:
    for table in reversed(_TABLES):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("member_note")
