"""Every SQL statement of the hub lives here, behind methods that take and return domain types.

Each repository wraps the caller's :class:`~sqlalchemy.orm.Session`. The caller owns the
transaction (one ``session_scope`` per unit of work): repositories flush so that ids and
constraints are visible, and use savepoints so a refused insert leaves the transaction usable,
but they never commit or roll back the caller's transaction.

Concurrency. On SQLite every transaction begins ``IMMEDIATE`` (see :mod:`.database`), so writers
are serialised by the database file itself. On PostgreSQL several hub replicas write at once;
where a read decides a write (the audit chain's last hash, a family's aggregates) the writer
first takes a transaction-scoped advisory lock, released by COMMIT or ROLLBACK. This relies on
PostgreSQL's default READ COMMITTED isolation, in which the read after the lock sees every
transaction that held the lock before.
"""

from __future__ import annotations

import builtins
import dataclasses
import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar, cast

from sqlalchemy import (
    ColumnElement,
    CursorResult,
    Select,
    and_,
    delete,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from sigshare.hub.domain import (
    GENESIS_HASH,
    NAME_RULE,
    SHA256_BYTES,
    AuditEntry,
    KindParameters,
    MinHashParameters,
    Principal,
    Role,
    Submission,
    SubmissionStatus,
    audit_entry_hash,
    canonical_json,
    is_valid_name,
    utc,
)
from sigshare.hub.errors import (
    AlreadyExistsError,
    AuditChainError,
    ConflictError,
    InvalidArgumentError,
    NotFoundError,
    PreconditionError,
)
from sigshare.hub.storage import blobs
from sigshare.hub.storage.blobs import BlobStore, StagedBlob
from sigshare.hub.storage.models import (
    AuditLogRow,
    ClusterRow,
    KindParametersRow,
    MinHashParametersRow,
    PrincipalRow,
    SubmissionPayloadRow,
    SubmissionRow,
)
from sigshare.sketch.keys import KEY_ID_RULE, is_valid_key_id

CREDENTIAL_ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{16,32}")
CREDENTIAL_ID_RULE = "16-32 characters of A-Z, a-z, 0-9, '_' or '-'"
MAX_FAMILY_KIND_LENGTH = 80
MAX_AUDIT_PAGE = 1000
_VERIFY_BATCH = 1000

AUDIT_LOCK_KEY = int.from_bytes(b"SIGSAUDT", "big")
"""Advisory lock serialising audit appends on PostgreSQL. Above 2³¹, so it can never equal a
``hashtext`` value (int4) used for the per-family locks."""

_AUDIT_FIELD_LIMITS = {"actor": 128, "action": 64, "target": 255}

_Parameters = TypeVar("_Parameters", KindParameters, MinHashParameters)
_ParametersRow = TypeVar("_ParametersRow", KindParametersRow, MinHashParametersRow)


def _backend(session: Session) -> str:
    return session.get_bind().dialect.name


def _require_sha256(what: str, digest: bytes) -> None:
    if not isinstance(digest, bytes) or len(digest) != SHA256_BYTES:
        raise InvalidArgumentError(f"{what} must be {SHA256_BYTES} bytes (a SHA-256 digest)")


def _principal(row: PrincipalRow) -> Principal:
    return Principal(
        id=row.id,
        name=row.name,
        role=Role(row.role),
        credential_id=row.credential_id,
        credential_hash=row.credential_hash,
        created_at=row.created_at,
        revoked_at=row.revoked_at,
    )


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


def _audit_entry(row: AuditLogRow) -> AuditEntry:
    return AuditEntry(
        id=row.id,
        at=row.at,
        actor=row.actor,
        action=row.action,
        target=row.target,
        details=json.loads(row.details),
        prev_hash=row.prev_hash,
        entry_hash=row.entry_hash,
    )


class PrincipalRepository:
    """Principals and their hashed credentials. The repository never sees a plaintext secret."""

    def __init__(self, session: Session) -> None:
        self._session = session

    def add(
        self,
        name: str,
        role: Role,
        credential_id: str,
        credential_hash: bytes,
        *,
        created_at: datetime | None = None,
    ) -> Principal:
        """Register a principal; :class:`AlreadyExistsError` if its name or credential is taken."""
        if not is_valid_name(name):
            raise InvalidArgumentError(f"principal name {name!r} is invalid: use {NAME_RULE}")
        try:
            role = Role(role)
        except ValueError:
            roles = ", ".join(Role)
            raise InvalidArgumentError(f"unknown role {role!r}; roles: {roles}") from None
        if not isinstance(credential_id, str) or not CREDENTIAL_ID_PATTERN.fullmatch(credential_id):
            raise InvalidArgumentError(f"credential id must be {CREDENTIAL_ID_RULE}")
        _require_sha256("credential hash", credential_hash)
        if self.get_by_name(name) is not None:
            raise AlreadyExistsError(f"principal {name!r} already exists")
        if self.get_by_credential_id(credential_id) is not None:
            raise AlreadyExistsError("that credential id is already in use")
        row = PrincipalRow(
            name=name,
            role=role.value,
            credential_id=credential_id,
            credential_hash=credential_hash,
            created_at=utc(created_at) if created_at is not None else datetime.now(UTC),
        )
        try:
            with self._session.begin_nested():
                self._session.add(row)
        except IntegrityError as exc:  # a concurrent transaction registered it first
            raise AlreadyExistsError(f"principal {name!r} or its credential id exists") from exc
        return _principal(row)

    def get_by_name(self, name: str) -> Principal | None:
        row = self._one(select(PrincipalRow).where(PrincipalRow.name == name))
        return None if row is None else _principal(row)

    def get_by_credential_id(self, credential_id: str) -> Principal | None:
        """The principal holding ``credential_id``, revoked or not: the caller decides."""
        row = self._one(select(PrincipalRow).where(PrincipalRow.credential_id == credential_id))
        return None if row is None else _principal(row)

    def list(self) -> builtins.list[Principal]:
        """Every principal, revoked ones included, by name."""
        rows = self._session.scalars(select(PrincipalRow).order_by(PrincipalRow.name))
        return [_principal(row) for row in rows]

    def revoke(self, name: str, at: datetime) -> Principal:
        """Revoke ``name``'s credential from ``at`` on. Revoking again keeps the first time."""
        # One conditional UPDATE, so two concurrent revocations cannot overwrite each other.
        self._session.execute(
            update(PrincipalRow)
            .where(PrincipalRow.name == name, PrincipalRow.revoked_at.is_(None))
            .values(revoked_at=utc(at))
        )
        principal = self.get_by_name(name)
        if principal is None:
            raise NotFoundError("principal", name)
        return principal

    def rotate(self, name: str, credential_id: str, credential_hash: bytes) -> Principal:
        """Replace the credential of ``name``, which must not be revoked: the old one matches
        nothing from this statement on. :class:`NotFoundError` for an unknown name,
        :class:`PreconditionError` for a revoked principal (both change nothing)."""
        if not isinstance(credential_id, str) or not CREDENTIAL_ID_PATTERN.fullmatch(credential_id):
            raise InvalidArgumentError(f"credential id must be {CREDENTIAL_ID_RULE}")
        _require_sha256("credential hash", credential_hash)
        if self.get_by_credential_id(credential_id) is not None:
            raise AlreadyExistsError("that credential id is already in use")
        try:
            with self._session.begin_nested():
                # Conditional, so a revocation committed first is never undone by a rotation.
                result = self._session.execute(
                    update(PrincipalRow)
                    .where(PrincipalRow.name == name, PrincipalRow.revoked_at.is_(None))
                    .values(credential_id=credential_id, credential_hash=credential_hash)
                )
        except IntegrityError as exc:  # a concurrent transaction took the credential id
            raise AlreadyExistsError("that credential id is already in use") from exc
        principal = self.get_by_name(name)
        if principal is None:
            raise NotFoundError("principal", name)
        if cast(CursorResult[Any], result).rowcount != 1:
            raise PreconditionError(
                f"principal {name!r} is revoked: its credential cannot be rotated"
            )
        return principal

    def lock_for_submission(self, principal_id: int) -> Principal | None:
        """The principal, share-locked until the transaction ends (PostgreSQL), so that a
        concurrent revocation waits for a submission in flight, or the submission sees it.

        Writers that lock families take this lock first, as revocation does (it updates the
        row, then locks the member's families): the same order everywhere, so no deadlock.
        """
        statement = select(PrincipalRow).where(PrincipalRow.id == principal_id)
        if _backend(self._session) == "postgresql":
            statement = statement.with_for_update(read=True)
        row = self._session.scalars(
            statement, execution_options={"populate_existing": True}
        ).one_or_none()
        return None if row is None else _principal(row)

    def _one(self, statement: Select[PrincipalRow]) -> PrincipalRow | None:
        return self._session.scalars(statement).one_or_none()


class ParameterRepository:
    """The per-kind Bloom parameters and per-family MinHash parameters the hub publishes."""

    def __init__(self, session: Session) -> None:
        self._session = session

    def get_kind(self, kind: str) -> KindParameters | None:
        return self._get(KindParametersRow, KindParameters, kind)

    def set_kind(self, parameters: KindParameters) -> KindParameters:
        """Insert or replace the parameters of ``parameters.kind``."""
        return self._upsert(KindParametersRow, KindParameters, "kind", parameters)

    def list_kinds(self) -> list[KindParameters]:
        return self._list(KindParametersRow, KindParameters, KindParametersRow.kind)

    def get_minhash_family(self, family: str) -> MinHashParameters | None:
        return self._get(MinHashParametersRow, MinHashParameters, family)

    def set_minhash_family(self, parameters: MinHashParameters) -> MinHashParameters:
        """Insert or replace the parameters of ``parameters.family``."""
        return self._upsert(MinHashParametersRow, MinHashParameters, "family", parameters)

    def list_minhash_families(self) -> list[MinHashParameters]:
        return self._list(MinHashParametersRow, MinHashParameters, MinHashParametersRow.family)

    # Both tables hold exactly the fields of their domain type, so one conversion serves both.

    @staticmethod
    def _domain(row: _ParametersRow, domain: type[_Parameters]) -> _Parameters:
        return domain(**{f.name: getattr(row, f.name) for f in dataclasses.fields(domain)})

    def _get(
        self, model: type[_ParametersRow], domain: type[_Parameters], key: str
    ) -> _Parameters | None:
        row = self._session.get(model, key)
        return None if row is None else self._domain(row, domain)

    def _list(
        self, model: type[_ParametersRow], domain: type[_Parameters], order: Any
    ) -> list[_Parameters]:
        return [
            self._domain(row, domain)
            for row in self._session.scalars(select(model).order_by(order))
        ]

    def _upsert(
        self,
        model: type[_ParametersRow],
        domain: type[_Parameters],
        key: str,
        parameters: _Parameters,
    ) -> _Parameters:
        # INSERT … ON CONFLICT DO UPDATE … RETURNING: two admins setting the same new kind at
        # once cannot collide, unlike read-then-insert. PostgreSQL and SQLite (≥ 3.35) spell it
        # alike; only the construct's module differs.
        dialect_insert: Any = (
            postgresql.insert if _backend(self._session) == "postgresql" else sqlite.insert
        )
        values = dataclasses.asdict(parameters)
        values["updated_at"] = utc(parameters.updated_at)
        statement = dialect_insert(model).values(values)
        statement = statement.on_conflict_do_update(
            index_elements=[key],
            set_={name: statement.excluded[name] for name in values if name != key},
        )
        row = self._session.scalars(
            statement.returning(model), execution_options={"populate_existing": True}
        ).one()
        return self._domain(row, domain)


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
        if _backend(self._session) == "postgresql":
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
    ) -> Submission:
        """Store a new active submission and supersede the member's previous active one.

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
            status=SubmissionStatus.ACTIVE.value,
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
                        SubmissionRow.status == SubmissionStatus.ACTIVE.value,
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
        """The member's active submissions, by family/kind."""
        rows = self._session.scalars(
            select(SubmissionRow)
            .where(
                SubmissionRow.member_id == member_id,
                SubmissionRow.status == SubmissionStatus.ACTIVE.value,
            )
            .order_by(SubmissionRow.family_kind)
        )
        return [_submission(row) for row in rows]

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
                (PrincipalRow.revoked_at.is_(None)) | (PrincipalRow.revoked_at > utc(now)),
            )
            .order_by(SubmissionRow.member_id)
        )
        return [_submission(row) for row in rows]

    def end(self, submission_id: int, status: SubmissionStatus, at: datetime) -> None:
        """Take an active submission out of service and drop its payload and clusters.

        Ended sketches are never read again (a member re-sending old content revives the row
        with the bytes it sends), so the hub keeps only their metadata.
        """
        if status is SubmissionStatus.ACTIVE:
            raise InvalidArgumentError("end() moves a submission out of the active state")
        result = self._session.execute(
            update(SubmissionRow)
            .where(
                SubmissionRow.id == submission_id,
                SubmissionRow.status == SubmissionStatus.ACTIVE.value,
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
        """Move an active submission's expiry to ``expires_at`` (never earlier)."""
        self._session.execute(
            update(SubmissionRow)
            .where(
                SubmissionRow.id == submission_id,
                SubmissionRow.status == SubmissionStatus.ACTIVE.value,
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
    ) -> Submission:
        """Make an ended submission active again with its bytes re-sent by the member.

        The caller has ended the member's current submission of the family first; clusters of
        a MinHash submission are added again by the caller. ``key_id`` and ``params_digest``
        are the ones the bytes were sent under now: parameters can change without changing
        the bytes (capacities that round to the same ``m`` and ``k``).
        """
        if not is_valid_key_id(key_id):
            raise InvalidArgumentError(KEY_ID_RULE)
        _require_sha256("parameters digest", params_digest)
        created, expires = utc(created_at), utc(expires_at)
        try:
            with self._session.begin_nested():
                result = self._session.execute(
                    update(SubmissionRow)
                    .where(
                        SubmissionRow.id == submission_id,
                        # A withdrawn submission belonged to a revoked member: it stays out.
                        SubmissionRow.status.not_in(
                            [SubmissionStatus.ACTIVE.value, SubmissionStatus.WITHDRAWN.value]
                        ),
                    )
                    .values(
                        status=SubmissionStatus.ACTIVE.value,
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


class AuditRepository:
    """The append-only, hash-chained audit log. There is deliberately no update or delete."""

    def __init__(self, session: Session) -> None:
        self._session = session

    def append(
        self,
        actor: str,
        action: str,
        target: str,
        details: Mapping[str, Any],
        *,
        at: datetime | None = None,
    ) -> AuditEntry:
        """Chain a new entry onto the newest one; ``at`` defaults to now."""
        for field, value in (("actor", actor), ("action", action), ("target", target)):
            limit = _AUDIT_FIELD_LIMITS[field]
            if not isinstance(value, str) or not 1 <= len(value) <= limit:
                raise InvalidArgumentError(f"audit {field} must be 1-{limit} characters")
        try:
            details_json = canonical_json(dict(details))
        except (TypeError, ValueError) as exc:
            raise InvalidArgumentError(f"audit details must be plain JSON: {exc}") from exc
        stored_details = json.loads(details_json)  # hash exactly what verify() will read back
        moment = utc(at) if at is not None else datetime.now(UTC)

        if _backend(self._session) == "postgresql":
            # Without it, two replicas read the same last hash and fork the chain (the unique
            # prev_hash then rejects the second). SQLite's BEGIN IMMEDIATE already serialises.
            self._session.execute(
                text("SELECT pg_advisory_xact_lock(:key)"), {"key": AUDIT_LOCK_KEY}
            )
        last_hash = self._session.scalar(
            select(AuditLogRow.entry_hash).order_by(AuditLogRow.id.desc()).limit(1)
        )
        prev_hash = GENESIS_HASH if last_hash is None else last_hash
        row = AuditLogRow(
            at=moment,
            actor=actor,
            action=action,
            target=target,
            details=details_json,
            prev_hash=prev_hash,
            entry_hash=audit_entry_hash(
                prev_hash,
                at=moment,
                actor=actor,
                action=action,
                target=target,
                details=stored_details,
            ),
        )
        self._session.add(row)
        self._session.flush()
        return _audit_entry(row)

    def verify(self) -> int:
        """Walk the chain in id order; the number of entries, or :class:`AuditChainError`.

        Detects a modified entry (its hash no longer matches its fields) and a deleted, inserted
        or reordered one (its successor's ``prev_hash`` no longer matches). Deleting the newest
        entries leaves a shorter valid chain: anchor the head hash elsewhere to catch that.
        """
        # Plain rows, streamed: a long log never fills the session's identity map.
        statement = (
            select(
                AuditLogRow.id,
                AuditLogRow.at,
                AuditLogRow.actor,
                AuditLogRow.action,
                AuditLogRow.target,
                AuditLogRow.details,
                AuditLogRow.prev_hash,
                AuditLogRow.entry_hash,
            )
            .order_by(AuditLogRow.id)
            .execution_options(yield_per=_VERIFY_BATCH)
        )
        expected_prev = GENESIS_HASH
        checked = 0
        for row in self._session.execute(statement):
            if row.prev_hash != expected_prev:
                raise AuditChainError(
                    row.id,
                    "prev_hash does not match the previous entry's hash: "
                    "an entry before it was removed, inserted or reordered",
                )
            try:
                details = json.loads(row.details)
            except ValueError:
                raise AuditChainError(row.id, "details are not valid JSON") from None
            recomputed = audit_entry_hash(
                row.prev_hash,
                at=row.at,
                actor=row.actor,
                action=row.action,
                target=row.target,
                details=details,
            )
            if recomputed != row.entry_hash:
                raise AuditChainError(row.id, "entry hash does not match its contents")
            expected_prev = row.entry_hash
            checked += 1
        return checked

    def search(
        self,
        *,
        actor: str | None = None,
        action: str | None = None,
        limit: int = 100,
        before_id: int | None = None,
    ) -> list[AuditEntry]:
        """Newest entries first; pass the smallest id seen as ``before_id`` for the next page."""
        if not 1 <= limit <= MAX_AUDIT_PAGE:
            raise InvalidArgumentError(f"limit must be between 1 and {MAX_AUDIT_PAGE}")
        statement = select(AuditLogRow).order_by(AuditLogRow.id.desc()).limit(limit)
        if actor is not None:
            statement = statement.where(AuditLogRow.actor == actor)
        if action is not None:
            statement = statement.where(AuditLogRow.action == action)
        if before_id is not None:
            statement = statement.where(AuditLogRow.id < before_id)
        return [_audit_entry(row) for row in self._session.scalars(statement)]
