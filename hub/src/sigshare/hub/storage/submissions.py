"""Members' sketches: all SQL of ``submissions`` (metadata) and ``submission_payloads`` (the
encoded bytes, or the name of the blob holding them), and the per-family lock their writers take.
"""

from __future__ import annotations

import builtins
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import ColumnElement, CursorResult, and_, delete, func, insert, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from sigshare.hub.domain import Role, Submission, SubmissionStatus, utc
from sigshare.hub.errors import (
    ConflictError,
    InvalidArgumentError,
    NotFoundError,
    PreconditionError,
)
from sigshare.hub.storage import blobs
from sigshare.hub.storage._sql import backend, require_sha256
from sigshare.hub.storage.blobs import BlobStore, StagedBlob
from sigshare.hub.storage.models import (
    ClusterRow,
    PrincipalRow,
    SubmissionPayloadRow,
    SubmissionRow,
)
from sigshare.hub.storage.principals import active_at
from sigshare.sketch.keys import KEY_ID_RULE, is_valid_key_id

MAX_FAMILY_KIND_LENGTH = 80
_LIVE = (SubmissionStatus.ACTIVE, SubmissionStatus.PENDING)
"""Statuses of submissions in service: each has its payload (ended ones have none)."""


def _submission(row: SubmissionRow) -> Submission:
    return Submission(
        id=row.id,
        member_id=row.member_id,
        family_kind=row.family_kind,
        key_id=row.key_id,
        params_digest=row.params_digest,
        content_sha256=row.content_sha256,
        declared_count=row.declared_count,
        byte_size=row.byte_size,
        set_bits=row.set_bits,
        status=SubmissionStatus(row.status),
        tokens_asked=row.tokens_asked,
        created_at=row.created_at,
        superseded_at=row.superseded_at,
        expires_at=row.expires_at,
    )


class SubmissionRepository:
    """Members' sketches: metadata in ``submissions``, encoded bytes in ``submission_payloads``."""

    def __init__(self, session: Session) -> None:
        self._session = session

    def lock_family(self, family_kind: str, *, shared: bool = False) -> None:
        """Serialise writers of one family/kind until the transaction ends (PostgreSQL).

        Replicas that change a family's set of active submissions (a submission, an expiry, a
        parameter change) must not interleave, or one's view of the current submission is stale
        when it writes. Readers take no lock: they read a consistent list of active submissions
        and key everything derived by exactly that list. On PostgreSQL this is a
        transaction-scoped advisory lock keyed by the family; on SQLite it does nothing, because
        every transaction already holds the database's single write lock (``BEGIN IMMEDIATE``).
        """
        if backend(self._session) == "postgresql":
            function = "pg_advisory_xact_lock_shared" if shared else "pg_advisory_xact_lock"
            self._session.execute(
                text(f"SELECT {function}(hashtext(:key))"),
                {"key": f"sigshare/submissions/{family_kind}"},
            )

    def find(self, member_id: int, family_kind: str, content_sha256: bytes) -> Submission | None:
        """The member's earlier submission of the same bytes, whatever its status (idempotency)."""
        row = self._session.scalars(
            select(SubmissionRow).where(
                SubmissionRow.member_id == member_id,
                SubmissionRow.family_kind == family_kind,
                SubmissionRow.content_sha256 == content_sha256,
            )
        ).one_or_none()
        return None if row is None else _submission(row)

    def add(
        self,
        *,
        member_id: int,
        family_kind: str,
        key_id: str,
        params_digest: bytes,
        content_sha256: bytes,
        declared_count: int,
        set_bits: int | None,
        payload: bytes | StagedBlob,
        created_at: datetime,
        expires_at: datetime,
        status: SubmissionStatus = SubmissionStatus.ACTIVE,
    ) -> Submission:
        """Store a new active (or pending) submission and supersede the member's previous one
        of that status.

        ``payload``: the encoded sketch, or the staged blob it was received into (which is
        published here, before the transaction can commit).

        The service has verified the submission (parameters, key epoch, content); the schema
        keeps the invariants (digest lengths, one active row per member and family, unique
        content per member and family, a real member). :class:`ConflictError` when a constraint
        refuses the row: a concurrent writer got there first, or the content was stored before
        (look it up with :meth:`find` first).
        """
        if not family_kind or len(family_kind) > MAX_FAMILY_KIND_LENGTH:
            raise InvalidArgumentError(
                f"family/kind must be 1-{MAX_FAMILY_KIND_LENGTH} characters, got {family_kind!r}"
            )
        if declared_count < 0 or (set_bits is not None and set_bits < 0):
            raise InvalidArgumentError("declared count and set bits cannot be negative")
        if status not in _LIVE:
            raise InvalidArgumentError("a new submission is active or pending")
        created, expires = utc(created_at), utc(expires_at)
        if expires <= created:
            raise InvalidArgumentError("a submission must expire after it was created")
        row = SubmissionRow(
            member_id=member_id,
            family_kind=family_kind,
            key_id=key_id,
            params_digest=params_digest,
            content_sha256=content_sha256,
            declared_count=declared_count,
            byte_size=_payload_size(payload),
            set_bits=set_bits,
            status=status.value,
            tokens_asked=0,
            created_at=created,
            expires_at=expires,
        )
        try:
            # One savepoint: the supersede, the row and its payload stand or fall together.
            with self._session.begin_nested():
                # The UPDATE runs before the INSERT: the partial unique index admits one active
                # row per member and family at every statement, not only at commit.
                self._session.execute(
                    update(SubmissionRow)
                    .where(
                        SubmissionRow.member_id == member_id,
                        SubmissionRow.family_kind == family_kind,
                        SubmissionRow.status == status.value,
                    )
                    .values(status=SubmissionStatus.SUPERSEDED.value, superseded_at=created)
                )
                self._session.add(row)
                self._session.flush()
                # Core INSERT: the payload is not kept in the session's identity map.
                self._session.execute(
                    insert(SubmissionPayloadRow).values(
                        submission_id=row.id, **self._payload_values(payload)
                    )
                )
        except IntegrityError as exc:
            # The savepoint's rollback does not undo what the UPDATE wrote into loaded rows.
            self._session.expire_all()
            raise ConflictError(
                f"a submission of {family_kind!r} by member {member_id} was refused by the "
                "database (a concurrent submission won, or this content was stored before): retry"
            ) from exc
        return _submission(row)

    def get(self, submission_id: int) -> Submission | None:
        # populate_existing: bulk UPDATEs above change rows the identity map may hold.
        row = self._session.get(SubmissionRow, submission_id, populate_existing=True)
        return None if row is None else _submission(row)

    def active(self, family_kind: str, key_id: str) -> list[Submission]:
        """The current submission of every member for this family/kind and key epoch, by id."""
        rows = self._session.scalars(
            select(SubmissionRow)
            .where(
                SubmissionRow.family_kind == family_kind,
                SubmissionRow.key_id == key_id,
                SubmissionRow.status == SubmissionStatus.ACTIVE.value,
            )
            .order_by(SubmissionRow.id)
        )
        return [_submission(row) for row in rows]

    def payload(self, submission_id: int) -> bytes:
        """The encoded sketch of one submission, from the database or the blob store."""
        row = self._session.execute(
            select(SubmissionPayloadRow.payload, SubmissionPayloadRow.blob).where(
                SubmissionPayloadRow.submission_id == submission_id
            )
        ).one_or_none()
        if row is None:
            raise NotFoundError("submission", submission_id)
        payload, blob = row
        if payload is not None:
            return bytes(payload)
        return self._blob_store(f"submission {submission_id}'s payload").read(str(blob))

    def blob_names(self) -> builtins.list[str]:
        """Every blob the database references (for the blob store's census and sweep)."""
        return list(
            self._session.scalars(
                select(SubmissionPayloadRow.blob).where(SubmissionPayloadRow.blob.is_not(None))
            )
        )

    def _blob_store(self, needed_for: str) -> BlobStore:
        store = blobs.store_for(self._session.get_bind())
        if store is None:
            raise PreconditionError(
                f"{needed_for} is in a blob directory, and this hub was given none: set "
                f"{blobs.BLOB_DIR_ENV} (or --blob-dir) to the directory the hub's replicas share"
            )
        return store

    def _payload_values(self, payload: bytes | StagedBlob) -> dict[str, Any]:
        """The columns of a payload row: the bytes, or the name of their published blob."""
        if isinstance(payload, StagedBlob):
            return {"blob": payload.publish()}
        store = blobs.store_for(self._session.get_bind())
        if store is None:
            return {"payload": payload}
        return {"blob": store.put(payload)}

    def active_of(self, member_id: int, family_kind: str) -> Submission | None:
        """The member's current submission of this family/kind, whatever its key epoch."""
        row = self._session.scalars(
            select(SubmissionRow).where(
                SubmissionRow.member_id == member_id,
                SubmissionRow.family_kind == family_kind,
                SubmissionRow.status == SubmissionStatus.ACTIVE.value,
            )
        ).one_or_none()
        return None if row is None else _submission(row)

    def all_active(self, family_kind: str) -> list[Submission]:
        """Every active submission of this family/kind in any key epoch, by id."""
        rows = self._session.scalars(
            select(SubmissionRow)
            .where(
                SubmissionRow.family_kind == family_kind,
                SubmissionRow.status == SubmissionStatus.ACTIVE.value,
            )
            .order_by(SubmissionRow.id)
        )
        return [_submission(row) for row in rows]

    def of_member(self, member_id: int) -> list[Submission]:
        """The member's active and pending submissions, by family/kind (active first)."""
        rows = self._session.scalars(
            select(SubmissionRow)
            .where(
                SubmissionRow.member_id == member_id,
                SubmissionRow.status.in_([status.value for status in _LIVE]),
            )
            .order_by(SubmissionRow.family_kind, SubmissionRow.status)
        )
        return [_submission(row) for row in rows]

    def pending_of(self, member_id: int, family_kind: str) -> Submission | None:
        """The member's submission of this family/kind under the next key epoch, if any."""
        row = self._session.scalars(
            select(SubmissionRow).where(
                SubmissionRow.member_id == member_id,
                SubmissionRow.family_kind == family_kind,
                SubmissionRow.status == SubmissionStatus.PENDING.value,
            )
        ).first()
        return None if row is None else _submission(row)

    def pending(self, family_kind: str) -> builtins.list[Submission]:
        """Every pending submission of this family/kind, by id."""
        rows = self._session.scalars(
            select(SubmissionRow)
            .where(
                SubmissionRow.family_kind == family_kind,
                SubmissionRow.status == SubmissionStatus.PENDING.value,
            )
            .order_by(SubmissionRow.id)
        )
        return [_submission(row) for row in rows]

    def pending_under(self, key_id: str) -> builtins.list[Submission]:
        """Every pending submission made under key epoch ``key_id``, by member and family."""
        rows = self._session.scalars(
            select(SubmissionRow)
            .where(
                SubmissionRow.key_id == key_id,
                SubmissionRow.status == SubmissionStatus.PENDING.value,
            )
            .order_by(SubmissionRow.member_id, SubmissionRow.family_kind)
        )
        return [_submission(row) for row in rows]

    def activate(self, submission_id: int) -> None:
        """Make a pending submission its member's active one; the caller has ended the active
        one (the partial unique index admits one active row per member and family)."""
        result = self._session.execute(
            update(SubmissionRow)
            .where(
                SubmissionRow.id == submission_id,
                SubmissionRow.status == SubmissionStatus.PENDING.value,
            )
            .values(status=SubmissionStatus.ACTIVE.value)
        )
        if cast(CursorResult[Any], result).rowcount != 1:
            raise ConflictError(f"submission {submission_id} is no longer pending")

    @staticmethod
    def _due(
        family_kind: str, key_id: str, params_digest: bytes, now: datetime
    ) -> ColumnElement[bool]:
        return and_(
            SubmissionRow.family_kind == family_kind,
            SubmissionRow.status == SubmissionStatus.ACTIVE.value,
            (SubmissionRow.expires_at <= utc(now))
            | (SubmissionRow.key_id != key_id)
            | (SubmissionRow.params_digest != params_digest),
        )

    def due(
        self, family_kind: str, key_id: str, params_digest: bytes, now: datetime
    ) -> builtins.list[Submission]:
        """Active submissions of the family that ``prepare`` ends, by id: past their expiry
        (``expires_at`` at or before ``now``) or made under other parameters than
        ``(key_id, params_digest)``."""
        rows = self._session.scalars(
            select(SubmissionRow)
            .where(self._due(family_kind, key_id, params_digest, now))
            .order_by(SubmissionRow.id)
        )
        return [_submission(row) for row in rows]

    def any_due(self, family_kind: str, key_id: str, params_digest: bytes, now: datetime) -> bool:
        """Whether :meth:`due` would list anything (one probe, no rows loaded)."""
        found = self._session.scalar(
            select(SubmissionRow.id)
            .where(self._due(family_kind, key_id, params_digest, now))
            .limit(1)
        )
        return found is not None

    def active_of_live_members(
        self, family_kind: str, key_id: str, now: datetime
    ) -> builtins.list[Submission]:
        """:meth:`active` without the submissions of members whose credential is revoked."""
        rows = self._session.scalars(
            select(SubmissionRow)
            .join(PrincipalRow, PrincipalRow.id == SubmissionRow.member_id)
            .where(
                SubmissionRow.family_kind == family_kind,
                SubmissionRow.key_id == key_id,
                SubmissionRow.status == SubmissionStatus.ACTIVE.value,
                PrincipalRow.role == Role.MEMBER.value,
                active_at(now),
            )
            .order_by(SubmissionRow.member_id)
        )
        return [_submission(row) for row in rows]

    def end(self, submission_id: int, status: SubmissionStatus, at: datetime) -> None:
        """Take an active or pending submission out of service and drop its payload and
        clusters.

        Ended sketches are never read again (a member re-sending old content revives the row
        with the bytes it sends), so the hub keeps only their metadata.
        """
        if status in _LIVE:
            raise InvalidArgumentError("end() moves a submission out of service")
        result = self._session.execute(
            update(SubmissionRow)
            .where(
                SubmissionRow.id == submission_id,
                SubmissionRow.status.in_([live.value for live in _LIVE]),
            )
            .values(status=status.value, superseded_at=utc(at))
        )
        if cast(CursorResult[Any], result).rowcount != 1:
            raise ConflictError(f"submission {submission_id} is no longer active")
        self.drop_payload(submission_id)

    def set_tokens_asked(self, submission_id: int, tokens: int) -> None:
        """Record how many distinct tokens were asked about against an active submission."""
        self._session.execute(
            update(SubmissionRow)
            .where(SubmissionRow.id == submission_id)
            .values(tokens_asked=tokens)
        )

    def count_made_within(self, submission: Submission, window: timedelta) -> int:
        """The member's submissions of the same family/kind made in ``window`` up to
        ``submission``'s creation, ``submission`` included (superseded ones too)."""
        until = utc(submission.created_at)
        return int(
            self._session.scalar(
                select(func.count())
                .select_from(SubmissionRow)
                .where(
                    SubmissionRow.member_id == submission.member_id,
                    SubmissionRow.family_kind == submission.family_kind,
                    SubmissionRow.created_at > until - window,
                    SubmissionRow.created_at <= until,
                )
            )
            or 0
        )

    def previous_of(self, submission: Submission) -> Submission | None:
        """The member's submission of the same family/kind made before ``submission``."""
        row = self._session.scalars(
            select(SubmissionRow)
            .where(
                SubmissionRow.member_id == submission.member_id,
                SubmissionRow.family_kind == submission.family_kind,
                SubmissionRow.id != submission.id,
                SubmissionRow.created_at <= utc(submission.created_at),
            )
            .order_by(SubmissionRow.created_at.desc(), SubmissionRow.id.desc())
            .limit(1)
        ).one_or_none()
        return None if row is None else _submission(row)

    def extend(self, submission_id: int, expires_at: datetime) -> Submission:
        """Move an active or pending submission's expiry to ``expires_at`` (never earlier)."""
        self._session.execute(
            update(SubmissionRow)
            .where(
                SubmissionRow.id == submission_id,
                SubmissionRow.status.in_([live.value for live in _LIVE]),
                SubmissionRow.expires_at < utc(expires_at),
            )
            .values(expires_at=utc(expires_at))
        )
        extended = self.get(submission_id)
        if extended is None:
            raise NotFoundError("submission", submission_id)
        return extended

    def drop_payload(self, submission_id: int) -> None:
        """Drop a submission's payload and clusters; its blob file, if any, is retired (the
        store's sweep deletes it after the grace period, see :mod:`.blobs`)."""
        dropped = self._session.scalars(
            delete(SubmissionPayloadRow)
            .where(SubmissionPayloadRow.submission_id == submission_id)
            .returning(SubmissionPayloadRow.blob)
        ).all()
        self._session.execute(delete(ClusterRow).where(ClusterRow.submission_id == submission_id))
        store = blobs.store_for(self._session.get_bind())
        for name in dropped:
            if name is not None and store is not None:
                store.retire(name)

    def revive(
        self,
        submission_id: int,
        *,
        payload: bytes | StagedBlob,
        key_id: str,
        params_digest: bytes,
        created_at: datetime,
        expires_at: datetime,
        status: SubmissionStatus = SubmissionStatus.ACTIVE,
    ) -> Submission:
        """Make an ended submission active (or pending) again with its bytes re-sent by the
        member.

        The caller has ended the member's current submission of the family first; clusters of
        a MinHash submission are added again by the caller. ``key_id`` and ``params_digest``
        are the ones the bytes were sent under now: parameters can change without changing
        the bytes (capacities that round to the same ``m`` and ``k``).
        """
        if not is_valid_key_id(key_id):
            raise InvalidArgumentError(KEY_ID_RULE)
        require_sha256("parameters digest", params_digest)
        created, expires = utc(created_at), utc(expires_at)
        try:
            with self._session.begin_nested():
                result = self._session.execute(
                    update(SubmissionRow)
                    .where(
                        SubmissionRow.id == submission_id,
                        # A withdrawn submission belonged to a revoked member: it stays out.
                        SubmissionRow.status.not_in(
                            [live.value for live in _LIVE] + [SubmissionStatus.WITHDRAWN.value]
                        ),
                    )
                    .values(
                        status=status.value,
                        key_id=key_id,
                        params_digest=params_digest,
                        created_at=created,
                        superseded_at=None,
                        expires_at=expires,
                        byte_size=_payload_size(payload),
                        tokens_asked=0,  # a new life: its questions are counted afresh
                    )
                )
                if cast(CursorResult[Any], result).rowcount != 1:
                    raise ConflictError(f"submission {submission_id} cannot be revived")
                self._session.execute(
                    insert(SubmissionPayloadRow).values(
                        submission_id=submission_id, **self._payload_values(payload)
                    )
                )
        except IntegrityError as exc:
            self._session.expire_all()
            raise ConflictError(f"a concurrent submission revived {submission_id} first") from exc
        revived = self.get(submission_id)
        assert revived is not None
        return revived


def _payload_size(payload: bytes | StagedBlob) -> int:
    return payload.size if isinstance(payload, StagedBlob) else len(payload)
