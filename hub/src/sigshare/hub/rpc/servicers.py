"""The gRPC servicers: thin adapters from messages to the service layer and back.

Each call runs its service function in one ``session_scope`` (the unit of work), takes the
caller from the auth interceptor, and leaves every error to :func:`.status.abort`.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any, TypeVar

import grpc
from sqlalchemy import Engine

from sigshare.hub.domain import NAME_RULE, Principal, RecordType, is_valid_name
from sigshare.hub.errors import AuditChainError, InvalidArgumentError, SketchRejectedError
from sigshare.hub.matching.membership import IndexCache
from sigshare.hub.rpc import convert
from sigshare.hub.rpc.auth import principal_of
from sigshare.hub.rpc.status import abort
from sigshare.hub.services import (
    audit,
    coordinator_views,
    epochs,
    keyring,
    member_views,
    parameters,
    principals,
    resolution,
    reviews,
)
from sigshare.hub.services.audit import verify_audit_log
from sigshare.hub.services.submissions import (
    UploadHeader,
    UploadPlan,
    plan_upload,
    submit_bloom,
    submit_clusters,
    verify_content,
)
from sigshare.hub.storage import blobs
from sigshare.hub.storage.blobs import StagedBlob
from sigshare.hub.storage.database import session_scope
from sigshare.sketch.checks import StreamedFilter
from sigshare.sketch.codec import SketchFormat
from sigshare.sketch.prf import TOKEN_BYTES
from sigshare.v1 import hub_pb2 as pb
from sigshare.v1 import hub_pb2_grpc as pb_grpc

log = logging.getLogger("sigshare.hub.rpc")

CHUNK_BYTES = 1 << 20
"""Data chunks of downloads, and the size members are asked to send."""
MAX_UPLOAD_BYTES = 1 << 30

_F = TypeVar("_F", bound=Callable[..., Any])


def _now() -> datetime:
    return datetime.now(UTC)


def translated(method: _F) -> _F:
    """Map errors raised by a unary or client-streaming method to statuses."""

    @functools.wraps(method)
    def run(self: Any, request: Any, context: grpc.ServicerContext) -> Any:
        try:
            return method(self, request, context)
        except Exception as error:
            abort(context, error, method.__name__)

    return run  # type: ignore[return-value]


def translated_stream(method: _F) -> _F:
    """The same for server-streaming methods (errors surface while iterating)."""

    @functools.wraps(method)
    def run(self: Any, request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        try:
            yield from method(self, request, context)
        except Exception as error:
            abort(context, error, method.__name__)

    return run  # type: ignore[return-value]


class MemberServicer(pb_grpc.MemberServiceServicer):
    def __init__(self, engine: Engine, cache: IndexCache) -> None:
        self._engine = engine
        self._cache = cache

    @translated
    def GetParameters(
        self, request: pb.GetParametersRequest, context: grpc.ServicerContext
    ) -> pb.GetParametersResponse:
        with session_scope(self._engine) as session:
            kinds, families = parameters.list_parameters(session)
            upcoming = epochs.next_key_id(session, [*kinds, *families])
        return pb.GetParametersResponse(
            bloom=[convert.bloom_parameters(p) for p in kinds],
            minhash=[convert.minhash_parameters(p) for p in families],
            max_upload_bytes=MAX_UPLOAD_BYTES,
            chunk_bytes=CHUNK_BYTES,
            next_key_id=upcoming or "",
        )

    @translated
    def Submit(
        self, request_iterator: Iterator[pb.SubmitChunk], context: grpc.ServicerContext
    ) -> pb.SubmitResponse:
        member = principal_of(context)
        first = next(request_iterator, None)
        if first is None or first.WhichOneof("part") != "header":
            raise InvalidArgumentError("a submission stream starts with its header")
        header = convert.upload_header(first.header)
        with session_scope(self._engine) as session:
            plan = plan_upload(session, header)
        if header.content_length > MAX_UPLOAD_BYTES:
            raise SketchRejectedError(f"uploads are limited to {MAX_UPLOAD_BYTES} bytes")
        # Bloom filters are written to the blob store as they arrive (cluster sets are
        # re-encoded after decoding, so the store gets the canonical bytes later).
        # What the filter's checks count (its bits' CRC-32, byte popcounts) is counted on the
        # blob's observer threads as it arrives, leaving less to do once the stream ends.
        store = blobs.store_for(self._engine)
        staged, streamed = None, None
        if store is not None and header.format is SketchFormat.BLOOM_V1:
            streamed = StreamedFilter()
            staged = store.stage(streamed.consumers())
        try:
            return self._submit(member, header, plan, request_iterator, staged, streamed)
        finally:
            if staged is not None:
                staged.discard()  # nothing left behind once published or refused

    def _submit(  # noqa: PLR0917 - private; the parts of one call
        self,
        member: Principal,
        header: UploadHeader,
        plan: UploadPlan,
        request_iterator: Iterator[pb.SubmitChunk],
        staged: StagedBlob | None,
        streamed: StreamedFilter | None,
    ) -> pb.SubmitResponse:
        started = time.perf_counter()
        payload, sha256 = _receive(
            request_iterator, min(plan.max_bytes, header.content_length), staged
        )
        received = time.perf_counter()
        if header.format is SketchFormat.CLUSTERS_V1:
            verify_content(header, payload, sha256)
            signatures, clusters = convert.cluster_set(bytes(payload))  # not staged: bytes
            with session_scope(self._engine) as session:
                outcome = submit_clusters(
                    session,
                    member,
                    header,
                    signatures=signatures,
                    clusters=clusters,
                    now=_now(),
                    plan=plan,
                )
        else:
            with session_scope(self._engine) as session:
                outcome = submit_bloom(
                    session,
                    member,
                    header,
                    payload,
                    _now(),
                    sha256=sha256,
                    plan=plan,
                    staged=staged,
                    streamed=streamed,
                )
        log.info(
            "submission member=%s kind=%s bytes=%d duplicate=%s receive_s=%.3f store_s=%.3f",
            member.name,
            header.kind,
            len(payload),
            outcome.duplicate,
            received - started,
            time.perf_counter() - received,
        )
        return convert.submit_response(outcome)

    @translated_stream
    def Resolve(
        self, request_iterator: Iterator[pb.ResolveRequest], context: grpc.ServicerContext
    ) -> Iterator[pb.ResolveResponse]:
        member = principal_of(context)
        first = next(request_iterator, None)
        if first is None or first.WhichOneof("part") != "header":
            raise InvalidArgumentError("a resolve stream starts with its header")
        header = first.header
        _require_name(header.kind, "kind")
        with session_scope(self._engine) as session:
            params = resolution.kind_parameters(session, header.kind, header.key_id)
        resolution.require_token_count(params, header.token_count)
        started = time.perf_counter()
        tokens = resolution.tokens_from_buffer(
            _receive_tokens(request_iterator, header.token_count * TOKEN_BYTES)
        )
        received = time.perf_counter()
        if not context.is_active():  # cancelled after sending: nobody would get the answers
            return
        now = _now()
        with session_scope(self._engine) as session:
            answers = resolution.resolve(
                session,
                self._cache,
                member,
                kind=header.kind,
                key_id=header.key_id,
                tokens=tokens,
                now=now,
            )
        with session_scope(self._engine) as session:  # before anything is sent
            resolution.audit_answers(session, member, answers, now)
        log.info(
            "resolution member=%s kind=%s tokens=%d answered=%d receive_s=%.3f answer_s=%.3f",
            member.name,
            header.kind,
            len(tokens),
            answers.count(resolution.TokenStatus.ANSWERED),
            received - started,
            time.perf_counter() - received,
        )
        yield pb.ResolveResponse(summary=convert.resolve_summary(answers))
        for chunk in convert.resolve_answers(answers, CHUNK_BYTES):
            yield pb.ResolveResponse(answers=chunk)

    @translated
    def Confirm(
        self, request: pb.ConfirmRequest, context: grpc.ServicerContext
    ) -> pb.ConfirmResponse:
        member = principal_of(context)
        items = convert.confirmations(request)
        with session_scope(self._engine) as session:
            outcome = member_views.confirm(
                session,
                self._cache,
                member,
                kind=request.kind,
                key_id=request.key_id,
                confirmations=items,
                now=_now(),
            )
        return convert.confirm_response(outcome)

    @translated
    def ListMatches(
        self, request: pb.ListMatchesRequest, context: grpc.ServicerContext
    ) -> pb.ListMatchesResponse:
        member = principal_of(context)
        now = _now()
        if request.kind:
            _require_name(request.kind, "kind")
        _audit_read(self._engine, member, "matches.read", request.kind, now)
        with session_scope(self._engine) as session:
            found = member_views.matches(session, member, request.kind, now)
        return pb.ListMatchesResponse(
            indicators=[convert.member_indicator(i) for i in found.indicators],
            campaigns=[convert.campaign_match(link) for link in found.campaigns],
        )

    @translated
    def GetStatus(
        self, request: pb.GetStatusRequest, context: grpc.ServicerContext
    ) -> pb.GetStatusResponse:
        member = principal_of(context)
        with session_scope(self._engine) as session:
            kinds = {p.kind: p for p in parameters.list_parameters(session)[0]}
            own = member_views.status(session, member)
        return pb.GetStatusResponse(
            member=member.name,
            submissions=[
                convert.submission_info(
                    coordinator_views.SubmissionView(s, member.name, kinds.get(s.family_kind))
                )
                for s in own
            ],
        )


def _require_name(value: str, what: str) -> None:
    """Refuse a malformed kind or family name before it reaches the audit log or a query."""
    if not is_valid_name(value):
        raise InvalidArgumentError(f"{what} {value[:64]!r} is not a valid name: {NAME_RULE}")


def _audit_read(
    engine: Engine, principal: Principal, action: str, target: str | None, now: datetime
) -> None:
    """:func:`.audit.record_read` in a unit of work of its own (the read itself is done)."""
    with session_scope(engine) as session:
        audit.record_read(session, principal.name, action, target, now)


def _receive(
    chunks: Iterator[pb.SubmitChunk], announced: int, staged: StagedBlob | None = None
) -> tuple[bytes | memoryview, bytes]:
    """The data of a submission and its SHA-256, refusing more than ``announced`` bytes.

    Without ``staged``, hashing chunk by chunk overlaps with gRPC receiving the next one. With
    it, each chunk goes to the blob's threads (writing, hashing, counting), and the data comes
    back mapped from the staged file: no copy of the payload is made in memory.
    """
    parts: list[bytes] = []
    digest = hashlib.sha256()
    received = 0
    for chunk in chunks:
        if chunk.WhichOneof("part") != "data":
            raise InvalidArgumentError("only data chunks may follow the header")
        data = chunk.data
        received += len(data)
        if received > announced:
            raise SketchRejectedError(f"stream carries more than the {announced} bytes announced")
        if staged is None:
            parts.append(data)
            digest.update(data)
        else:
            staged.write(data)
    if staged is None:
        return b"".join(parts), digest.digest()  # the one copy of the payload
    return staged.contents(), staged.finish()


def _receive_tokens(chunks: Iterator[pb.ResolveRequest], announced: int) -> bytes:
    """The token bytes of a resolve stream: exactly the ``announced`` number of bytes."""
    parts: list[bytes] = []
    received = 0
    for chunk in chunks:
        if chunk.WhichOneof("part") != "tokens":
            raise InvalidArgumentError("only token chunks may follow the header")
        parts.append(chunk.tokens)
        received += len(chunk.tokens)
        if received > announced:
            raise InvalidArgumentError(f"stream carries more than the {announced} bytes announced")
    if received != announced:
        raise InvalidArgumentError(f"stream ended after {received} of {announced} bytes announced")
    return b"".join(parts)


class ReviewServicer(pb_grpc.ReviewServiceServicer):
    """Coordinators' reads and the review workflow. Changes are recorded as the calling
    principal, by name, in the record's history and the audit log; reads are audited too."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def _audit(self, context: grpc.ServicerContext, action: str, target: str) -> datetime:
        if target:
            _require_name(target, "kind or family")
        now = _now()
        _audit_read(self._engine, principal_of(context), action, target, now)
        return now

    @translated
    def GetOverlapMatrix(
        self, request: pb.OverlapRequest, context: grpc.ServicerContext
    ) -> pb.OverlapMatrix:
        now = self._audit(context, "review.overlap", request.kind)
        with session_scope(self._engine) as session:
            return convert.overlap(coordinator_views.overlap_matrix(session, request.kind, now))

    @translated
    def GetOverlapMatrices(
        self, request: pb.OverlapRequest, context: grpc.ServicerContext
    ) -> pb.OverlapMatrices:
        now = self._audit(context, "review.overlap", request.kind)
        with session_scope(self._engine) as session:
            matrices = coordinator_views.overlap_matrices(session, request.kind or None, now)
        return pb.OverlapMatrices(matrices=[convert.overlap(m) for m in matrices])

    @translated
    def ListSharedIndicators(
        self, request: pb.ListSharedIndicatorsRequest, context: grpc.ServicerContext
    ) -> pb.ListSharedIndicatorsResponse:
        self._audit(context, "review.indicators", request.kind)
        query = convert.record_query(
            RecordType.INDICATOR, request.kind, request.page, request.filter
        )
        with session_scope(self._engine) as session:
            page = reviews.indicators(session, query)
        return pb.ListSharedIndicatorsResponse(
            indicators=[convert.review_indicator(r) for r in page.items],
            next_page_token=page.next_cursor or "",
            total=page.total,
            first=page.first,
            previous_page_token=page.previous_cursor or "",
        )

    @translated
    def ListCampaigns(
        self, request: pb.ListCampaignsRequest, context: grpc.ServicerContext
    ) -> pb.ListCampaignsResponse:
        now = self._audit(context, "review.campaigns", request.family)
        query = convert.record_query(
            RecordType.CAMPAIGN, request.family, request.page, request.filter
        )
        with session_scope(self._engine) as session:
            page = reviews.campaigns(session, query, now)
        return pb.ListCampaignsResponse(
            campaigns=[convert.campaign(r) for r in page.items],
            next_page_token=page.next_cursor or "",
            total=page.total,
            first=page.first,
            previous_page_token=page.previous_cursor or "",
        )

    @translated
    def ListSubmissions(
        self, request: pb.ListSubmissionsRequest, context: grpc.ServicerContext
    ) -> pb.ListSubmissionsResponse:
        self._audit(context, "review.submissions", request.kind)
        with session_scope(self._engine) as session:
            views = coordinator_views.submissions(
                session, request.kind, flag_factor=convert.flag_factor(request)
            )
        return pb.ListSubmissionsResponse(
            submissions=[convert.submission_info(view) for view in views]
        )

    @translated
    def SetReviewStatus(
        self, request: pb.SetReviewStatusRequest, context: grpc.ServicerContext
    ) -> pb.ReviewEvent:
        coordinator = principal_of(context)
        status = convert.status_named(request.status)
        with session_scope(self._engine) as session:
            event = reviews.set_status(
                session,
                actor=coordinator.name,
                record_id=request.record_id,
                status=status,
                note=request.note or None,
                member_note=request.member_note or None,
                now=_now(),
            )
        return convert.review_event(event)

    @translated
    def AssignReview(
        self, request: pb.AssignReviewRequest, context: grpc.ServicerContext
    ) -> pb.ReviewEvent:
        coordinator = principal_of(context)
        with session_scope(self._engine) as session:
            event = reviews.assign(
                session,
                actor=coordinator.name,
                record_id=request.record_id,
                assignee=request.assignee or None,
                note=request.note or None,
                now=_now(),
            )
        return convert.review_event(event)

    @translated
    def AddReviewNote(
        self, request: pb.AddReviewNoteRequest, context: grpc.ServicerContext
    ) -> pb.ReviewEvent:
        coordinator = principal_of(context)
        with session_scope(self._engine) as session:
            event = reviews.add_note(
                session,
                actor=coordinator.name,
                record_id=request.record_id,
                note=request.note,
                for_members=request.for_members,
                now=_now(),
            )
        return convert.review_event(event)

    @translated
    def GetReviewHistory(
        self, request: pb.GetReviewHistoryRequest, context: grpc.ServicerContext
    ) -> pb.ReviewHistory:
        coordinator = principal_of(context)
        with session_scope(self._engine) as session:  # the read and its audit entry, together
            state, events = reviews.history(session, request.record_id)
            audit.record_read(
                session,
                coordinator.name,
                "review.history",
                f"{state.record_type.value}:{state.record_id}",
                _now(),
            )
        return convert.review_history(state, events)


class AdminServicer(pb_grpc.AdminServiceServicer):
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    @translated
    def AddPrincipal(
        self, request: pb.AddPrincipalRequest, context: grpc.ServicerContext
    ) -> pb.AddPrincipalResponse:
        admin = principal_of(context)
        with session_scope(self._engine) as session:
            record, credential = principals.add_principal(
                session,
                actor=admin.name,
                name=request.name,
                role=convert.role(request.role),
                now=_now(),
            )
        return pb.AddPrincipalResponse(
            principal=convert.principal(record), credential=credential.token
        )

    @translated
    def ListPrincipals(
        self, request: pb.ListPrincipalsRequest, context: grpc.ServicerContext
    ) -> pb.ListPrincipalsResponse:
        _audit_read(self._engine, principal_of(context), "principal.list", None, _now())
        with session_scope(self._engine) as session:
            records = principals.list_principals(session)
        return pb.ListPrincipalsResponse(principals=[convert.principal(r) for r in records])

    @translated
    def RevokePrincipal(
        self, request: pb.RevokePrincipalRequest, context: grpc.ServicerContext
    ) -> pb.RevokePrincipalResponse:
        admin = principal_of(context)
        with session_scope(self._engine) as session:
            record = principals.revoke_principal(
                session, actor=admin.name, name=request.name, now=_now()
            )
        return pb.RevokePrincipalResponse(principal=convert.principal(record))

    @translated
    def RotatePrincipal(
        self, request: pb.RotatePrincipalRequest, context: grpc.ServicerContext
    ) -> pb.RotatePrincipalResponse:
        admin = principal_of(context)
        with session_scope(self._engine) as session:
            record, credential = principals.rotate_principal(
                session, actor=admin.name, name=request.name, now=_now()
            )
        return pb.RotatePrincipalResponse(
            principal=convert.principal(record), credential=credential.token
        )

    @translated
    def SetParameters(
        self, request: pb.SetParametersRequest, context: grpc.ServicerContext
    ) -> pb.SetParametersResponse:
        admin = principal_of(context)
        now = _now()
        with session_scope(self._engine) as session:
            kinds = [
                parameters.set_kind_parameters(
                    session,
                    actor=admin.name,
                    kind=b.kind,
                    key_id=b.key_id,
                    capacity=b.capacity,
                    forum_fpr=b.forum_fpr,
                    max_members=b.max_members or None,
                    quorum=b.quorum or None,
                    retention_days=b.retention_days or None,
                    reveal_members=b.reveal_members if b.HasField("reveal_members") else None,
                    replace_interval_seconds=(
                        b.replace_interval_seconds
                        if b.HasField("replace_interval_seconds")
                        else None
                    ),
                    now=now,
                )
                for b in request.bloom
            ]
            families = [
                parameters.set_minhash_parameters(
                    session,
                    actor=admin.name,
                    family=h.family,
                    key_id=h.key_id or None,
                    threshold=h.threshold or None,
                    num_perm=h.num_perm or None,
                    shingle_unit=convert.shingle_unit(h.shingle_unit),
                    shingle_size=h.shingle_size or None,
                    drop_stopwords=h.drop_stopwords if h.HasField("drop_stopwords") else None,
                    core_rules=h.core_rules if h.HasField("core_rules") else None,
                    cluster_threshold=(
                        h.cluster_threshold if h.HasField("cluster_threshold") else None
                    ),
                    quorum=h.quorum or None,
                    retention_days=h.retention_days or None,
                    reveal_members=h.reveal_members if h.HasField("reveal_members") else None,
                    now=now,
                )
                for h in request.minhash
            ]
        return pb.SetParametersResponse(
            bloom=[convert.bloom_parameters(p) for p in kinds],
            minhash=[convert.minhash_parameters(p) for p in families],
        )

    @translated
    def VerifyAudit(
        self, request: pb.VerifyAuditRequest, context: grpc.ServicerContext
    ) -> pb.VerifyAuditResponse:
        _audit_read(self._engine, principal_of(context), "audit.verify", None, _now())
        with session_scope(self._engine) as session:
            try:
                result = verify_audit_log(session)
            except AuditChainError as broken:
                return pb.VerifyAuditResponse(
                    intact=False, broken_at=broken.entry_id, reason=broken.reason
                )
        return pb.VerifyAuditResponse(entries=result.entries, intact=True)


class KeyServicer(pb_grpc.KeyServiceServicer):
    """Members' and custodians' keys and the envelopes addressed to them."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    @translated
    def RegisterKeys(
        self, request: pb.RegisterKeysRequest, context: grpc.ServicerContext
    ) -> pb.RegisterKeysResponse:
        with session_scope(self._engine) as session:
            outcome = keyring.register_keys(
                session,
                principal=principal_of(context),
                sealing_public=request.sealing_public,
                signing_public=request.signing_public,
                proof=request.proof,
                now=_now(),
            )
        return convert.register_keys_response(outcome)

    @translated
    def GetKeyStatus(
        self, request: pb.GetKeyStatusRequest, context: grpc.ServicerContext
    ) -> pb.GetKeyStatusResponse:
        with session_scope(self._engine) as session:
            status = keyring.key_status(session, principal=principal_of(context), now=_now())
        return convert.key_status_response(status)

    @translated
    def FetchEnvelopes(
        self, request: pb.FetchEnvelopesRequest, context: grpc.ServicerContext
    ) -> pb.FetchEnvelopesResponse:
        with session_scope(self._engine) as session:
            found = keyring.fetch_envelopes(session, principal=principal_of(context), now=_now())
        return pb.FetchEnvelopesResponse(envelopes=[convert.envelope(e) for e in found])

    @translated
    def ListCustodians(
        self, request: pb.ListCustodiansRequest, context: grpc.ServicerContext
    ) -> pb.ListCustodiansResponse:
        with session_scope(self._engine) as session:
            found = keyring.list_custodians(session, now=_now())
        return pb.ListCustodiansResponse(custodians=[convert.custodian(c) for c in found])


class CustodianServicer(pb_grpc.CustodianServiceServicer):
    """The custodian's side of a rotation: whom to seal to, and the upload of every envelope."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    @translated
    def ListRecipients(
        self, request: pb.ListRecipientsRequest, context: grpc.ServicerContext
    ) -> pb.ListRecipientsResponse:
        with session_scope(self._engine) as session:
            found = keyring.list_recipients(session, now=_now())
        return convert.recipients_response(found)

    @translated
    def UploadEnvelopes(
        self, request: pb.UploadEnvelopesRequest, context: grpc.ServicerContext
    ) -> pb.UploadEnvelopesResponse:
        custodian = principal_of(context)
        with session_scope(self._engine) as session:
            rotation = keyring.upload_envelopes(
                session,
                custodian=custodian,
                key_id=request.key_id,
                activate_at=convert.moment(request.activate_at, request.HasField("activate_at")),
                envelopes=convert.envelope_uploads(request),
                now=_now(),
            )
        log.info(
            "rotation custodian=%s key_id=%s recipients=%d bytes=%d",
            custodian.name,
            rotation.key_id,
            rotation.recipients,
            rotation.total_bytes,
        )
        return pb.UploadEnvelopesResponse(
            key_id=rotation.key_id,
            recipients=rotation.recipients,
            total_bytes=rotation.total_bytes,
        )


SERVICES = ("MemberService", "ReviewService", "AdminService", "KeyService", "CustodianService")


def register(server: grpc.Server, engine: Engine, cache: IndexCache | None = None) -> list[str]:
    """Add the sigshare services (:data:`SERVICES`) to ``server``; their full names.
    ``cache``: where membership indexes are kept (a 1 GiB one by default)."""
    member = MemberServicer(engine, IndexCache() if cache is None else cache)
    pb_grpc.add_MemberServiceServicer_to_server(member, server)
    pb_grpc.add_ReviewServiceServicer_to_server(ReviewServicer(engine), server)
    pb_grpc.add_AdminServiceServicer_to_server(AdminServicer(engine), server)
    pb_grpc.add_KeyServiceServicer_to_server(KeyServicer(engine), server)
    pb_grpc.add_CustodianServiceServicer_to_server(CustodianServicer(engine), server)
    return [pb.DESCRIPTOR.services_by_name[name].full_name for name in SERVICES]
