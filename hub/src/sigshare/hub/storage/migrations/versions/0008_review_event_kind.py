"""Review events say what they were: a status move, an assignment or a note.

``review_events.kind`` is stored when the event is written, so every reader (the console, the
``review history`` command, exports) shows the same thing without re-deriving it. Events written
before are classified once, here, by the only rule their columns allow: a status move has a
target status; otherwise an event that changed the record's assignee (records start unassigned)
or carries no note is an assignment, and the rest are notes.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_KINDS = "kind IN ('status', 'assign', 'note')"


def _classify(connection: sa.Connection) -> None:
    rows = connection.execute(
        sa.text(
            "SELECT id, record_type, record_id, to_status, assignee, note FROM review_events "
            "ORDER BY record_type, record_id, id"
        )
    )
    kinds: dict[str, list[int]] = {"status": [], "assign": [], "note": []}
    record: tuple[str, str] | None = None
    assignee: str | None = None
    for row in rows:
        if (row.record_type, row.record_id) != record:
            record, assignee = (row.record_type, row.record_id), None
        if row.to_status is not None:
            kind = "status"
        elif row.assignee != assignee or row.note is None:
            kind = "assign"
        else:
            kind = "note"
        assignee = row.assignee
        kinds[kind].append(row.id)
    update = sa.text("UPDATE review_events SET kind = :kind WHERE id IN :ids").bindparams(
        sa.bindparam("ids", expanding=True)
    )
    for kind, ids in kinds.items():
        for start in range(0, len(ids), 500):
            connection.execute(update, {"kind": kind, "ids": ids[start : start + 500]})


def upgrade() -> None:
    with op.batch_alter_table("review_events") as batch:
        batch.add_column(sa.Column("kind", sa.String(length=16), nullable=True))
    _classify(op.get_bind())
    with op.batch_alter_table("review_events") as batch:
        batch.alter_column("kind", existing_type=sa.String(length=16), nullable=False)
        batch.create_check_constraint(op.f("ck_review_events_kind_valid"), _KINDS)


def downgrade() -> None:
    with op.batch_alter_table("review_events") as batch:
        batch.drop_constraint(op.f("ck_review_events_kind_valid"), type_="check")
        batch.drop_column("kind")
