"""The hub's domain types: what repositories return and services pass around.

Plain frozen dataclasses and enums — no SQLAlchemy, no gRPC — so the service layer and the
transports never touch ORM rows. Timestamps are timezone-aware UTC; the caller owns the clock
(repositories take the time they should record instead of reading it themselves).

The audit log's hash chain is defined here, next to :class:`AuditEntry`, so the rule can be checked
by anything holding the entries, not only by the repository that writes them.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal

from sigshare.hub.errors import InvalidArgumentError
from sigshare.sketch.bloom import BloomParams
from sigshare.sketch.errors import ParameterError
from sigshare.sketch.lsh import Banding, optimal_banding
from sigshare.sketch.minhash import MinHashParams

NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
NAME_RULE = "1-64 characters of a-z, 0-9, '.', '_' or '-', starting with a letter or digit"
MINHASH_FAMILY_PREFIX = "minhash:"
SHA256_BYTES = 32
GENESIS_HASH = bytes(SHA256_BYTES)
"""``prev_hash`` of the first audit entry."""

ShingleUnit = Literal["word", "char"]


class Role(StrEnum):
    """What a principal may do. Stable strings: they are stored in the database."""

    MEMBER = "member"
    COORDINATOR = "coordinator"
    ADMIN = "admin"
    CUSTODIAN = "custodian"
    """Generates each new forum secret and seals it to the members; holds no member rights."""


class SubmissionStatus(StrEnum):
    """Life cycle of a submission. Stable strings: they are stored in the database."""

    ACTIVE = "active"
    """The member's current sketch of that family/kind: the one results are computed from."""
    SUPERSEDED = "superseded"
    """Replaced by a newer submission of the same member and family/kind."""
    EXPIRED = "expired"
    """Outlived the retention window without being replaced."""
    WITHDRAWN = "withdrawn"
    """Taken out of every aggregate when its member was revoked; never active again."""
    PENDING = "pending"
    """Sent under the key epoch the forum is rotating to, ahead of the switch: counted nowhere
    until the switch (``sigshare-hub params epoch``) makes it the member's active submission."""


def is_valid_name(name: str) -> bool:
    """Names of principals, kinds and MinHash families share one rule: :data:`NAME_RULE`."""
    return isinstance(name, str) and NAME_PATTERN.fullmatch(name) is not None


def utc(moment: datetime) -> datetime:
    """``moment`` in UTC; naive datetimes are refused rather than guessed at."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise InvalidArgumentError(f"timestamps must be timezone-aware, got naive {moment}")
    return moment.astimezone(UTC)


def minhash_family_kind(family: str) -> str:
    """The ``family_kind`` under which submissions of MinHash family ``family`` are stored."""
    return MINHASH_FAMILY_PREFIX + family


@functools.lru_cache(maxsize=256)
def _cached_banding(threshold: float, num_perm: int) -> Banding:
    # The search tries every (b, r) with b·r ≤ P; parameters rarely change, so compute once.
    return optimal_banding(threshold, num_perm)


def _check_policy(name: str, quorum: int, retention_days: int) -> None:
    if not is_valid_name(name):
        raise ParameterError(f"name {name!r} is invalid: use {NAME_RULE}")
    if quorum < 2:
        raise ParameterError(f"quorum must be at least 2, got {quorum}")
    if retention_days < 1:
        raise ParameterError(f"retention must be at least one day, got {retention_days}")


@dataclass(frozen=True, slots=True, kw_only=True)
class Principal:
    """A member firm, coordinator or admin, identified by a bearer credential."""

    id: int
    name: str
    role: Role
    credential_id: str
    """Public lookup prefix of the credential."""
    credential_hash: bytes = field(repr=False)
    """SHA-256 of the credential's secret part; the hub never stores the secret itself."""
    created_at: datetime
    revoked_at: datetime | None = None

    def is_active(self, at: datetime) -> bool:
        """Whether the credential is still valid at ``at`` (revocation takes effect at its time)."""
        return self.revoked_at is None or at < self.revoked_at


DEFAULT_MAX_MEMBERS = 32
DEFAULT_REPLACE_INTERVAL_SECONDS = 3600
MAX_REPLACE_INTERVAL_SECONDS = 7 * 86_400


@dataclass(frozen=True, slots=True, kw_only=True)
class KindParameters:
    """The Bloom parameters and forum policy the hub publishes for one indicator kind.

    The operator states the forum-level false-shared rate ``forum_fpr`` (how often a value no
    other member holds is reported as held by others) and the forum size ``max_members``; each
    filter is sized for the per-filter rate ``forum_fpr / (max_members − 1)``, because a value
    is tested against every other member's own filter.
    """

    kind: str
    key_id: str
    capacity: int
    forum_fpr: float
    max_members: int = DEFAULT_MAX_MEMBERS
    m: int
    k: int
    quorum: int = 2
    retention_days: int = 30
    reveal_members: bool = False
    replace_interval_seconds: int = DEFAULT_REPLACE_INTERVAL_SECONDS
    """Shortest time between two replacements of a member's filter (0: no limit)."""
    updated_at: datetime

    def __post_init__(self) -> None:
        _check_policy(self.kind, self.quorum, self.retention_days)
        if not 0 <= self.replace_interval_seconds <= MAX_REPLACE_INTERVAL_SECONDS:
            raise ParameterError(
                f"replace interval must be 0 to {MAX_REPLACE_INTERVAL_SECONDS} seconds, "
                f"got {self.replace_interval_seconds}"
            )
        if self.quorum > self.max_members:
            raise ParameterError(
                f"quorum {self.quorum} exceeds the forum size of {self.max_members} members"
            )
        self.bloom_params()  # the sketch core owns the rules for m, k, capacity, FPR and key id

    @property
    def target_fpr(self) -> float:
        """The per-filter false-positive rate at capacity that ``m`` and ``k`` are sized for."""
        return filter_fpr(self.forum_fpr, self.max_members)

    def digest(self) -> bytes:
        """What members' filters must match to be combined (see :meth:`BloomParams.digest`)."""
        return self.bloom_params().digest()

    def bloom_params(self) -> BloomParams:
        return BloomParams(
            kind=self.kind,
            key_id=self.key_id,
            m=self.m,
            k=self.k,
            capacity=self.capacity,
            target_fpr=self.target_fpr,
        )

    @classmethod
    def for_forum(
        cls,
        *,
        kind: str,
        key_id: str,
        capacity: int,
        forum_fpr: float,
        max_members: int,
        updated_at: datetime,
        quorum: int = 2,
        retention_days: int = 30,
        reveal_members: bool = False,
        replace_interval_seconds: int = DEFAULT_REPLACE_INTERVAL_SECONDS,
    ) -> KindParameters:
        """``m`` and ``k`` sized for ``capacity`` items at the per-filter rate of the forum."""
        bloom = BloomParams.for_forum(kind, key_id, capacity, forum_fpr, max_members)
        return cls(
            kind=kind,
            key_id=key_id,
            capacity=capacity,
            forum_fpr=forum_fpr,
            max_members=max_members,
            m=bloom.m,
            k=bloom.k,
            quorum=quorum,
            retention_days=retention_days,
            reveal_members=reveal_members,
            replace_interval_seconds=replace_interval_seconds,
            updated_at=updated_at,
        )


def filter_fpr(forum_fpr: float, max_members: int) -> float:
    """The per-filter false-positive rate that keeps a forum of ``max_members`` at ``forum_fpr``."""
    if max_members < 2:
        raise ParameterError(f"a forum has at least 2 members, got {max_members}")
    return forum_fpr / (max_members - 1)


@dataclass(frozen=True, slots=True, kw_only=True)
class MinHashParameters:
    """The MinHash parameters and forum policy the hub publishes for one fingerprint family."""

    family: str
    key_id: str
    num_perm: int = 128
    shingle_unit: ShingleUnit = "word"
    shingle_size: int = 3
    drop_stopwords: bool = False
    """Members drop English function words before shingling (see ``MinHashParams``)."""
    core_rules: int = 1
    """How members sketch a cluster: 1 strict-majority core, 2 without shared boilerplate."""
    threshold: float
    """Jaccard similarity from which two clusters count as the same campaign."""
    cluster_threshold: float | None = None
    """Jaccard similarity from which a member joins two of its own prompts into one cluster
    (``None``: :attr:`threshold`, as families published before it existed do)."""
    quorum: int = 2
    retention_days: int = 30
    reveal_members: bool = False
    updated_at: datetime

    def __post_init__(self) -> None:
        _check_policy(self.family, self.quorum, self.retention_days)
        self.minhash_params()
        if not 0.0 < self.threshold < 1.0:
            raise ParameterError(f"threshold must be in (0, 1), got {self.threshold}")
        if self.cluster_threshold is not None and not 0.0 < self.cluster_threshold < 1.0:
            raise ParameterError(
                f"cluster threshold must be in (0, 1), got {self.cluster_threshold}"
            )

    @property
    def member_threshold(self) -> float:
        """The threshold members cluster their own prompts at."""
        return self.threshold if self.cluster_threshold is None else self.cluster_threshold

    @property
    def family_kind(self) -> str:
        return minhash_family_kind(self.family)

    def minhash_params(self) -> MinHashParams:
        return MinHashParams(
            key_id=self.key_id,
            num_perm=self.num_perm,
            shingle_unit=self.shingle_unit,
            shingle_size=self.shingle_size,
            drop_stopwords=self.drop_stopwords,
            core_rules=self.core_rules,
        )

    def digest(self) -> bytes:
        """What members' signatures must match to be compared (see :meth:`MinHashParams.digest`).

        The thresholds are not part of it: they decide how the hub bands signatures and how
        members cluster, not what a signature is.
        """
        return self.minhash_params().digest()

    def banding(self) -> Banding:
        """The LSH bands × rows for :attr:`threshold` over :attr:`num_perm` minima (cached)."""
        return _cached_banding(self.threshold, self.num_perm)


@dataclass(frozen=True, slots=True, kw_only=True)
class Submission:
    """One member's sketch of one kind or MinHash family, without its payload.

    The encoded sketch is fetched separately (``SubmissionRepository.payload``) so that listings
    never carry megabytes of bit arrays.
    """

    id: int
    member_id: int
    family_kind: str
    """An indicator kind (``"email"``) or a MinHash family (``"minhash:prompt"``)."""
    key_id: str
    params_digest: bytes
    content_sha256: bytes
    """SHA-256 of the payload: the idempotency key together with member and family/kind."""
    declared_count: int
    byte_size: int
    set_bits: int | None
    """Bloom filters only: number of set bits, for fill checks and estimates."""
    status: SubmissionStatus
    tokens_asked: int
    """Bloom filters: distinct tokens the member asked about against this submission."""
    created_at: datetime
    superseded_at: datetime | None
    expires_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditEntry:
    """One link of the append-only, hash-chained audit log."""

    id: int
    at: datetime
    actor: str
    action: str
    target: str
    details: dict[str, Any]
    prev_hash: bytes
    entry_hash: bytes


def canonical_json(value: object) -> str:
    """One spelling per value: sorted keys, no whitespace, no NaN/Infinity, UTF-8 text."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


def audit_entry_hash(
    prev_hash: bytes,
    *,
    at: datetime,
    actor: str,
    action: str,
    target: str,
    details: Mapping[str, Any],
) -> bytes:
    """SHA-256(prev_hash ‖ canonical JSON of the entry's id-independent fields).

    ``at`` is spelled in ISO 8601 UTC with microseconds, the precision both databases keep, so the
    hash recomputed from a stored row equals the one computed before the row was written.
    """
    document = {
        "action": action,
        "actor": actor,
        "at": utc(at).isoformat(timespec="microseconds"),
        "details": dict(details),
        "target": target,
    }
    return hashlib.sha256(prev_hash + canonical_json(document).encode()).digest()


class ReviewStatus(StrEnum):
    """Coordinators' review state of a shared indicator or campaign (stored strings)."""

    NEW = "new"
    TRIAGED = "triaged"
    CONFIRMED = "confirmed"
    DISMISSED = "dismissed"


@dataclass(frozen=True, slots=True, kw_only=True)
class FamilyState:
    """The parameters a kind's or family's active submissions were made under, and how often
    that set changed."""

    family_kind: str
    key_id: str
    params_digest: bytes
    m: int | None
    """Bloom kinds: the filters' number of bits; ``None`` for MinHash families."""
    version: int
    """Grows with every change to the set of active submissions."""
    derived_version: int
    """MinHash families: the version the stored campaigns were computed at."""
    updated_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class SharedIndicator:
    """A token confirmed by at least quorum members: opaque, never a raw value."""

    id: str
    kind: str
    key_id: str
    token: bytes
    reporters: int
    reporter_names: tuple[str, ...]
    categories: tuple[str, ...]
    first_seen: datetime | None
    last_seen: datetime | None
    status: ReviewStatus
    created_at: datetime
    updated_at: datetime
    assignee: str | None = None
    member_note: str | None = None
    """The coordinators' note for the members who reported it (they receive it with their
    matches); ``None``: none."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Campaign:
    """A connected component of cross-member cluster matches held by at least quorum members."""

    id: str
    family: str
    member_count: int
    """How many members' clusters it connects."""
    members: tuple[str, ...]
    """Their names (empty where a reader's policy does not reveal members)."""
    similarity: float
    volume: int
    categories: tuple[str, ...]
    first_seen: datetime | None
    """The earliest first seen its members gave for its clusters (``None``: none gave one)."""
    last_seen: datetime | None
    """The latest last seen its members gave for its clusters."""
    status: ReviewStatus
    active: bool
    created_at: datetime
    updated_at: datetime
    assignee: str | None = None
    member_note: str | None = None
    """The coordinators' note for the members whose clusters it connects; ``None``: none."""


@dataclass(frozen=True, slots=True, kw_only=True)
class CampaignLink:
    """A member's view of one of its own clusters that belongs to a campaign."""

    cluster_id: str
    campaign_id: str
    similarity: float
    """The cluster's best estimated Jaccard with another member's cluster."""
    other_member_count: int
    other_members: tuple[str, ...]
    """Names: empty unless the forum's policy reveals members."""
    status: ReviewStatus = ReviewStatus.NEW
    """The forum's review status of the campaign."""
    member_note: str | None = None
    """The coordinators' note for the campaign's members; ``None``: none."""


class RecordType(StrEnum):
    """What a coordinator reviews (stored strings)."""

    INDICATOR = "indicator"
    CAMPAIGN = "campaign"


REVIEW_TRANSITIONS: Mapping[ReviewStatus, frozenset[ReviewStatus]] = {
    ReviewStatus.NEW: frozenset({ReviewStatus.TRIAGED, ReviewStatus.DISMISSED}),
    ReviewStatus.TRIAGED: frozenset({ReviewStatus.CONFIRMED, ReviewStatus.DISMISSED}),
    ReviewStatus.CONFIRMED: frozenset({ReviewStatus.TRIAGED}),
    ReviewStatus.DISMISSED: frozenset({ReviewStatus.TRIAGED}),
}
"""new → triaged → confirmed | dismissed; obvious noise may be dismissed from new; a decision
is reopened by moving it back to triaged."""


class ReviewEventKind(StrEnum):
    """What a review event did; stored with the event."""

    STATUS = "status"
    """Moved the record from ``from_status`` to ``to_status``."""
    ASSIGN = "assign"
    """Gave the record to ``assignee`` (``None``: to nobody)."""
    NOTE = "note"
    """Added a note (the coordinators' own, or one for members) and changed nothing else."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ReviewEvent:
    """One step in a record's review history.

    ``assignee`` is the record's assignee after the step; ``note`` (the coordinators' own) may
    accompany any kind. ``member_note`` is the note for members a status move or a note gave the
    record: the members behind it receive it with their matches.
    """

    id: int
    record_type: RecordType
    record_id: str
    actor: str
    at: datetime
    kind: ReviewEventKind
    from_status: ReviewStatus | None
    to_status: ReviewStatus | None
    assignee: str | None
    note: str | None
    member_note: str | None = None

    @property
    def change(self) -> str:
        """The step in words, as every listing of a history shows it: ``new → triaged``,
        ``assigned to bob``, ``unassigned``, ``note`` or ``note for members``."""
        if self.kind is ReviewEventKind.STATUS:
            before = "" if self.from_status is None else f"{self.from_status.value} → "
            return f"{before}{self.to_status.value if self.to_status else '?'}"
        if self.kind is ReviewEventKind.ASSIGN:
            return "unassigned" if self.assignee is None else f"assigned to {self.assignee}"
        return "note" if self.member_note is None else "note for members"


class KeyState(StrEnum):
    """Where a key registration stands; derived from its approval and retirement times."""

    PENDING = "pending"
    """Registered, awaiting an admin's approval: receives nothing yet."""
    APPROVED = "approved"
    """The principal's keys in use: envelopes are sealed to them."""
    RETIRED = "retired"
    """Replaced by a newer registration; kept for the record."""


@dataclass(frozen=True, slots=True, kw_only=True)
class KeyRegistration:
    """A principal's registered public keys: the sealing key envelopes are sealed to and the
    signing key a custodian signs envelopes with. Public keys only: the hub never holds a
    private key."""

    id: int
    principal_id: int
    principal: str
    """The principal's name (what the registration proof and envelopes are bound to)."""
    sealing_public: bytes = field(repr=False)
    signing_public: bytes = field(repr=False)
    fingerprint: str
    """``SHA256:…`` over both keys: what the admin checks with the principal out of band."""
    registered_at: datetime
    approved_at: datetime | None = None
    approved_by: str | None = None
    retired_at: datetime | None = None

    @property
    def state(self) -> KeyState:
        if self.retired_at is not None:
            return KeyState.RETIRED
        return KeyState.PENDING if self.approved_at is None else KeyState.APPROVED


@dataclass(frozen=True, slots=True, kw_only=True)
class Rotation:
    """One distribution of a new forum secret: a key id sealed to every recipient at once."""

    key_id: str
    custodian: str
    created_at: datetime
    """When the hub stored the envelopes."""
    activate_at: datetime | None
    """When the custodian asked members to start using the key id (``None``: not said)."""
    recipients: int
    total_bytes: int


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredEnvelope:
    """An envelope as the hub relays it: opaque bytes with the metadata they were checked
    against on upload."""

    id: int
    key_id: str
    recipient: str
    custodian: str
    recipient_fingerprint: str
    """The registration the envelope is sealed to."""
    envelope: bytes = field(repr=False)
    created_at: datetime
    activate_at: datetime | None
    first_fetched_at: datetime | None
    last_fetched_at: datetime | None


@dataclass(frozen=True, slots=True, kw_only=True)
class EnvelopePickup:
    """Whether and when one recipient fetched its envelope of one rotation (no envelope bytes)."""

    key_id: str
    recipient: str
    recipient_fingerprint: str
    byte_size: int
    first_fetched_at: datetime | None
    last_fetched_at: datetime | None


@dataclass(frozen=True, slots=True, kw_only=True)
class RotationRequest:
    """A recorded reason to rotate the forum secret (e.g. a member revoked), open until the
    next rotation satisfies it."""

    id: int
    reason: str
    requested_by: str
    requested_at: datetime
    satisfied_by: str | None = None
    """The key id of the rotation that satisfied it (``None``: still due)."""
