"""Per-family state: the parameters a kind's or family's active submissions were made under,
and a version that grows with every change to that set.

Callers hold the family's lock (``SubmissionRepository.lock_family``) around any read that
decides a write.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import update
from sqlalchemy.orm import Session

from sigshare.hub.domain import SHA256_BYTES, FamilyState, utc
from sigshare.hub.errors import ConflictError, InvalidArgumentError
from sigshare.hub.storage.models import FamilyStateRow


def _state(row: FamilyStateRow) -> FamilyState:
    return FamilyState(
        family_kind=row.family_kind,
        key_id=row.key_id,
        params_digest=row.params_digest,
        m=row.m,
        version=row.version,
        derived_version=row.derived_version,
        updated_at=row.updated_at,
    )


class FamilyRepository:
    """``family_state`` rows."""

    def __init__(self, session: Session) -> None:
        self._session = session

    def get(self, family_kind: str) -> FamilyState | None:
        row = self._session.get(FamilyStateRow, family_kind, populate_existing=True)
        return None if row is None else _state(row)

    def reset(
        self, family_kind: str, *, key_id: str, params_digest: bytes, m: int | None, at: datetime
    ) -> FamilyState:
        """Start the family afresh under new parameters, at a new version."""
        if len(params_digest) != SHA256_BYTES:
            raise InvalidArgumentError("parameters digest must be a SHA-256 digest")
        row = self._session.get(FamilyStateRow, family_kind, populate_existing=True)
        if row is None:
            row = FamilyStateRow(family_kind=family_kind, version=0, derived_version=0)
            self._session.add(row)
        row.key_id = key_id
        row.params_digest = params_digest
        row.m = m
        row.version += 1
        row.updated_at = utc(at)
        self._session.flush()
        return _state(row)

    def record_change(self, family_kind: str, *, at: datetime) -> FamilyState:
        """The active set changed: move to a new version."""
        row = self._session.get(FamilyStateRow, family_kind, populate_existing=True)
        if row is None:
            raise ConflictError(f"{family_kind!r} has no aggregate state: reset it first")
        row.version += 1
        row.updated_at = utc(at)
        self._session.flush()
        return _state(row)

    def mark_derived(self, family_kind: str, version: int) -> None:
        """Results derived from the active set (campaigns) are current as of ``version``."""
        self._session.execute(
            update(FamilyStateRow)
            .where(FamilyStateRow.family_kind == family_kind)
            .values(derived_version=version)
        )
