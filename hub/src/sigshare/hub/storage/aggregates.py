"""Per-family state and the count vectors of indicator kinds.

A kind's count vector ``C`` (one byte per filter bit) is stored in slices of
:data:`SLICE_BYTES`; :class:`FamilyRepository` reads and writes it whole. Callers hold the
family's lock (``SubmissionRepository.lock_family``) around any read that decides a write.
"""

from __future__ import annotations

from datetime import datetime

import numpy as np
import numpy.typing as npt
from sqlalchemy import delete, insert, select, update
from sqlalchemy.orm import Session

from sigshare.hub.domain import SHA256_BYTES, FamilyState, utc
from sigshare.hub.errors import ConflictError, InvalidArgumentError
from sigshare.hub.storage.models import CountSliceRow, FamilyStateRow

SLICE_BYTES = 1 << 22
"""4 MiB per row: a 100M-bit vector is a few dozen rows, each small enough to stream."""


def _state(row: FamilyStateRow) -> FamilyState:
    return FamilyState(
        family_kind=row.family_kind,
        key_id=row.key_id,
        params_digest=row.params_digest,
        m=row.m,
        members=row.members,
        version=row.version,
        derived_version=row.derived_version,
        updated_at=row.updated_at,
    )


class FamilyRepository:
    """``family_state`` rows and ``count_slices``."""

    def __init__(self, session: Session) -> None:
        self._session = session

    def get(self, family_kind: str) -> FamilyState | None:
        row = self._session.get(FamilyStateRow, family_kind, populate_existing=True)
        return None if row is None else _state(row)

    def reset(
        self, family_kind: str, *, key_id: str, params_digest: bytes, m: int | None, at: datetime
    ) -> FamilyState:
        """Start the family afresh under new parameters: no members, no counts, a new version."""
        if len(params_digest) != SHA256_BYTES:
            raise InvalidArgumentError("parameters digest must be a SHA-256 digest")
        if m is not None and m % 8:
            raise InvalidArgumentError("a count vector covers whole bytes of filter bits")
        self._session.execute(delete(CountSliceRow).where(CountSliceRow.family_kind == family_kind))
        row = self._session.get(FamilyStateRow, family_kind, populate_existing=True)
        if row is None:
            row = FamilyStateRow(family_kind=family_kind, version=0, derived_version=0)
            self._session.add(row)
        row.key_id = key_id
        row.params_digest = params_digest
        row.m = m
        row.members = 0
        row.version += 1
        row.updated_at = utc(at)
        self._session.flush()
        return _state(row)

    def record_change(self, family_kind: str, *, members_delta: int, at: datetime) -> FamilyState:
        """The active set changed: adjust the member count and move to a new version."""
        row = self._session.get(FamilyStateRow, family_kind, populate_existing=True)
        if row is None:
            raise ConflictError(f"{family_kind!r} has no aggregate state: reset it first")
        if row.members + members_delta < 0:
            raise ConflictError(f"{family_kind!r} would count fewer than zero members")
        row.members += members_delta
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

    def read_counts(self, family_kind: str, m: int) -> npt.NDArray[np.uint8]:
        """The count vector (zeros where no slice was written yet)."""
        counts = np.zeros(m, dtype=np.uint8)
        rows = self._session.execute(
            select(CountSliceRow.slice_no, CountSliceRow.counts)
            .where(CountSliceRow.family_kind == family_kind)
            .execution_options(yield_per=4)
        )
        for slice_no, data in rows:
            start = slice_no * SLICE_BYTES
            if start + len(data) > m:
                raise ConflictError(f"count slice {slice_no} of {family_kind!r} runs past m")
            counts[start : start + len(data)] = np.frombuffer(data, dtype=np.uint8)
        return counts

    def write_counts(self, family_kind: str, counts: npt.NDArray[np.uint8]) -> None:
        """Replace the stored count vector with ``counts``."""
        if counts.dtype != np.uint8 or counts.ndim != 1:
            raise InvalidArgumentError("a count vector is a one-dimensional uint8 array")
        self._session.execute(delete(CountSliceRow).where(CountSliceRow.family_kind == family_kind))
        for start in range(0, counts.size, SLICE_BYTES):
            if not counts[start : start + SLICE_BYTES].any():
                continue  # read_counts fills missing slices with zeros
            self._session.execute(
                insert(CountSliceRow).values(
                    family_kind=family_kind,
                    slice_no=start // SLICE_BYTES,
                    counts=counts[start : start + SLICE_BYTES].tobytes(),
                )
            )
