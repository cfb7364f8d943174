"""Conversions between the hub's protobuf messages and the SDK's plain types.

The only client module that imports the generated stubs (``sigshare.v1``): a change of the wire
contract lands here and nowhere else, except for what members and the hub share through
:mod:`sigshare.sketch.wire` (a sketch format's wire value, the cluster-set payload). It also owns
the two chunked streams of the contract — building a submission's header and data chunks, and a
resolution's token chunks and the answers that come back — because their framing (header first,
lengths, digests) is part of the contract.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime

import grpc
import numpy as np
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from sigshare.client.errors import HubProtocolError
from sigshare.client.hub_types import (
    CampaignMatchView,
    ConfirmedToken,
    ConfirmResult,
    CustodianInfo,
    FilterHealthInfo,
    HubParameters,
    KeyRegistration,
    KeyStatus,
    Matches,
    PublishedBloom,
    PublishedMinHash,
    Recipient,
    RecipientList,
    RegisterKeysResult,
    ResolveResult,
    SealedEnvelope,
    SharedIndicatorView,
    SubmissionInfoView,
    SubmitResult,
    TokenStatus,
    UploadEnvelopesResult,
    require_aware,
)
from sigshare.sketch.codec import SketchFormat
from sigshare.sketch.prf import TOKEN_BYTES
from sigshare.sketch.wire import format_to_proto
from sigshare.v1 import hub_pb2, hub_pb2_grpc

Progress = Callable[[int], None]

_TOKEN_OVERHEAD = 6
"""Bytes a repeated-field entry adds around a ConfirmedToken (tag + length varint), rounded up."""


def member_stub(channel: grpc.Channel) -> hub_pb2_grpc.MemberServiceStub:
    return hub_pb2_grpc.MemberServiceStub(channel)


def key_stub(channel: grpc.Channel) -> hub_pb2_grpc.KeyServiceStub:
    return hub_pb2_grpc.KeyServiceStub(channel)


def custodian_stub(channel: grpc.Channel) -> hub_pb2_grpc.CustodianServiceStub:
    return hub_pb2_grpc.CustodianServiceStub(channel)


# ---------------------------------------------------------------------------------- timestamps


def to_timestamp(value: datetime) -> Timestamp:
    require_aware(value, "timestamp")
    timestamp = Timestamp()
    timestamp.FromDatetime(value.astimezone(UTC))
    return timestamp


def from_timestamp(message: Message, field: str) -> datetime | None:
    """``message.field`` as an aware UTC datetime, or ``None`` when the hub left it unset."""
    if not message.HasField(field):
        return None
    timestamp: Timestamp = getattr(message, field)
    try:
        return timestamp.ToDatetime(tzinfo=UTC)
    except (ValueError, OverflowError) as error:
        raise HubProtocolError(f"the hub sent an impossible {field}: {error}") from None


def _health(message: hub_pb2.SubmitResponse | hub_pb2.SubmissionInfo) -> FilterHealthInfo | None:
    if not message.HasField("health"):
        return None
    health = message.health
    return FilterHealthInfo(
        set_bits=health.set_bits,
        fill=health.fill,
        expected_fill=health.expected_fill,
        fpr_at_fill=health.fpr_at_fill,
    )


# ---------------------------------------------------------------------------------- parameters


def parameters_request() -> hub_pb2.GetParametersRequest:
    return hub_pb2.GetParametersRequest()


def parameters_from_proto(response: hub_pb2.GetParametersResponse) -> HubParameters:
    bloom: dict[str, PublishedBloom] = {}
    for b in response.bloom:
        if b.kind in bloom:
            raise HubProtocolError(f"hub published Bloom parameters for {b.kind!r} twice")
        bloom[b.kind] = PublishedBloom(
            kind=b.kind,
            key_id=b.key_id,
            capacity=b.capacity,
            target_fpr=b.target_fpr,
            m=b.m,
            k=b.k,
            quorum=b.quorum,
            retention_days=b.retention_days,
            reveal_members=b.reveal_members,
            digest=b.digest,
            forum_fpr=b.forum_fpr,
            max_members=b.max_members,
        )
    minhash: dict[str, PublishedMinHash] = {}
    for h in response.minhash:
        if h.family in minhash:
            raise HubProtocolError(f"hub published MinHash parameters for {h.family!r} twice")
        minhash[h.family] = PublishedMinHash(
            family=h.family,
            key_id=h.key_id,
            num_perm=h.num_perm,
            shingle_unit=h.shingle_unit,
            shingle_size=h.shingle_size,
            threshold=h.threshold,
            quorum=h.quorum,
            retention_days=h.retention_days,
            reveal_members=h.reveal_members,
            digest=h.digest,
            bands=h.bands,
            rows=h.rows,
            drop_stopwords=h.drop_stopwords,
            core_rules=h.core_rules if h.HasField("core_rules") else 1,
            cluster_threshold=(h.cluster_threshold if h.HasField("cluster_threshold") else None),
        )
    return HubParameters(
        bloom=bloom,
        minhash=minhash,
        max_upload_bytes=response.max_upload_bytes,
        chunk_bytes=response.chunk_bytes,
        next_key_id=response.next_key_id or None,
    )


# ---------------------------------------------------------------------------------- submission


def submit_header(
    *,
    sketch_format: SketchFormat,
    kind: str,
    key_id: str,
    params_digest: bytes,
    declared_count: int,
    payload: bytes,
) -> hub_pb2.SubmitHeader:
    """The header of a submission; hashing the payload once here serves every retry."""
    return hub_pb2.SubmitHeader(
        format=format_to_proto(sketch_format),
        kind=kind,
        key_id=key_id,
        params_digest=params_digest,
        declared_count=declared_count,
        content_length=len(payload),
        content_sha256=hashlib.sha256(payload).digest(),
    )


def submit_chunks(
    header: hub_pb2.SubmitHeader,
    payload: bytes,
    chunk_bytes: int,
    on_progress: Progress | None = None,
) -> Iterator[hub_pb2.SubmitChunk]:
    """The client stream of one attempt: the header, then the payload in ``chunk_bytes`` pieces.

    Lazy, so gRPC pulls one chunk at a time under flow control; each piece is copied once out
    of the payload (protobuf needs ``bytes``) and reported to ``on_progress`` when pulled.
    """
    if chunk_bytes < 1:
        raise ValueError("chunk_bytes must be positive")
    yield hub_pb2.SubmitChunk(header=header)
    view = memoryview(payload)
    for start in range(0, len(view), chunk_bytes):
        piece = bytes(view[start : start + chunk_bytes])
        yield hub_pb2.SubmitChunk(data=piece)
        if on_progress is not None:
            on_progress(len(piece))


def submit_result_from_proto(response: hub_pb2.SubmitResponse) -> SubmitResult:
    expires_at = from_timestamp(response, "expires_at")
    if expires_at is None:
        raise HubProtocolError("hub accepted the submission without saying when it expires")
    return SubmitResult(
        submission_id=response.submission_id,
        duplicate=response.duplicate,
        health=_health(response),
        expires_at=expires_at,
    )


# ---------------------------------------------------------------------------------- resolution


def resolve_requests(
    kind: str,
    key_id: str,
    tokens: bytes,
    chunk_bytes: int,
    on_progress: Progress | None = None,
) -> Iterator[hub_pb2.ResolveRequest]:
    """A Resolve stream: the header, then the concatenated tokens in whole-token chunks."""
    if len(tokens) % TOKEN_BYTES:
        raise ValueError(f"tokens are {TOKEN_BYTES} bytes each")
    yield hub_pb2.ResolveRequest(
        header=hub_pb2.ResolveHeader(
            kind=kind, key_id=key_id, token_count=len(tokens) // TOKEN_BYTES
        )
    )
    step = max(TOKEN_BYTES, chunk_bytes - chunk_bytes % TOKEN_BYTES)
    view = memoryview(tokens)
    for start in range(0, len(view), step):
        piece = bytes(view[start : start + step])
        yield hub_pb2.ResolveRequest(tokens=piece)
        if on_progress is not None:
            on_progress(len(piece) // TOKEN_BYTES)


def resolve_from_stream(
    responses: Iterable[hub_pb2.ResolveResponse], *, kind: str, key_id: str, count: int
) -> ResolveResult:
    """Read the hub's answers to a Resolve of ``count`` tokens and check them.

    The summary must come first and name what was asked for; the answers must cover exactly
    ``count`` tokens, agree with the summary's tallies and carry well-formed holder masks. A
    faulty hub cannot make the client buffer more than ``count`` answers.
    """
    iterator = iter(responses)
    first = next(iterator, None)
    if first is None or first.WhichOneof("part") != "summary":
        raise HubProtocolError("resolve answer does not start with a summary")
    summary = first.summary
    if summary.kind != kind or summary.key_id != key_id:
        raise HubProtocolError(
            f"asked about {kind!r}/{key_id!r}, the hub answered {summary.kind!r}/{summary.key_id!r}"
        )
    names = tuple(summary.holder_names)
    mask_bytes = summary.holder_mask_bytes
    if (names and mask_bytes != -(-len(names) // 8)) or (not names and mask_bytes):
        raise HubProtocolError(
            f"holder masks of {mask_bytes} bytes do not fit {len(names)} member names"
        )
    status = np.empty(count, dtype=np.uint8)
    others = np.empty(count, dtype=np.uint8)
    holders = np.zeros((count, mask_bytes), dtype=np.uint8) if mask_bytes else None
    received = 0
    for message in iterator:
        if message.WhichOneof("part") != "answers":
            raise HubProtocolError("resolve answer carries a second summary")
        chunk = message.answers
        n = len(chunk.status)
        if len(chunk.others) != n or len(chunk.holders) != n * mask_bytes:
            raise HubProtocolError("resolve answer chunk has fields of different lengths")
        if received + n > count:
            raise HubProtocolError(f"the hub answered more than the {count} tokens asked")
        status[received : received + n] = np.frombuffer(chunk.status, dtype=np.uint8)
        others[received : received + n] = np.frombuffer(chunk.others, dtype=np.uint8)
        if holders is not None:
            holders[received : received + n] = np.frombuffer(chunk.holders, dtype=np.uint8).reshape(
                n, mask_bytes
            )
        received += n
    if received != count:
        raise HubProtocolError(f"the hub answered {received} of {count} tokens")
    tallies = {
        TokenStatus.ANSWERED: summary.answered,
        TokenStatus.NOT_HELD: summary.not_held,
        TokenStatus.OVER_BUDGET: summary.over_budget,
    }
    if (status > max(TokenStatus)).any() or any(
        int(np.count_nonzero(status == code)) != tally for code, tally in tallies.items()
    ):
        raise HubProtocolError("resolve answers disagree with the hub's summary")
    if (others[status != TokenStatus.ANSWERED] != 0).any():
        raise HubProtocolError("the hub sent holder counts for tokens it did not answer")
    return ResolveResult(
        kind=summary.kind,
        key_id=summary.key_id,
        quorum=summary.quorum,
        members=summary.members,
        status=status,
        others=others,
        holder_names=names,
        holders=holders,
        submission_tokens=summary.submission_tokens,
        submission_budget=summary.submission_budget,
        day_tokens=summary.day_tokens,
        day_budget=summary.day_budget,
        budget_frees_at=from_timestamp(summary, "budget_frees_at"),
        computed_at=from_timestamp(summary, "computed_at"),
    )


# ---------------------------------------------------------------------------------- confirmation


def confirm_requests(
    kind: str,
    key_id: str,
    tokens: Iterable[ConfirmedToken],
    *,
    max_tokens: int,
    max_bytes: int,
) -> Iterator[hub_pb2.ConfirmRequest]:
    """Requests of at most ``max_tokens`` tokens and about ``max_bytes`` serialized each.

    Sizes are measured per token because categories vary in length: a fixed token count alone
    could push a request past the hub's message limit.
    """
    batch: list[hub_pb2.ConfirmedToken] = []
    size = 0
    for token in tokens:
        message = hub_pb2.ConfirmedToken(token=token.token, category=token.category)
        if token.first_seen is not None:
            message.first_seen.CopyFrom(to_timestamp(token.first_seen))
        if token.last_seen is not None:
            message.last_seen.CopyFrom(to_timestamp(token.last_seen))
        entry = message.ByteSize() + _TOKEN_OVERHEAD
        if batch and (len(batch) >= max_tokens or size + entry > max_bytes):
            yield hub_pb2.ConfirmRequest(kind=kind, key_id=key_id, tokens=batch)
            batch, size = [], 0
        batch.append(message)
        size += entry
    if batch:
        yield hub_pb2.ConfirmRequest(kind=kind, key_id=key_id, tokens=batch)


def confirm_result_from_proto(response: hub_pb2.ConfirmResponse) -> ConfirmResult:
    return ConfirmResult(
        accepted=response.accepted,
        shared=response.shared,
        not_resolved=response.not_resolved,
        over_budget=response.over_budget,
    )


# ---------------------------------------------------------------------------------- member view


def list_matches_request(kind: str) -> hub_pb2.ListMatchesRequest:
    return hub_pb2.ListMatchesRequest(kind=kind)


def matches_from_proto(response: hub_pb2.ListMatchesResponse) -> Matches:
    return Matches(
        indicators=tuple(
            SharedIndicatorView(
                id=i.id,
                kind=i.kind,
                token=i.token,
                reporters=i.reporters,
                reporter_names=tuple(i.reporter_names),
                categories=tuple(i.categories),
                first_seen=from_timestamp(i, "first_seen"),
                last_seen=from_timestamp(i, "last_seen"),
                status=i.status,
                member_note=i.member_note or None,
            )
            for i in response.indicators
        ),
        campaigns=tuple(
            CampaignMatchView(
                cluster_id=c.cluster_id,
                campaign_id=c.campaign_id,
                similarity=c.similarity,
                other_members=c.other_members,
                other_member_names=tuple(c.other_member_names),
                status=c.status or None,
                member_note=c.member_note or None,
            )
            for c in response.campaigns
        ),
    )


def status_request() -> hub_pb2.GetStatusRequest:
    return hub_pb2.GetStatusRequest()


def status_from_proto(response: hub_pb2.GetStatusResponse) -> tuple[str, list[SubmissionInfoView]]:
    return response.member, [
        SubmissionInfoView(
            id=s.id,
            member=s.member,
            kind=s.kind,
            key_id=s.key_id,
            declared_count=s.declared_count,
            byte_size=s.byte_size,
            status=s.status,
            created_at=from_timestamp(s, "created_at"),
            expires_at=from_timestamp(s, "expires_at"),
            health=_health(s),
        )
        for s in response.submissions
    ]


# ---------------------------------------------------------------------------------- keys


def _registration(message: hub_pb2.KeyRegistration, what: str) -> KeyRegistration:
    if not message.fingerprint:
        raise HubProtocolError(f"the hub sent {what} without its fingerprint")
    return KeyRegistration(
        sealing_public=message.sealing_public,
        signing_public=message.signing_public,
        fingerprint=message.fingerprint,
        registered_at=from_timestamp(message, "registered_at"),
        approved_at=from_timestamp(message, "approved_at"),
    )


def register_keys_request(
    sealing_public: bytes, signing_public: bytes, proof: bytes
) -> hub_pb2.RegisterKeysRequest:
    return hub_pb2.RegisterKeysRequest(
        sealing_public=sealing_public, signing_public=signing_public, proof=proof
    )


def register_keys_result_from_proto(response: hub_pb2.RegisterKeysResponse) -> RegisterKeysResult:
    if not response.HasField("registration"):
        raise HubProtocolError("the hub accepted the keys without saying what it registered")
    return RegisterKeysResult(
        registration=_registration(response.registration, "the registration"),
        unchanged=response.unchanged,
    )


def key_status_request() -> hub_pb2.GetKeyStatusRequest:
    return hub_pb2.GetKeyStatusRequest()


def key_status_from_proto(response: hub_pb2.GetKeyStatusResponse) -> KeyStatus:
    if not response.name:
        raise HubProtocolError("the hub's key status does not name the caller")
    return KeyStatus(
        name=response.name,
        approved=(
            _registration(response.approved, "the approved registration")
            if response.HasField("approved")
            else None
        ),
        pending=(
            _registration(response.pending, "the pending registration")
            if response.HasField("pending")
            else None
        ),
        envelopes_waiting=response.envelopes_waiting,
    )


def fetch_envelopes_request() -> hub_pb2.FetchEnvelopesRequest:
    return hub_pb2.FetchEnvelopesRequest()


def _envelope_to_proto(envelope: SealedEnvelope) -> hub_pb2.Envelope:
    message = hub_pb2.Envelope(
        key_id=envelope.key_id,
        recipient=envelope.recipient,
        custodian=envelope.custodian,
        recipient_fingerprint=envelope.recipient_fingerprint,
        envelope=envelope.envelope,
    )
    if envelope.created_at is not None:
        message.created_at.CopyFrom(to_timestamp(envelope.created_at))
    if envelope.activate_at is not None:
        message.activate_at.CopyFrom(to_timestamp(envelope.activate_at))
    return message


def envelopes_from_proto(response: hub_pb2.FetchEnvelopesResponse) -> list[SealedEnvelope]:
    return [
        SealedEnvelope(
            key_id=e.key_id,
            recipient=e.recipient,
            custodian=e.custodian,
            recipient_fingerprint=e.recipient_fingerprint,
            created_at=from_timestamp(e, "created_at"),
            activate_at=from_timestamp(e, "activate_at"),
            envelope=e.envelope,
        )
        for e in response.envelopes
    ]


def list_custodians_request() -> hub_pb2.ListCustodiansRequest:
    return hub_pb2.ListCustodiansRequest()


def custodians_from_proto(response: hub_pb2.ListCustodiansResponse) -> list[CustodianInfo]:
    return [
        CustodianInfo(
            name=c.name,
            signing_public=c.signing_public,
            signing_fingerprint=c.signing_fingerprint,
        )
        for c in response.custodians
    ]


def list_recipients_request() -> hub_pb2.ListRecipientsRequest:
    return hub_pb2.ListRecipientsRequest()


def recipients_from_proto(response: hub_pb2.ListRecipientsResponse) -> RecipientList:
    recipients = []
    for r in response.recipients:
        if not r.HasField("keys"):
            raise HubProtocolError(f"the hub lists recipient {r.name!r} without its keys")
        recipients.append(Recipient(name=r.name, keys=_registration(r.keys, f"{r.name}'s keys")))
    return RecipientList(
        recipients=tuple(recipients),
        unregistered=tuple(response.unregistered),
        rotation_due=tuple(response.rotation_due),
    )


def upload_envelopes_request(
    key_id: str, activate_at: datetime | None, envelopes: Iterable[SealedEnvelope]
) -> hub_pb2.UploadEnvelopesRequest:
    request = hub_pb2.UploadEnvelopesRequest(
        key_id=key_id, envelopes=[_envelope_to_proto(e) for e in envelopes]
    )
    if activate_at is not None:
        request.activate_at.CopyFrom(to_timestamp(activate_at))
    return request


def upload_result_from_proto(response: hub_pb2.UploadEnvelopesResponse) -> UploadEnvelopesResult:
    return UploadEnvelopesResult(
        key_id=response.key_id, recipients=response.recipients, total_bytes=response.total_bytes
    )
