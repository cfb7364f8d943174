"""Conversions between ``sigshare.v1`` protobuf messages and the hub's domain types.

The only hub module that touches ``*_pb2``. Incoming messages are validated into domain values
here (a malformed message raises :class:`InvalidArgumentError` or
:class:`SketchRejectedError`); outgoing ones are built from domain values. What members and the
hub must encode alike — a sketch format's wire value, the cluster-set payload — comes from
:mod:`sigshare.sketch.wire`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Literal

from google.protobuf.timestamp_pb2 import Timestamp

from sigshare.hub.domain import (
    Campaign,
    CampaignLink,
    KindParameters,
    MinHashParameters,
    Principal,
    RecordType,
    Role,
    SharedIndicator,
)
from sigshare.hub.errors import InvalidArgumentError, SketchRejectedError
from sigshare.hub.listing import MAX_PAGE_SIZE, RecordQuery
from sigshare.hub.services.coordinator_views import OverlapMatrix, SubmissionView
from sigshare.hub.services.member_views import ConfirmOutcome
from sigshare.hub.services.resolution import Answers, TokenStatus
from sigshare.hub.services.submissions import SubmitOutcome, UploadHeader
from sigshare.hub.storage.indicators import TokenConfirmation
from sigshare.sketch.checks import FilterHealth
from sigshare.sketch.cluster import ClusterInfo
from sigshare.sketch.codec import SignatureSet
from sigshare.sketch.errors import FormatError
from sigshare.sketch.wire import decode_cluster_set, format_from_proto
from sigshare.v1 import hub_pb2 as pb

_ROLES = {
    Role.MEMBER: pb.ROLE_MEMBER,
    Role.COORDINATOR: pb.ROLE_COORDINATOR,
    Role.ADMIN: pb.ROLE_ADMIN,
}
_ROLES_IN: dict[int, Role] = {int(value): role for role, value in _ROLES.items()}
MAX_CATEGORY_LENGTH = 64
RPC_PAGE_SIZE = 100
"""Rows per page of the Review service's listings when a request leaves the page size at 0."""


def timestamp(moment: datetime | None) -> Timestamp | None:
    if moment is None:
        return None
    stamp = Timestamp()
    stamp.FromDatetime(moment.astimezone(UTC))
    return stamp


def moment(stamp: Timestamp, present: bool) -> datetime | None:
    """An aware UTC datetime, or ``None`` when the field was not set."""
    if not present:
        return None
    try:
        return stamp.ToDatetime(tzinfo=UTC)
    except (ValueError, OverflowError) as error:
        raise InvalidArgumentError(f"timestamp out of range: {error}") from None


def role(value: int) -> Role:
    if value not in _ROLES_IN:
        raise InvalidArgumentError("role must be member, coordinator or admin")
    return _ROLES_IN[value]


def principal(record: Principal) -> pb.Principal:
    return pb.Principal(
        name=record.name,
        role=_ROLES[record.role],
        created_at=timestamp(record.created_at),
        revoked_at=timestamp(record.revoked_at),
    )


def bloom_parameters(params: KindParameters) -> pb.BloomParameters:
    return pb.BloomParameters(
        kind=params.kind,
        key_id=params.key_id,
        capacity=params.capacity,
        target_fpr=params.target_fpr,
        m=params.m,
        k=params.k,
        quorum=params.quorum,
        retention_days=params.retention_days,
        reveal_members=params.reveal_members,
        digest=params.digest(),
        forum_fpr=params.forum_fpr,
        max_members=params.max_members,
        replace_interval_seconds=params.replace_interval_seconds,
    )


def minhash_parameters(params: MinHashParameters) -> pb.MinHashParameters:
    banding = params.banding()
    return pb.MinHashParameters(
        family=params.family,
        key_id=params.key_id,
        num_perm=params.num_perm,
        shingle_unit=params.shingle_unit,
        shingle_size=params.shingle_size,
        drop_stopwords=params.drop_stopwords,
        core_rules=params.core_rules,
        threshold=params.threshold,
        cluster_threshold=params.member_threshold,
        quorum=params.quorum,
        retention_days=params.retention_days,
        reveal_members=params.reveal_members,
        digest=params.digest(),
        bands=banding.bands,
        rows=banding.rows,
    )


def upload_header(message: pb.SubmitHeader) -> UploadHeader:
    sketch_format = format_from_proto(message.format)
    if sketch_format is None:
        raise InvalidArgumentError("submit header: format must be BLOOM_V1 or CLUSTERS_V1")
    if len(message.params_digest) != 32:
        raise InvalidArgumentError("submit header: params_digest must be 32 bytes")
    return UploadHeader(
        format=sketch_format,
        kind=message.kind,
        key_id=message.key_id,
        params_digest=message.params_digest,
        declared_count=message.declared_count,
        content_length=message.content_length,
        content_sha256=message.content_sha256,
    )


def cluster_set(payload: bytes) -> tuple[SignatureSet, list[ClusterInfo]]:
    """Decode a ``clusters`` submission's payload; a malformed one is a rejected sketch."""
    try:
        return decode_cluster_set(payload)
    except FormatError as error:
        raise SketchRejectedError(str(error)) from None


def health(figures: FilterHealth | None) -> pb.FilterHealth | None:
    if figures is None:
        return None
    return pb.FilterHealth(
        set_bits=figures.set_bits,
        fill=figures.fill,
        expected_fill=figures.expected_fill,
        fpr_at_fill=figures.fpr_at_fill,
    )


def submit_response(outcome: SubmitOutcome) -> pb.SubmitResponse:
    return pb.SubmitResponse(
        submission_id=outcome.submission.id,
        duplicate=outcome.duplicate,
        health=health(outcome.health),
        expires_at=timestamp(outcome.submission.expires_at),
    )


def resolve_summary(answers: Answers) -> pb.ResolveSummary:
    return pb.ResolveSummary(
        kind=answers.params.kind,
        key_id=answers.params.key_id,
        quorum=answers.params.quorum,
        members=answers.members,
        answered=answers.count(TokenStatus.ANSWERED),
        not_held=answers.count(TokenStatus.NOT_HELD),
        over_budget=answers.count(TokenStatus.OVER_BUDGET),
        submission_tokens=answers.submission_tokens,
        submission_budget=answers.submission_budget,
        day_tokens=answers.day_tokens,
        day_budget=answers.day_budget,
        budget_frees_at=timestamp(answers.budget_frees_at),
        holder_names=answers.holder_names,
        holder_mask_bytes=0 if answers.holders is None else int(answers.holders.shape[1]),
        computed_at=timestamp(answers.computed_at),
    )


def resolve_answers(answers: Answers, max_bytes: int) -> Iterator[pb.ResolveAnswers]:
    """The per-token answers in request order, in messages of at most about ``max_bytes``."""
    mask_bytes = 0 if answers.holders is None else int(answers.holders.shape[1])
    per_message = max(1, max_bytes // (2 + mask_bytes))
    total = len(answers.status)
    for start in range(0, total, per_message):
        stop = min(start + per_message, total)
        yield pb.ResolveAnswers(
            status=answers.status[start:stop].tobytes(),
            others=answers.others[start:stop].tobytes(),
            holders=b"" if answers.holders is None else answers.holders[start:stop].tobytes(),
        )


def confirmations(request: pb.ConfirmRequest) -> list[TokenConfirmation]:
    items = []
    for item in request.tokens:
        if len(item.category) > MAX_CATEGORY_LENGTH:
            raise InvalidArgumentError(f"categories are at most {MAX_CATEGORY_LENGTH} characters")
        items.append(
            TokenConfirmation(
                token=item.token,
                category=item.category,
                first_seen=moment(item.first_seen, item.HasField("first_seen")),
                last_seen=moment(item.last_seen, item.HasField("last_seen")),
            )
        )
    return items


def confirm_response(outcome: ConfirmOutcome) -> pb.ConfirmResponse:
    return pb.ConfirmResponse(
        accepted=outcome.accepted,
        shared=outcome.shared,
        not_resolved=outcome.not_resolved,
        over_budget=outcome.over_budget,
    )


def shared_indicator(record: SharedIndicator, *, with_token: bool) -> pb.SharedIndicator:
    """``with_token``: members get the token back to map it to their own value; coordinators
    get the opaque id only."""
    return pb.SharedIndicator(
        id=record.id,
        kind=record.kind,
        token=record.token if with_token else b"",
        reporters=record.reporters,
        reporter_names=record.reporter_names,
        categories=record.categories,
        first_seen=timestamp(record.first_seen),
        last_seen=timestamp(record.last_seen),
        status=record.status.value,
    )


def campaign_match(link: CampaignLink) -> pb.CampaignMatch:
    return pb.CampaignMatch(
        cluster_id=link.cluster_id,
        campaign_id=link.campaign_id,
        similarity=link.similarity,
        other_members=link.other_member_count,
        other_member_names=link.other_members,
    )


def campaign(record: Campaign) -> pb.Campaign:
    return pb.Campaign(
        id=record.id,
        family=record.family,
        members=record.members,
        similarity=record.similarity,
        volume=record.volume,
        categories=record.categories,
        status=record.status.value,
    )


def record_query(record_type: RecordType, scope: str, page: pb.PageRequest) -> RecordQuery:
    """A Review service listing request as a listing query: creation order, oldest first. A
    page size of 0 asks for :data:`RPC_PAGE_SIZE`, one above the maximum for the maximum; the
    page token is a cursor this hub issued for that order, or empty for the first page."""
    return RecordQuery.parse(
        record_type,
        scope=scope,
        sort="created",
        descending=False,
        size=min(page.page_size or RPC_PAGE_SIZE, MAX_PAGE_SIZE),
        cursor=page.page_token,
    )


def overlap(matrix: OverlapMatrix) -> pb.OverlapMatrix:
    return pb.OverlapMatrix(
        kind=matrix.kind,
        members=matrix.members,
        estimate=matrix.estimate.ravel().tolist(),
        stderr=matrix.stderr.ravel().tolist(),
    )


def submission_info(view: SubmissionView) -> pb.SubmissionInfo:
    submission, params = view.submission, view.params
    figures = None
    if params is not None and submission.set_bits is not None:
        bloom = params.bloom_params()
        fill = submission.set_bits / bloom.m
        figures = pb.FilterHealth(
            set_bits=submission.set_bits,
            fill=fill,
            expected_fill=bloom.expected_fill(submission.declared_count),
            fpr_at_fill=bloom.fpr_at_fill(fill),
        )
    return pb.SubmissionInfo(
        id=submission.id,
        member=view.member,
        kind=submission.family_kind,
        key_id=submission.key_id,
        declared_count=submission.declared_count,
        byte_size=submission.byte_size,
        status=submission.status.value,
        created_at=timestamp(submission.created_at),
        expires_at=timestamp(submission.expires_at),
        health=figures,
        tokens_asked=submission.tokens_asked,
        flags=view.flags,
    )


def names(values: Sequence[str]) -> list[str]:
    return list(values)


def shingle_unit(value: str) -> Literal["word", "char"] | None:
    """``""`` keeps the stored unit; anything else must be ``word`` or ``char``."""
    if not value:
        return None
    if value not in ("word", "char"):
        raise InvalidArgumentError("shingle_unit must be 'word' or 'char'")
    return "word" if value == "word" else "char"
