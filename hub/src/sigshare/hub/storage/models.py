"""ORM rows of the hub database (SQLAlchemy 2, typed ``Mapped[]``).

Rows never leave the storage package: repositories turn them into :mod:`sigshare.hub.domain`
types. The schema itself is created and changed only by the Alembic migrations next to this
module; ``tests/hub/storage/test_migrations.py`` checks that the migrations and these models agree.

Portability rules, so one contract suite passes on SQLite and PostgreSQL:

- every constraint and index has a name (the naming convention below), so migrations can refer
  to them and SQLite batch migrations can recreate them;
- timestamps go through :class:`UTCDateTime`: aware UTC in Python, ``timestamptz`` on
  PostgreSQL, an ISO string on SQLite — which compares correctly as text because it is always UTC;
- digests are 32-byte blobs with a length check; enums are short strings with a check.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, ClassVar

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    Dialect,
    Double,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

from sigshare.hub.domain import Role, SubmissionStatus, utc
from sigshare.keyring import SEALING_PUBLIC_BYTES, SIGNING_PUBLIC_BYTES

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

ACTIVE_ONLY = "status = 'active'"
"""Predicate of the partial unique index that keeps one active submission per member and family."""


def _one_of(column: str, values: type[StrEnum]) -> str:
    return f"{column} IN ({', '.join(repr(str(value)) for value in values)})"


def _sha256_length(column: str) -> str:
    return f"length({column}) = 32"


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend; naive datetimes are refused on the way in."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else utc(value)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        # SQLite hands back the naive UTC value it was given; PostgreSQL an aware one in the
        # session's time zone.
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UTCDateTime(),
        bytes: LargeBinary(),
    }


metadata = Base.metadata


class PrincipalRow(Base):
    __tablename__ = "principals"
    __table_args__ = (
        CheckConstraint(_one_of("role", Role), name="role_valid"),
        CheckConstraint("length(name) BETWEEN 1 AND 64", name="name_length"),
        CheckConstraint("length(credential_id) BETWEEN 16 AND 32", name="credential_id_length"),
        CheckConstraint(_sha256_length("credential_hash"), name="credential_hash_length"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    credential_id: Mapped[str] = mapped_column(String(32), unique=True)
    credential_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    created_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]


class KindParametersRow(Base):
    __tablename__ = "kind_parameters"
    __table_args__ = (
        CheckConstraint("quorum >= 2", name="quorum_at_least_two"),
        CheckConstraint("retention_days >= 1", name="retention_positive"),
        CheckConstraint("max_members >= 2", name="max_members_at_least_two"),
        CheckConstraint("replace_interval_seconds >= 0", name="replace_interval_non_negative"),
    )

    kind: Mapped[str] = mapped_column(String(64), primary_key=True)
    key_id: Mapped[str] = mapped_column(String(32))
    capacity: Mapped[int] = mapped_column(BigInteger)
    forum_fpr: Mapped[float] = mapped_column(Double)
    """Forum-level false-shared rate; filters are sized for forum_fpr / (max_members − 1)."""
    max_members: Mapped[int] = mapped_column(Integer)
    m: Mapped[int] = mapped_column(BigInteger)
    k: Mapped[int] = mapped_column(Integer)
    quorum: Mapped[int] = mapped_column(Integer)
    retention_days: Mapped[int] = mapped_column(Integer)
    reveal_members: Mapped[bool]
    replace_interval_seconds: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[datetime]


class MinHashParametersRow(Base):
    __tablename__ = "minhash_parameters"
    __table_args__ = (
        CheckConstraint("quorum >= 2", name="quorum_at_least_two"),
        CheckConstraint("retention_days >= 1", name="retention_positive"),
    )

    family: Mapped[str] = mapped_column(String(64), primary_key=True)
    key_id: Mapped[str] = mapped_column(String(32))
    num_perm: Mapped[int] = mapped_column(Integer)
    shingle_unit: Mapped[str] = mapped_column(String(8))
    shingle_size: Mapped[int] = mapped_column(Integer)
    drop_stopwords: Mapped[bool] = mapped_column(default=False)
    core_rules: Mapped[int] = mapped_column(Integer, default=1)
    threshold: Mapped[float] = mapped_column(Double)
    cluster_threshold: Mapped[float | None] = mapped_column(Double)
    quorum: Mapped[int] = mapped_column(Integer)
    retention_days: Mapped[int] = mapped_column(Integer)
    reveal_members: Mapped[bool]
    updated_at: Mapped[datetime]


class SubmissionRow(Base):
    __tablename__ = "submissions"
    __table_args__ = (
        UniqueConstraint("member_id", "family_kind", "content_sha256"),
        Index("ix_submissions_family_kind_key_id_status", "family_kind", "key_id", "status"),
        Index(
            "uq_submissions_one_active",
            "member_id",
            "family_kind",
            unique=True,
            sqlite_where=text(ACTIVE_ONLY),
            postgresql_where=text(ACTIVE_ONLY),
        ),
        CheckConstraint(_one_of("status", SubmissionStatus), name="status_valid"),
        CheckConstraint(_sha256_length("params_digest"), name="params_digest_length"),
        CheckConstraint(_sha256_length("content_sha256"), name="content_sha256_length"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("principals.id"))
    family_kind: Mapped[str] = mapped_column(String(80))
    key_id: Mapped[str] = mapped_column(String(32))
    params_digest: Mapped[bytes] = mapped_column(LargeBinary(32))
    content_sha256: Mapped[bytes] = mapped_column(LargeBinary(32))
    declared_count: Mapped[int] = mapped_column(BigInteger)
    byte_size: Mapped[int] = mapped_column(BigInteger)
    set_bits: Mapped[int | None] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(16))
    tokens_asked: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    """Bloom filters: distinct tokens the member asked about against this submission."""
    created_at: Mapped[datetime]
    superseded_at: Mapped[datetime | None]
    expires_at: Mapped[datetime]


class SubmissionPayloadRow(Base):
    """The encoded sketch, kept apart so that queries on submissions never load it: its bytes,
    or the name of its file in the hub's blob store (:mod:`.blobs`)."""

    __tablename__ = "submission_payloads"
    __table_args__ = (
        CheckConstraint("(payload IS NULL) <> (blob IS NULL)", name="payload_or_blob"),
    )

    submission_id: Mapped[int] = mapped_column(
        ForeignKey("submissions.id", ondelete="CASCADE"), primary_key=True
    )
    payload: Mapped[bytes | None] = mapped_column(LargeBinary)
    blob: Mapped[str | None] = mapped_column(String(81))


class AuditLogRow(Base):
    """Append-only by contract: the repository has no update or delete, the hash chain shows any."""

    __tablename__ = "audit_log"
    __table_args__ = (
        CheckConstraint(_sha256_length("prev_hash"), name="prev_hash_length"),
        CheckConstraint(_sha256_length("entry_hash"), name="entry_hash_length"),
        # Never reuse an id, even after the newest row was deleted: ids name entries in reports.
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime]
    actor: Mapped[str] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(String(255))
    details: Mapped[str] = mapped_column(Text)
    """Canonical JSON (sorted keys, no whitespace) of the entry's details."""
    prev_hash: Mapped[bytes] = mapped_column(LargeBinary(32), unique=True)
    """Unique: two entries claiming the same predecessor would be a fork of the chain."""
    entry_hash: Mapped[bytes] = mapped_column(LargeBinary(32), unique=True)


class FamilyStateRow(Base):
    """Per indicator kind or MinHash family: the parameters its active submissions were made
    under, and a version that grows with every change to that set.

    For MinHash families ``derived_version`` is the version the stored campaigns were computed at.
    """

    __tablename__ = "family_state"
    __table_args__ = (
        CheckConstraint(_sha256_length("params_digest"), name="params_digest_length"),
    )

    family_kind: Mapped[str] = mapped_column(String(80), primary_key=True)
    key_id: Mapped[str] = mapped_column(String(32))
    params_digest: Mapped[bytes] = mapped_column(LargeBinary(32))
    m: Mapped[int | None] = mapped_column(BigInteger)
    version: Mapped[int] = mapped_column(BigInteger)
    derived_version: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[datetime]


class QueryLedgerRow(Base):
    """The distinct tokens a member asked about for one kind, each with when it was last asked
    (``sigshare.hub.matching.query_ledger``): what the query budgets are counted from.

    Tokens of the member's own values only — the hub answers nothing else — kept sorted as the
    member sent them (16 bytes each), times as little-endian int64 microseconds since the epoch.
    """

    __tablename__ = "query_ledgers"
    __table_args__ = (CheckConstraint("entries >= 0", name="entries_non_negative"),)

    member_id: Mapped[int] = mapped_column(ForeignKey("principals.id"), primary_key=True)
    kind: Mapped[str] = mapped_column(String(64), primary_key=True)
    entries: Mapped[int] = mapped_column(BigInteger)
    tokens: Mapped[bytes] = mapped_column(LargeBinary)
    asked_at: Mapped[bytes] = mapped_column(LargeBinary)
    updated_at: Mapped[datetime]


class ConfirmationRow(Base):
    """A member's statement that it holds the item behind ``token`` (never the item itself)."""

    __tablename__ = "confirmations"
    __table_args__ = (
        UniqueConstraint("kind", "key_id", "token", "member_id"),
        CheckConstraint("length(token) = 16", name="token_length"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(64))
    key_id: Mapped[str] = mapped_column(String(32))
    token: Mapped[bytes] = mapped_column(LargeBinary(16))
    member_id: Mapped[int] = mapped_column(ForeignKey("principals.id"), index=True)
    category: Mapped[str] = mapped_column(String(64))
    first_seen: Mapped[datetime | None]
    last_seen: Mapped[datetime | None]
    confirmed_at: Mapped[datetime]


class SharedIndicatorRow(Base):
    """A token confirmed by at least quorum members: what coordinators review."""

    __tablename__ = "shared_indicators"
    __table_args__ = (
        UniqueConstraint("kind", "key_id", "token"),
        CheckConstraint("length(token) = 16", name="token_length"),
        Index("ix_shared_indicators_status", "status", "id"),
        Index("ix_shared_indicators_last_seen", "last_seen", "id"),
        Index("ix_shared_indicators_reporters", "reporters", "id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    public_id: Mapped[str] = mapped_column(String(32), unique=True)
    kind: Mapped[str] = mapped_column(String(64))
    key_id: Mapped[str] = mapped_column(String(32))
    token: Mapped[bytes] = mapped_column(LargeBinary(16))
    reporters: Mapped[int] = mapped_column(Integer)
    categories: Mapped[str] = mapped_column(Text)
    """JSON list of the reporters' categories, sorted, distinct."""
    first_seen: Mapped[datetime | None]
    last_seen: Mapped[datetime | None]
    status: Mapped[str] = mapped_column(String(16))
    assignee: Mapped[str | None] = mapped_column(String(64))
    member_note: Mapped[str | None] = mapped_column(Text)
    """The coordinators' note for the members who reported it (sent with their matches)."""
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class ClusterRow(Base):
    """One shared prompt cluster of a MinHash submission; its signature is row ``row_index`` of
    the submission's signature payload."""

    __tablename__ = "clusters"
    __table_args__ = (UniqueConstraint("submission_id", "cluster_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    submission_id: Mapped[int] = mapped_column(
        ForeignKey("submissions.id", ondelete="CASCADE"), index=True
    )
    row_index: Mapped[int] = mapped_column(Integer)
    cluster_id: Mapped[str] = mapped_column(String(32))
    volume: Mapped[int] = mapped_column(BigInteger)
    category: Mapped[str] = mapped_column(String(64))
    first_seen: Mapped[datetime | None]
    last_seen: Mapped[datetime | None]
    core_size: Mapped[int] = mapped_column(Integer, default=0)
    """Distinct shingles in the template core (0: not stated, clusters sent before core rules 2)."""


class CampaignRow(Base):
    """A connected component of cross-member cluster matches with at least quorum members.

    Ids survive recomputation (a new component inherits the id of the old one it overlaps most),
    so review decisions stay attached; ``active`` is false once no current component inherits it.
    """

    __tablename__ = "campaigns"
    __table_args__ = (
        Index("ix_campaigns_family_active", "family", "active"),
        Index("ix_campaigns_status", "status", "id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    public_id: Mapped[str] = mapped_column(String(32), unique=True)
    family: Mapped[str] = mapped_column(String(64))
    members: Mapped[int] = mapped_column(Integer)
    similarity: Mapped[float] = mapped_column(Double)
    """Lowest estimated Jaccard among the matches that hold the component together."""
    volume: Mapped[int] = mapped_column(BigInteger)
    categories: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16))
    assignee: Mapped[str | None] = mapped_column(String(64))
    member_note: Mapped[str | None] = mapped_column(Text)
    """The coordinators' note for the members whose clusters it connects."""
    active: Mapped[bool]
    signature: Mapped[bytes] = mapped_column(LargeBinary)
    """A representative MinHash signature (its best-connected cluster's): lets the campaign be
    recognised when every member resubmits it under new cluster ids."""
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class CampaignClusterRow(Base):
    """Membership of a member's cluster in a campaign, with its best cross-member match.

    Keyed by the member and its own cluster id rather than by a cluster row: members keep a
    cluster's id when they resubmit it, so memberships (and with them campaign ids and review
    decisions) carry over from one submission to the next.
    """

    __tablename__ = "campaign_clusters"

    campaign_id: Mapped[int] = mapped_column(
        ForeignKey("campaigns.id", ondelete="CASCADE"), primary_key=True
    )
    member_id: Mapped[int] = mapped_column(ForeignKey("principals.id"), primary_key=True)
    cluster_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    similarity: Mapped[float] = mapped_column(Double)

    __table_args__ = (
        Index("ix_campaign_clusters_member_id_cluster_id", "member_id", "cluster_id"),
    )


class ReviewEventRow(Base):
    """One step in the review history of a shared indicator or campaign (append-only)."""

    __tablename__ = "review_events"
    __table_args__ = (
        CheckConstraint("record_type IN ('indicator', 'campaign')", name="record_type_valid"),
        CheckConstraint("kind IN ('status', 'assign', 'note')", name="kind_valid"),
        Index("ix_review_events_record", "record_type", "record_id", "id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    record_type: Mapped[str] = mapped_column(String(16))
    record_id: Mapped[str] = mapped_column(String(32))
    """The record's public (opaque) id."""
    actor: Mapped[str] = mapped_column(String(128))
    at: Mapped[datetime]
    kind: Mapped[str] = mapped_column(String(16))
    """What the event did: ``status``, ``assign`` or ``note`` (:class:`ReviewEventKind`)."""
    from_status: Mapped[str | None] = mapped_column(String(16))
    to_status: Mapped[str | None] = mapped_column(String(16))
    assignee: Mapped[str | None] = mapped_column(String(64))
    note: Mapped[str | None] = mapped_column(Text)
    member_note: Mapped[str | None] = mapped_column(Text)
    """The note for members the step gave the record, if it gave one."""


class WebSessionRow(Base):
    """A signed-in coordinator's browser session. Only the token's SHA-256 is stored."""

    __tablename__ = "web_sessions"
    __table_args__ = (CheckConstraint(_sha256_length("token_hash"), name="token_hash_length"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_hash: Mapped[bytes] = mapped_column(LargeBinary(32), unique=True)
    principal_id: Mapped[int] = mapped_column(ForeignKey("principals.id"), index=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    ended_at: Mapped[datetime | None]


KEY_PENDING = "approved_at IS NULL AND retired_at IS NULL"
KEY_APPROVED = "approved_at IS NOT NULL AND retired_at IS NULL"
"""Predicates of the partial unique indexes that keep one pending and one approved key
registration per principal."""


class MemberKeyRow(Base):
    """A principal's registered public keys (sealing and signing); never a private key."""

    __tablename__ = "member_keys"
    __table_args__ = (
        UniqueConstraint("principal_id", "fingerprint"),
        Index(
            "uq_member_keys_one_pending",
            "principal_id",
            unique=True,
            sqlite_where=text(KEY_PENDING),
            postgresql_where=text(KEY_PENDING),
        ),
        Index(
            "uq_member_keys_one_approved",
            "principal_id",
            unique=True,
            sqlite_where=text(KEY_APPROVED),
            postgresql_where=text(KEY_APPROVED),
        ),
        CheckConstraint(
            f"length(sealing_public) = {SEALING_PUBLIC_BYTES}", name="sealing_public_length"
        ),
        CheckConstraint(
            f"length(signing_public) = {SIGNING_PUBLIC_BYTES}", name="signing_public_length"
        ),
        CheckConstraint("(approved_at IS NULL) = (approved_by IS NULL)", name="approval_complete"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    principal_id: Mapped[int] = mapped_column(ForeignKey("principals.id"))
    sealing_public: Mapped[bytes] = mapped_column(LargeBinary)
    signing_public: Mapped[bytes] = mapped_column(LargeBinary(SIGNING_PUBLIC_BYTES))
    fingerprint: Mapped[str] = mapped_column(String(64))
    registered_at: Mapped[datetime]
    approved_at: Mapped[datetime | None]
    approved_by: Mapped[str | None] = mapped_column(String(128))
    retired_at: Mapped[datetime | None]


class KeyRotationRow(Base):
    """One distribution of a new forum secret; a key id is rotated to at most once."""

    __tablename__ = "key_rotations"
    __table_args__ = (
        CheckConstraint("recipients >= 1", name="recipients_positive"),
        CheckConstraint("total_bytes >= 0", name="total_bytes_non_negative"),
    )

    key_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    custodian_id: Mapped[int] = mapped_column(ForeignKey("principals.id"))
    created_at: Mapped[datetime]
    activate_at: Mapped[datetime | None]
    recipients: Mapped[int] = mapped_column(Integer)
    total_bytes: Mapped[int] = mapped_column(BigInteger)


class KeyEnvelopeRow(Base):
    """The forum secret of one rotation sealed to one recipient: opaque bytes the hub relays
    and cannot open, with when the recipient first and last fetched them."""

    __tablename__ = "key_envelopes"
    __table_args__ = (
        UniqueConstraint("key_id", "recipient_id"),
        CheckConstraint("byte_size = length(envelope)", name="byte_size_matches"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key_id: Mapped[str] = mapped_column(ForeignKey("key_rotations.key_id"))
    recipient_id: Mapped[int] = mapped_column(ForeignKey("principals.id"), index=True)
    member_key_id: Mapped[int] = mapped_column(ForeignKey("member_keys.id"))
    """The registration the envelope is sealed to."""
    envelope: Mapped[bytes] = mapped_column(LargeBinary)
    byte_size: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime]
    first_fetched_at: Mapped[datetime | None]
    last_fetched_at: Mapped[datetime | None]


class RotationRequestRow(Base):
    """A reason to rotate the forum secret, due until a rotation satisfies it."""

    __tablename__ = "rotation_requests"
    __table_args__ = (CheckConstraint("length(reason) BETWEEN 1 AND 200", name="reason_length"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    reason: Mapped[str] = mapped_column(String(200))
    requested_by: Mapped[str] = mapped_column(String(128))
    requested_at: Mapped[datetime]
    satisfied_by: Mapped[str | None] = mapped_column(ForeignKey("key_rotations.key_id"))
