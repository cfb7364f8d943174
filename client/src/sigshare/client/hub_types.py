"""Plain, frozen values the hub SDK hands to callers and takes from them.

Nothing here imports gRPC or the generated stubs: the sync job and the CLI work with these types
only, and :mod:`sigshare.client.wire` is the single place that converts them to and from protobuf
messages. Timestamps are timezone-aware datetimes; a timestamp the hub left unset is ``None``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import IntEnum
from typing import Literal

import numpy as np
import numpy.typing as npt

from sigshare.client.errors import HubProtocolError
from sigshare.sketch.bloom import BloomParams
from sigshare.sketch.errors import ParameterError
from sigshare.sketch.minhash import MinHashParams
from sigshare.sketch.prf import TOKEN_BYTES


def require_aware(value: datetime | None, name: str) -> None:
    """Refuse naive datetimes: their meaning depends on the host's time zone."""
    if value is not None and value.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime")


# ---------------------------------------------------------------------------------- parameters


@dataclass(frozen=True, slots=True)
class PublishedBloom:
    """Bloom parameters the hub publishes for one indicator kind in one key epoch."""

    kind: str
    key_id: str
    capacity: int
    target_fpr: float
    """Per-filter false-positive rate at capacity (what ``m`` and ``k`` are sized for)."""
    m: int
    k: int
    quorum: int
    retention_days: int
    reveal_members: bool
    digest: bytes
    forum_fpr: float = 0.0
    """Forum-level false-shared rate the hub keeps with ``max_members`` members."""
    max_members: int = 0

    def bloom_params(self) -> BloomParams:
        """The sketch-core parameters, checked against the hub's digest.

        A digest mismatch means the hub and this client encode parameters differently (version
        skew): filters built anyway would be refused or, worse, silently incomparable.
        """
        try:
            params = BloomParams(
                kind=self.kind,
                key_id=self.key_id,
                m=self.m,
                k=self.k,
                capacity=self.capacity,
                target_fpr=self.target_fpr,
            )
        except ParameterError as error:
            raise HubProtocolError(
                f"hub published invalid Bloom parameters for {self.kind!r}: {error}"
            ) from None
        if params.digest() != self.digest:
            raise HubProtocolError(
                f"Bloom parameter digest for {self.kind!r} differs from the hub's: the hub and "
                "this client disagree on the canonical parameter encoding (upgrade one of them)"
            )
        return params


@dataclass(frozen=True, slots=True)
class PublishedMinHash:
    """MinHash parameters the hub publishes for one fingerprint family (e.g. ``prompt``)."""

    family: str
    key_id: str
    num_perm: int
    shingle_unit: str
    shingle_size: int
    threshold: float
    quorum: int
    retention_days: int
    reveal_members: bool
    digest: bytes
    bands: int
    rows: int
    drop_stopwords: bool = False
    core_rules: int = 1
    cluster_threshold: float | None = None
    """The threshold to cluster this member's own prompts at (``None``: :attr:`threshold`)."""

    @property
    def member_threshold(self) -> float:
        return self.threshold if self.cluster_threshold is None else self.cluster_threshold

    def minhash_params(self) -> MinHashParams:
        """The sketch-core parameters, checked against the hub's digest (see ``bloom_params``)."""
        unit: Literal["word", "char"]
        if self.shingle_unit == "word":
            unit = "word"
        elif self.shingle_unit == "char":
            unit = "char"
        else:
            raise HubProtocolError(
                f"hub published unknown shingle unit {self.shingle_unit!r} for {self.family!r}"
            )
        try:
            params = MinHashParams(
                key_id=self.key_id,
                num_perm=self.num_perm,
                shingle_unit=unit,
                shingle_size=self.shingle_size,
                drop_stopwords=self.drop_stopwords,
                core_rules=self.core_rules,
            )
        except ParameterError as error:
            raise HubProtocolError(
                f"hub published invalid MinHash parameters for {self.family!r}: {error}"
            ) from None
        if params.digest() != self.digest:
            raise HubProtocolError(
                f"MinHash parameter digest for {self.family!r} differs from the hub's: the hub "
                "and this client disagree on the canonical parameter encoding (upgrade one of them)"
            )
        return params


@dataclass(frozen=True, slots=True)
class HubParameters:
    bloom: dict[str, PublishedBloom]
    """By indicator kind."""
    minhash: dict[str, PublishedMinHash]
    """By fingerprint family."""
    max_upload_bytes: int
    chunk_bytes: int
    next_key_id: str | None = None
    """The key epoch the forum is rotating to: a member holding its secret also submits under
    it (the same parameters with this key id), ahead of the switch."""


# ---------------------------------------------------------------------------------- submission


@dataclass(frozen=True, slots=True)
class FilterHealthInfo:
    """How full the hub found a submitted filter, against what its declared count predicts."""

    set_bits: int
    fill: float
    expected_fill: float
    fpr_at_fill: float


@dataclass(frozen=True, slots=True)
class SubmitResult:
    submission_id: int
    duplicate: bool
    """The hub already held exactly this content for the member: nothing changed."""
    health: FilterHealthInfo | None
    expires_at: datetime


# ---------------------------------------------------------------------------------- resolution


class TokenStatus(IntEnum):
    """The hub's answer per token (wire values)."""

    ANSWERED = 0
    NOT_HELD = 1
    """This member's own filter does not hold the token: the hub does not answer it."""
    OVER_BUDGET = 2
    """A query budget is spent: not answered this time."""


@dataclass(frozen=True, slots=True, eq=False)
class ResolveResult:
    """The hub's answers about this member's own tokens of one kind, in request order."""

    kind: str
    key_id: str
    quorum: int
    members: int
    """Members with an active filter of the kind, this member included."""
    status: npt.NDArray[np.uint8]
    """Per token: a :class:`TokenStatus` value."""
    others: npt.NDArray[np.uint8]
    """Per token: other members whose own filter holds it (0 below quorum − 1 or unanswered)."""
    holder_names: tuple[str, ...]
    """Where the forum reveals members: names that ``holders`` bits refer to."""
    holders: npt.NDArray[np.uint8] | None
    """Per token, bit ``i`` (LSB of byte 0 first) set when ``holder_names[i]`` holds it."""
    submission_tokens: int
    submission_budget: int
    day_tokens: int
    day_budget: int
    budget_frees_at: datetime | None
    computed_at: datetime | None

    def count(self, status: TokenStatus) -> int:
        return int(np.count_nonzero(self.status == status))

    def names_of(self, index: int) -> tuple[str, ...]:
        """The names of the other members holding token ``index`` (empty unless revealed)."""
        if self.holders is None:
            return ()
        bits = np.unpackbits(self.holders[index], bitorder="little")
        return tuple(name for name, bit in zip(self.holder_names, bits, strict=False) if bit)


# ---------------------------------------------------------------------------------- confirmation


@dataclass(frozen=True, slots=True)
class ConfirmedToken:
    """A resolved item's token, offered to the hub as held by this member."""

    token: bytes
    category: str = ""
    first_seen: datetime | None = None
    last_seen: datetime | None = None

    def __post_init__(self) -> None:
        if len(self.token) != TOKEN_BYTES:
            raise ValueError(f"a token is {TOKEN_BYTES} bytes, got {len(self.token)}")
        require_aware(self.first_seen, "first_seen")
        require_aware(self.last_seen, "last_seen")


@dataclass(frozen=True, slots=True)
class ConfirmResult:
    accepted: int
    shared: int
    """Accepted tokens that are now shared indicators (confirmed by at least quorum members)."""
    not_resolved: int
    """Refused: not in the member's active filter, not held by quorum − 1 others' own filters,
    or over a query budget."""
    over_budget: int = 0
    """Of ``not_resolved``: refused only because a query budget is spent."""


# ---------------------------------------------------------------------------------- member view


FORUM_STATUSES = ("new", "triaged", "confirmed", "dismissed")
"""The review statuses the forum's coordinators give shared indicators and campaigns."""


@dataclass(frozen=True, slots=True)
class SharedIndicatorView:
    id: str
    kind: str
    token: bytes
    reporters: int
    reporter_names: tuple[str, ...]
    """Empty unless forum policy reveals members."""
    categories: tuple[str, ...]
    first_seen: datetime | None
    last_seen: datetime | None
    status: str
    """The forum's review status: ``new``, ``triaged``, ``confirmed`` or ``dismissed``."""
    member_note: str | None = None
    """The forum coordinators' note for the members who reported it; ``None``: none."""


@dataclass(frozen=True, slots=True)
class CampaignMatchView:
    cluster_id: str
    """The member's own cluster."""
    campaign_id: str
    similarity: float
    other_members: int
    other_member_names: tuple[str, ...]
    """Empty unless forum policy reveals members."""
    status: str | None = None
    """The forum's review status of the campaign; ``None`` from a hub that does not say."""
    member_note: str | None = None
    """The forum coordinators' note for the campaign's members; ``None``: none."""


@dataclass(frozen=True, slots=True)
class Matches:
    indicators: tuple[SharedIndicatorView, ...]
    campaigns: tuple[CampaignMatchView, ...]


@dataclass(frozen=True, slots=True)
class SubmissionInfoView:
    id: int
    member: str
    kind: str
    key_id: str
    declared_count: int
    byte_size: int
    status: str
    created_at: datetime | None
    expires_at: datetime | None
    health: FilterHealthInfo | None


# ---------------------------------------------------------------------------------- keys


@dataclass(frozen=True, slots=True)
class KeyRegistration:
    """A principal's public keys as the hub holds them (never a private key)."""

    sealing_public: bytes = field(repr=False)
    """MLKEM768-X25519 public key: what envelopes are sealed to."""
    signing_public: bytes = field(repr=False)
    """Ed25519 public key."""
    fingerprint: str
    """``SHA256:…`` over both keys; what the admin approves after checking it out of band."""
    registered_at: datetime | None
    approved_at: datetime | None
    """``None`` until an admin approves it; only approved keys receive envelopes."""

    @property
    def approved(self) -> bool:
        return self.approved_at is not None


@dataclass(frozen=True, slots=True)
class RegisterKeysResult:
    registration: KeyRegistration
    unchanged: bool
    """These exact keys were registered already: nothing changed at the hub."""


@dataclass(frozen=True, slots=True)
class KeyStatus:
    """The caller's key registrations as the hub sees them."""

    name: str
    """The caller's principal name: what registration proofs and envelopes are bound to."""
    approved: KeyRegistration | None
    pending: KeyRegistration | None
    """A newer registration awaiting the admin's approval (the approved one stays in use)."""
    envelopes_waiting: int
    """Envelopes addressed to the caller that it has not fetched yet."""


@dataclass(frozen=True, slots=True)
class SealedEnvelope:
    """One sealed forum-secret envelope and what it is said to be, as uploaded or fetched.

    The metadata is the hub's word only; a member trusts nothing but the signed header inside
    :attr:`envelope` (``sigshare.keyring.open_envelope``)."""

    key_id: str
    recipient: str
    custodian: str
    recipient_fingerprint: str
    created_at: datetime | None
    activate_at: datetime | None
    envelope: bytes = field(repr=False)
    """The envelope itself (format ``SGEV`` v1)."""


@dataclass(frozen=True, slots=True)
class CustodianInfo:
    """A custodian with approved keys: members pin one by its signing fingerprint."""

    name: str
    signing_public: bytes = field(repr=False)
    signing_fingerprint: str


@dataclass(frozen=True, slots=True)
class Recipient:
    """A member the custodian seals one envelope to, at its approved registration."""

    name: str
    keys: KeyRegistration


@dataclass(frozen=True, slots=True)
class RecipientList:
    """Who a rotation must cover, as the hub answers a custodian's ``ListRecipients``."""

    recipients: tuple[Recipient, ...]
    """Every active member with approved keys: an upload covers exactly these."""
    unregistered: tuple[str, ...]
    """Active members without approved keys: they receive nothing."""
    rotation_due: tuple[str, ...]
    """Why a rotation is due (e.g. ``member acme revoked``); empty when none is."""


@dataclass(frozen=True, slots=True)
class UploadEnvelopesResult:
    key_id: str
    recipients: int
    total_bytes: int
