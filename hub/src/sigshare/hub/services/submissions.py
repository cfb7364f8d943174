"""Accepting members' sketches: verification, idempotency, supersession.

A submission is verified completely before anything is written — the stream's length and
SHA-256, the parameters it was made under, the format, and for Bloom filters every saturation,
fill and uniformity check of the sketch core — so a rejected upload leaves no trace. Accepted
sketches are stored as the member's current one; the next reader builds what it needs from
them. Re-sending the current content changes nothing; re-sending older content makes it current
again (within the kind's replace interval).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from sigshare.hub.domain import (
    KindParameters,
    MinHashParameters,
    Principal,
    Submission,
    SubmissionStatus,
    minhash_family_kind,
)
from sigshare.hub.errors import (
    InvalidArgumentError,
    PermissionDeniedError,
    PreconditionError,
    SketchRejectedError,
)
from sigshare.hub.services import epochs
from sigshare.hub.services.families import prepare
from sigshare.hub.storage.aggregates import FamilyRepository
from sigshare.hub.storage.audit import AuditRepository
from sigshare.hub.storage.blobs import StagedBlob
from sigshare.hub.storage.campaigns import ClusterRepository
from sigshare.hub.storage.parameters import ParameterRepository
from sigshare.hub.storage.principals import PrincipalRepository
from sigshare.hub.storage.submissions import SubmissionRepository
from sigshare.sketch.checks import FilterHealth, StreamedFilter, check_filter
from sigshare.sketch.cluster import ClusterInfo
from sigshare.sketch.codec import SignatureSet, SketchFormat, decode_bloom, encode_signatures
from sigshare.sketch.errors import ParameterError, SketchError
from sigshare.sketch.minhash import EMPTY

HEADER_SLACK_BYTES = 4096
"""Room for a format header on top of the largest possible body."""
MAX_CLUSTERS_PER_SUBMISSION = 1_000_000
MAX_CATEGORY_LENGTH = 64


@dataclass(frozen=True, slots=True, kw_only=True)
class UploadHeader:
    """What a submission stream announces before its data."""

    format: SketchFormat
    kind: str
    """Indicator kind (Bloom) or MinHash family (clusters)."""
    key_id: str
    params_digest: bytes
    declared_count: int
    content_length: int
    content_sha256: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class SubmitOutcome:
    submission: Submission
    duplicate: bool
    health: FilterHealth | None


@dataclass(frozen=True, slots=True)
class UploadPlan:
    """A stream's header, checked against the parameters it was made under, before its data."""

    header: UploadHeader
    params: KindParameters | MinHashParameters
    """The parameters the sketch was made under: the published ones, or for a pending upload
    the published ones under the next key epoch."""
    max_bytes: int
    """The most data bytes a stream with this header may carry."""
    pending: bool = False
    """Made under the key epoch the forum is rotating to: stored as the member's pending
    submission, counted nowhere until the switch (:func:`.epochs.switch_epoch`)."""


_LIVE = (SubmissionStatus.ACTIVE, SubmissionStatus.PENDING)


def _published(
    session: Session, header: UploadHeader
) -> tuple[KindParameters | MinHashParameters, bool]:
    """The parameters ``header`` must have been made under, and whether they are the next key
    epoch's (a pending upload)."""
    repository = ParameterRepository(session)
    params: KindParameters | MinHashParameters | None
    if header.format is SketchFormat.BLOOM_V1:
        params = repository.get_kind(header.kind)
        what = "indicator kind"
    else:
        params = repository.get_minhash_family(header.kind)
        what = "fingerprint family"
    if params is None:
        raise PreconditionError(f"{what} {header.kind!r} is not enabled on this hub")
    pending = False
    if header.key_id != params.key_id:
        upcoming = epochs.next_key_id(session)
        if header.key_id != upcoming:
            raise PreconditionError(
                f"{header.kind}: sketch made with key id {header.key_id!r}, the forum's current "
                f"key id is {params.key_id!r}; rebuild it with the current forum secret"
            )
        params, pending = epochs.under_key_id(params, upcoming), True
    if header.params_digest != params.digest():
        raise PreconditionError(
            f"{header.kind}: the hub's parameters changed since they were fetched; fetch them "
            "again and rebuild the sketch"
        )
    return params, pending


def plan_upload(session: Session, header: UploadHeader) -> UploadPlan:
    """Check a stream's header before its data is read: the parameters it names are the
    published ones, and the data it announces fits such a sketch.

    Refusing here saves receiving hundreds of megabytes that would be rejected anyway.
    """
    if header.content_length < 1:
        raise InvalidArgumentError("content_length must be positive")
    if len(header.content_sha256) != hashlib.sha256().digest_size:
        raise InvalidArgumentError("content_sha256 must be 32 bytes")
    params, pending = _published(session, header)
    if isinstance(params, KindParameters):
        if header.declared_count > params.capacity:
            raise SketchRejectedError(
                f"declared count {header.declared_count} exceeds the capacity {params.capacity} "
                f"of {params.kind}"
            )
        limit = params.m // 8 + HEADER_SLACK_BYTES
    else:
        if header.declared_count > MAX_CLUSTERS_PER_SUBMISSION:
            raise SketchRejectedError(
                f"{header.declared_count} clusters exceed the limit of "
                f"{MAX_CLUSTERS_PER_SUBMISSION} per submission"
            )
        per_cluster = params.num_perm * 4 + 2 * MAX_CATEGORY_LENGTH + 128
        limit = max(header.declared_count, 1) * per_cluster + HEADER_SLACK_BYTES
    if header.content_length > limit:
        raise SketchRejectedError(
            f"content_length {header.content_length} exceeds the {limit} bytes such a sketch "
            "can take"
        )
    return UploadPlan(header=header, params=params, max_bytes=limit, pending=pending)


def verify_content(
    header: UploadHeader, payload: bytes | memoryview, sha256: bytes | None = None
) -> None:
    """The received bytes are exactly what the header announced.

    ``sha256`` is the payload's digest when the caller computed it while receiving.
    """
    if len(payload) != header.content_length:
        raise SketchRejectedError(
            f"stream ended after {len(payload)} of {header.content_length} announced bytes"
        )
    if sha256 is None:
        sha256 = hashlib.sha256(payload).digest()
    if not hmac.compare_digest(sha256, header.content_sha256):
        raise SketchRejectedError("content SHA-256 does not match the header: upload corrupted")


def submit_bloom(
    session: Session,
    member: Principal,
    header: UploadHeader,
    payload: bytes | memoryview,
    now: datetime,
    *,
    sha256: bytes | None = None,
    plan: UploadPlan | None = None,
    staged: StagedBlob | None = None,
    streamed: StreamedFilter | None = None,
) -> SubmitOutcome:
    """Verify and store a member's Bloom filter of one kind: the content (``sha256``: see
    :func:`verify_content`), its format and every check of the sketch core, once. ``plan``:
    the header's :func:`plan_upload`, when the caller checked it before receiving the data.
    ``staged``: the blob the transport wrote ``payload`` into while receiving it, stored
    instead of writing the bytes again (the caller discards it if this raises). ``streamed``:
    the figures the transport counted from exactly ``payload`` as it arrived."""
    if plan is None:
        plan = plan_upload(session, header)
    params = plan.params
    if not isinstance(params, KindParameters):
        raise InvalidArgumentError("a Bloom filter upload needs an indicator kind's plan")
    verify_content(header, payload, sha256)
    try:
        figures = None if streamed is None else streamed.figures()
        crc, histogram = (None, None) if figures is None else figures
        bloom = decode_bloom(payload, params.bloom_params(), copy=False, bits_crc32=crc)
        if bloom.count != header.declared_count:
            raise SketchRejectedError(
                f"header declares {header.declared_count} items, the filter {bloom.count}"
            )
        health = check_filter(bloom, params.bloom_params(), byte_histogram=histogram)
    except ParameterError as error:
        raise PreconditionError(str(error)) from None
    except SketchError as error:
        raise SketchRejectedError(str(error)) from None
    submission, duplicate = _store(
        session,
        member,
        plan,
        bytes(payload) if staged is None else staged,  # bytes(bytes) is the object itself
        family_kind=params.kind,
        set_bits=health.set_bits,
        now=now,
    )
    return SubmitOutcome(submission=submission, duplicate=duplicate, health=health)


def submit_clusters(
    session: Session,
    member: Principal,
    header: UploadHeader,
    *,
    signatures: SignatureSet,
    clusters: Sequence[ClusterInfo],
    now: datetime,
    plan: UploadPlan | None = None,
) -> SubmitOutcome:
    """Verify and store a member's prompt-cluster sketches of one MinHash family.

    The transport has already checked the stream with :func:`verify_content` and decoded it.
    An empty set is valid: it withdraws the member's earlier clusters of the family.
    """
    if plan is None:
        plan = plan_upload(session, header)
    params = plan.params
    if not isinstance(params, MinHashParameters):
        raise InvalidArgumentError("a cluster upload needs a MinHash family's plan")
    expected = params.minhash_params()
    if (
        signatures.key_id != params.key_id
        or signatures.num_perm != expected.num_perm
        or signatures.shingle_unit != expected.shingle_unit
        or signatures.shingle_size != expected.shingle_size
    ):
        raise PreconditionError(
            f"signatures were made with other parameters than {params.family}'s: fetch them again"
        )
    _check_clusters(header, signatures, clusters)
    if params.core_rules == 2:
        unsized = next((c.cluster_id for c in clusters if c.core_size < 1), None)
        if unsized is not None:
            raise SketchRejectedError(
                f"cluster {unsized} states no core size, which {params.family} needs (core rules "
                "2): upgrade the client"
            )
    submission, duplicate = _store(
        session,
        member,
        plan,
        encode_signatures(signatures),
        family_kind=params.family_kind,
        set_bits=None,
        now=now,
        clusters=clusters,
    )
    return SubmitOutcome(submission=submission, duplicate=duplicate, health=None)


def _check_clusters(
    header: UploadHeader, signatures: SignatureSet, clusters: Sequence[ClusterInfo]
) -> None:
    count = len(clusters)
    if count != len(signatures.values):
        raise SketchRejectedError(
            f"{len(signatures.values)} signatures but {count} cluster descriptions"
        )
    if count != header.declared_count:
        raise SketchRejectedError(f"header declares {header.declared_count} clusters, got {count}")
    # Each id's form was checked when the payload was decoded (ClusterInfo refuses others).
    if len({c.cluster_id for c in clusters}) != count:
        raise SketchRejectedError("cluster ids repeat within the submission")
    for cluster in clusters:
        if cluster.volume < 1:
            raise SketchRejectedError(f"cluster {cluster.cluster_id} has no prompts (volume 0)")
        if len(cluster.category) > MAX_CATEGORY_LENGTH:
            raise SketchRejectedError(
                f"cluster {cluster.cluster_id}: category longer than {MAX_CATEGORY_LENGTH}"
            )
    if (signatures.values == EMPTY).all(axis=1).any():
        raise SketchRejectedError("a signature is empty (a cluster with no shingles)")


def _store(
    session: Session,
    member: Principal,
    plan: UploadPlan,
    payload: bytes | StagedBlob,
    *,
    family_kind: str,
    set_bits: int | None,
    now: datetime,
    clusters: Sequence[ClusterInfo] = (),
) -> tuple[Submission, bool]:
    header, params = plan.header, plan.params
    # Before the family lock (the order revocation takes them in): a member revoked, or whose
    # credential was rotated, while its upload was in flight stores nothing.
    holder = PrincipalRepository(session).lock_for_submission(member.id)
    if holder is None or not holder.is_active(now) or holder.credential_id != member.credential_id:
        raise PermissionDeniedError(
            "the credential this upload was sent with was revoked or replaced meanwhile"
        )
    submissions = SubmissionRepository(session)
    submissions.lock_family(family_kind)
    # Under the lock: the parameters the upload was checked against are still the published ones
    # (for a pending upload: still the next key epoch's).
    try:
        still = _published(session, header)
    except PreconditionError:
        still = None
    if still != (params, plan.pending):
        raise PreconditionError(
            f"{header.kind}: the hub's parameters changed during the upload; fetch them again "
            "and rebuild the sketch"
        )
    pending = plan.pending
    if not pending:
        prepare(session, params, now)
    status = SubmissionStatus.PENDING if pending else SubmissionStatus.ACTIVE
    expires_at = now + timedelta(days=params.retention_days)
    earlier = submissions.find(member.id, family_kind, header.content_sha256)
    if earlier is not None and earlier.status is status:
        # Re-sending unchanged data re-asserts it: the retention window starts again.
        return submissions.extend(earlier.id, expires_at), True
    if earlier is not None and earlier.status in _LIVE:
        if pending:
            raise PreconditionError(
                f"{header.kind}: this content is your active submission already, which cannot "
                "be under the next key epoch too"
            )
        # Sent ahead under this key epoch and not made active at the switch: send it as new.
        submissions.end(earlier.id, SubmissionStatus.SUPERSEDED, now)
    current = _supersede(submissions, member, family_kind, plan, now)
    if earlier is not None:
        stored = submissions.revive(
            earlier.id,
            payload=payload,
            key_id=header.key_id,
            params_digest=header.params_digest,
            created_at=now,
            expires_at=expires_at,
            status=status,
        )
    else:
        stored = submissions.add(
            member_id=member.id,
            family_kind=family_kind,
            key_id=header.key_id,
            params_digest=header.params_digest,
            content_sha256=header.content_sha256,
            declared_count=header.declared_count,
            set_bits=set_bits,
            payload=payload,
            created_at=now,
            expires_at=expires_at,
            status=status,
        )
    if clusters:
        ClusterRepository(session).add(stored.id, clusters)
    if not pending:  # a pending submission changes nothing any answer reads
        FamilyRepository(session).record_change(family_kind, at=now)
    AuditRepository(session).append(
        member.name,
        "submission.add",
        family_kind,
        {
            "submission": stored.id,
            "declared_count": header.declared_count,
            "bytes": stored.byte_size,
            "sha256": header.content_sha256.hex(),
            "replaces": None if current is None else current.id,
            **({"pending_key_id": header.key_id} if pending else {}),
        },
        at=now,
    )
    return stored, False


def _supersede(
    submissions: SubmissionRepository,
    member: Principal,
    family_kind: str,
    plan: UploadPlan,
    now: datetime,
) -> Submission | None:
    """End the member's submission of the family that the upload replaces (its active one, or
    for a pending upload its pending one) and return it; ``None`` when there is none.

    A pending submission is replaced with no replace interval: it has no query budget until
    the switch makes it active, and no answer reads it before."""
    if plan.pending:
        current = submissions.pending_of(member.id, family_kind)
    else:
        current = submissions.active_of(member.id, family_kind)
        if current is not None and isinstance(plan.params, KindParameters):
            _require_replace_interval(plan.params, current, now)
    if current is not None:
        submissions.end(current.id, SubmissionStatus.SUPERSEDED, now)
    return current


def _require_replace_interval(params: KindParameters, current: Submission, now: datetime) -> None:
    """A member replaces its filter of a kind at most once per the kind's replace interval.

    Each new filter brings a new query budget (its declared count); the interval, with the
    per-day budget, bounds how fast a member can cycle claimed values through its filter.
    """
    interval = timedelta(seconds=params.replace_interval_seconds)
    if now - current.created_at < interval:
        allowed = (current.created_at + interval).isoformat(timespec="seconds")
        raise PreconditionError(
            f"{params.kind}: your filter was last replaced at "
            f"{current.created_at.isoformat(timespec='seconds')}; the forum allows one "
            f"replacement per {params.replace_interval_seconds} s. Resend the current filter, or "
            f"send this one after {allowed}"
        )


def family_of(header: UploadHeader) -> str:
    """Where a stream's submission is stored: the kind, or ``minhash:<family>``."""
    if header.format is SketchFormat.CLUSTERS_V1:
        return minhash_family_kind(header.kind)
    return header.kind
