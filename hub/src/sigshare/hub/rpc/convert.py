"""Conversions between ``sigshare.v1`` protobuf messages and the hub's domain types.

The only hub module that touches ``*_pb2``. Incoming messages are validated into domain values
here (a malformed message raises :class:`InvalidArgumentError` or
:class:`SketchRejectedError`); outgoing ones are built from domain values. The Review service's
answers also convert back into domain values (``*_from_proto``), for the review client
(:mod:`.review_client`): a coordinator reviewing over gRPC sees what one on the hub host sees.
What members and the hub must encode alike — a sketch format's wire value, the cluster-set
payload — comes from :mod:`sigshare.sketch.wire`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Literal, TypeVar

import grpc
import numpy as np
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from sigshare.client.errors import HubProtocolError
from sigshare.hub.domain import (
    Campaign,
    CampaignLink,
    KeyRegistration,
    KindParameters,
    MinHashParameters,
    Principal,
    RecordType,
    ReviewEvent,
    ReviewEventKind,
    ReviewStatus,
    Role,
    SharedIndicator,
    StoredEnvelope,
)
from sigshare.hub.errors import InvalidArgumentError, SketchRejectedError
from sigshare.hub.listing import MAX_PAGE_SIZE, Page, RecordQuery, review_status
from sigshare.hub.services.coordinator_views import (
    DEFAULT_FLAG_FACTOR,
    OverlapMatrix,
    SubmissionSummary,
    SubmissionView,
)
from sigshare.hub.services.keyring import (
    CustodianKey,
    EnvelopeUpload,
    KeyStatus,
    RecipientList,
    RegistrationOutcome,
)
from sigshare.hub.services.member_views import ConfirmOutcome
from sigshare.hub.services.resolution import Answers, TokenStatus
from sigshare.hub.services.submissions import SubmitOutcome, UploadHeader
from sigshare.hub.storage.indicators import TokenConfirmation
from sigshare.hub.storage.reviews import RecordState
from sigshare.sketch.checks import FilterHealth
from sigshare.sketch.cluster import ClusterInfo
from sigshare.sketch.codec import SignatureSet
from sigshare.sketch.errors import FormatError
from sigshare.sketch.wire import decode_cluster_set, format_from_proto
from sigshare.v1 import hub_pb2 as pb
from sigshare.v1 import hub_pb2_grpc as pb_grpc

_ROLES = {
    Role.MEMBER: pb.ROLE_MEMBER,
    Role.COORDINATOR: pb.ROLE_COORDINATOR,
    Role.ADMIN: pb.ROLE_ADMIN,
    Role.CUSTODIAN: pb.ROLE_CUSTODIAN,
}
_ROLES_IN: dict[int, Role] = {int(value): role for role, value in _ROLES.items()}
_Item = TypeVar("_Item")
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
        raise InvalidArgumentError("role must be member, coordinator, admin or custodian")
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


def member_indicator(record: SharedIndicator) -> pb.SharedIndicator:
    """A shared indicator as a member who reported it reads it: the token back, to map it to its
    own value, and the forum's status and note for members — nothing of the review itself (who
    reviews it, when)."""
    return pb.SharedIndicator(
        id=record.id,
        kind=record.kind,
        token=record.token,
        reporters=record.reporters,
        reporter_names=record.reporter_names,
        categories=record.categories,
        first_seen=timestamp(record.first_seen),
        last_seen=timestamp(record.last_seen),
        status=record.status.value,
        member_note=record.member_note or "",
    )


def review_indicator(record: SharedIndicator) -> pb.SharedIndicator:
    """A shared indicator as a coordinator reviews it: the opaque id, never the token."""
    return pb.SharedIndicator(
        id=record.id,
        kind=record.kind,
        reporters=record.reporters,
        reporter_names=record.reporter_names,
        categories=record.categories,
        first_seen=timestamp(record.first_seen),
        last_seen=timestamp(record.last_seen),
        status=record.status.value,
        member_note=record.member_note or "",
        assignee=record.assignee or "",
        created_at=timestamp(record.created_at),
        updated_at=timestamp(record.updated_at),
    )


def campaign_match(link: CampaignLink) -> pb.CampaignMatch:
    return pb.CampaignMatch(
        cluster_id=link.cluster_id,
        campaign_id=link.campaign_id,
        similarity=link.similarity,
        other_members=link.other_member_count,
        other_member_names=link.other_members,
        status=link.status.value,
        member_note=link.member_note or "",
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
        assignee=record.assignee or "",
        created_at=timestamp(record.created_at),
        updated_at=timestamp(record.updated_at),
        member_note=record.member_note or "",
        member_count=record.member_count,
        first_seen=timestamp(record.first_seen),
        last_seen=timestamp(record.last_seen),
    )


def record_query(
    record_type: RecordType, scope: str, page: pb.PageRequest, order: pb.RecordFilter
) -> RecordQuery:
    """A Review service listing request as a listing query. Without a filter: every record, in
    creation order, oldest first. A page size of 0 asks for :data:`RPC_PAGE_SIZE`, one above
    the maximum for the maximum; the page token is a cursor this hub issued for that order, or
    empty for the first page."""
    return RecordQuery.parse(
        record_type,
        scope=scope,
        status=order.status,
        category=order.category,
        assignee=order.assignee,
        sort=order.sort or "created",
        descending=order.descending,
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


def review_event(event: ReviewEvent) -> pb.ReviewEvent:
    return pb.ReviewEvent(
        id=event.id,
        record_type=event.record_type.value,
        record_id=event.record_id,
        actor=event.actor,
        at=timestamp(event.at),
        kind=event.kind.value,
        from_status="" if event.from_status is None else event.from_status.value,
        to_status="" if event.to_status is None else event.to_status.value,
        assignee=event.assignee or "",
        note=event.note or "",
        member_note=event.member_note or "",
    )


def review_history(state: RecordState, events: Sequence[ReviewEvent]) -> pb.ReviewHistory:
    return pb.ReviewHistory(
        record_type=state.record_type.value,
        record_id=state.record_id,
        status=state.status.value,
        assignee=state.assignee or "",
        member_note=state.member_note or "",
        events=[review_event(event) for event in events],
    )


def flag_factor(request: pb.ListSubmissionsRequest) -> float:
    """A ListSubmissions request's flag factor; left out, :data:`DEFAULT_FLAG_FACTOR`."""
    return request.flag_factor if request.HasField("flag_factor") else DEFAULT_FLAG_FACTOR


def status_named(value: str) -> ReviewStatus:
    """The status a workflow request names; an empty or unknown one is refused."""
    status = review_status(value)
    if status is None:
        raise InvalidArgumentError("choose a status: triaged, confirmed or dismissed")
    return status


# ------------------------------------------------------------ the Review service, as its client
# Requests as the review client sends them, and answers read back into domain values. A
# malformed answer breaks the wire contract: HubProtocolError, as the member SDK says it.


def review_stub(channel: grpc.Channel) -> pb_grpc.ReviewServiceStub:
    return pb_grpc.ReviewServiceStub(channel)


def overlap_request(kind: str | None) -> pb.OverlapRequest:
    return pb.OverlapRequest(kind=kind or "")


def submissions_request(kind: str | None, factor: float) -> pb.ListSubmissionsRequest:
    return pb.ListSubmissionsRequest(kind=kind or "", flag_factor=factor)


def _page_and_filter(query: RecordQuery) -> tuple[pb.PageRequest, pb.RecordFilter]:
    """What asks a listing for ``query``: its page, and its filters and order."""
    return (
        pb.PageRequest(
            page_size=query.size,
            page_token="" if query.cursor is None else query.cursor.encode(),
        ),
        pb.RecordFilter(
            status="" if query.status is None else query.status.value,
            category=query.category or "",
            assignee=query.assignee or "",
            sort=query.sort,
            descending=query.descending,
        ),
    )


def indicators_request(query: RecordQuery) -> pb.ListSharedIndicatorsRequest:
    page, order = _page_and_filter(query)
    return pb.ListSharedIndicatorsRequest(kind=query.scope or "", page=page, filter=order)


def campaigns_request(query: RecordQuery) -> pb.ListCampaignsRequest:
    page, order = _page_and_filter(query)
    return pb.ListCampaignsRequest(family=query.scope or "", page=page, filter=order)


def set_status_request(
    record_id: str, status: ReviewStatus, *, note: str | None, member_note: str | None
) -> pb.SetReviewStatusRequest:
    return pb.SetReviewStatusRequest(
        record_id=record_id, status=status.value, note=note or "", member_note=member_note or ""
    )


def assign_request(
    record_id: str, assignee: str | None, *, note: str | None
) -> pb.AssignReviewRequest:
    return pb.AssignReviewRequest(record_id=record_id, assignee=assignee or "", note=note or "")


def note_request(record_id: str, note: str, *, for_members: bool) -> pb.AddReviewNoteRequest:
    return pb.AddReviewNoteRequest(record_id=record_id, note=note, for_members=for_members)


def history_request(record_id: str) -> pb.GetReviewHistoryRequest:
    return pb.GetReviewHistoryRequest(record_id=record_id)


def _optional(text: str) -> str | None:
    return text or None


def _stamp(message: Message, field: str) -> datetime | None:
    """``message.field`` of a hub's answer as an aware UTC datetime; ``None`` when unset."""
    try:
        return moment(getattr(message, field), message.HasField(field))
    except InvalidArgumentError as error:
        raise HubProtocolError(f"the hub sent an impossible {field}: {error}") from None


def _required_stamp(message: Message, field: str) -> datetime:
    found = _stamp(message, field)
    if found is None:
        raise HubProtocolError(f"the hub's answer lacks {field}")
    return found


def _status_from_proto(value: str) -> ReviewStatus:
    try:
        return ReviewStatus(value)
    except ValueError:
        raise HubProtocolError(f"the hub sent an unknown review status {value[:32]!r}") from None


def _record_type_from_proto(value: str) -> RecordType:
    try:
        return RecordType(value)
    except ValueError:
        raise HubProtocolError(f"the hub sent an unknown record type {value[:32]!r}") from None


def indicator_from_proto(message: pb.SharedIndicator) -> SharedIndicator:
    """A shared indicator a review listing sent (no token, no key id: coordinators see
    neither)."""
    return SharedIndicator(
        id=message.id,
        kind=message.kind,
        key_id="",
        token=b"",
        reporters=message.reporters,
        reporter_names=tuple(message.reporter_names),
        categories=tuple(message.categories),
        first_seen=_stamp(message, "first_seen"),
        last_seen=_stamp(message, "last_seen"),
        status=_status_from_proto(message.status),
        created_at=_required_stamp(message, "created_at"),
        updated_at=_required_stamp(message, "updated_at"),
        assignee=_optional(message.assignee),
        member_note=_optional(message.member_note),
    )


def campaign_from_proto(message: pb.Campaign) -> Campaign:
    """A campaign a review listing sent (listings hold active campaigns only)."""
    return Campaign(
        id=message.id,
        family=message.family,
        member_count=message.member_count,
        members=tuple(message.members),
        similarity=message.similarity,
        volume=message.volume,
        categories=tuple(message.categories),
        first_seen=_stamp(message, "first_seen"),
        last_seen=_stamp(message, "last_seen"),
        status=_status_from_proto(message.status),
        active=True,
        created_at=_required_stamp(message, "created_at"),
        updated_at=_required_stamp(message, "updated_at"),
        assignee=_optional(message.assignee),
        member_note=_optional(message.member_note),
    )


def page_from_proto(
    items: list[_Item],
    response: pb.ListSharedIndicatorsResponse | pb.ListCampaignsResponse,
) -> Page[_Item]:
    return Page(
        items,
        total=response.total,
        first=response.first,
        next_cursor=_optional(response.next_page_token),
        previous_cursor=_optional(response.previous_page_token),
    )


def overlap_from_proto(message: pb.OverlapMatrix) -> OverlapMatrix:
    size = len(message.members)
    if len(message.estimate) != size * size or len(message.stderr) != size * size:
        raise HubProtocolError(f"the hub sent an overlap matrix that is not {size} × {size}")
    return OverlapMatrix(
        kind=message.kind,
        members=list(message.members),
        estimate=np.array(message.estimate, dtype=np.float64).reshape(size, size),
        stderr=np.array(message.stderr, dtype=np.float64).reshape(size, size),
    )


def submission_summary(message: pb.SubmissionInfo) -> SubmissionSummary:
    return SubmissionSummary(
        member=message.member,
        kind=message.kind,
        submission_id=message.id,
        created_at=_required_stamp(message, "created_at"),
        declared_count=message.declared_count,
        tokens_asked=message.tokens_asked,
        flags=tuple(message.flags),
    )


def review_event_from_proto(message: pb.ReviewEvent) -> ReviewEvent:
    try:
        kind = ReviewEventKind(message.kind)
    except ValueError:
        raise HubProtocolError(
            f"the hub sent an unknown review event kind {message.kind[:32]!r}"
        ) from None
    return ReviewEvent(
        id=message.id,
        record_type=_record_type_from_proto(message.record_type),
        record_id=message.record_id,
        actor=message.actor,
        at=_required_stamp(message, "at"),
        kind=kind,
        from_status=_status_from_proto(message.from_status) if message.from_status else None,
        to_status=_status_from_proto(message.to_status) if message.to_status else None,
        assignee=_optional(message.assignee),
        note=_optional(message.note),
        member_note=_optional(message.member_note),
    )


def review_history_from_proto(
    message: pb.ReviewHistory,
) -> tuple[RecordState, list[ReviewEvent]]:
    state = RecordState(
        record_type=_record_type_from_proto(message.record_type),
        record_id=message.record_id,
        status=_status_from_proto(message.status),
        assignee=_optional(message.assignee),
        member_note=_optional(message.member_note),
    )
    return state, [review_event_from_proto(event) for event in message.events]


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


# ---------------------------------------------------------------------------------- keys


def key_registration(registration: KeyRegistration | None) -> pb.KeyRegistration | None:
    if registration is None:
        return None
    return pb.KeyRegistration(
        sealing_public=registration.sealing_public,
        signing_public=registration.signing_public,
        fingerprint=registration.fingerprint,
        registered_at=timestamp(registration.registered_at),
        approved_at=timestamp(registration.approved_at),
    )


def register_keys_response(outcome: RegistrationOutcome) -> pb.RegisterKeysResponse:
    return pb.RegisterKeysResponse(
        registration=key_registration(outcome.registration), unchanged=outcome.unchanged
    )


def key_status_response(status: KeyStatus) -> pb.GetKeyStatusResponse:
    return pb.GetKeyStatusResponse(
        approved=key_registration(status.approved),
        pending=key_registration(status.pending),
        envelopes_waiting=status.envelopes_waiting,
        name=status.name,
    )


def envelope(stored: StoredEnvelope) -> pb.Envelope:
    return pb.Envelope(
        key_id=stored.key_id,
        recipient=stored.recipient,
        custodian=stored.custodian,
        recipient_fingerprint=stored.recipient_fingerprint,
        created_at=timestamp(stored.created_at),
        activate_at=timestamp(stored.activate_at),
        envelope=stored.envelope,
    )


def custodian(key: CustodianKey) -> pb.Custodian:
    return pb.Custodian(
        name=key.name,
        signing_public=key.signing_public,
        signing_fingerprint=key.signing_fingerprint,
    )


def recipients_response(found: RecipientList) -> pb.ListRecipientsResponse:
    return pb.ListRecipientsResponse(
        recipients=[
            pb.Recipient(name=registration.principal, keys=key_registration(registration))
            for registration in found.recipients
        ],
        unregistered=found.unregistered,
        rotation_due=found.rotation_due,
    )


def envelope_uploads(request: pb.UploadEnvelopesRequest) -> list[EnvelopeUpload]:
    """The envelopes of an upload with what the custodian says each is (checked by the
    service against the envelopes' own headers)."""
    return [
        EnvelopeUpload(
            key_id=item.key_id,
            recipient=item.recipient,
            custodian=item.custodian,
            recipient_fingerprint=item.recipient_fingerprint,
            envelope=item.envelope,
        )
        for item in request.envelopes
    ]
