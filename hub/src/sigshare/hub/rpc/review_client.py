"""The coordinators' client of the hub's ReviewService, behind ``sigshare-hub review --hub``.

A coordinator (or admin) reviews from anywhere with its own credential: every call is made as
that principal, and the hub records the principal's name in the record's history and the audit
log. The transport — channel, deadlines, retries, typed errors — is the member SDK's
(:class:`~sigshare.client.hub_client.HubServiceClient`); requests are built and answers read back
into the hub's domain values by :mod:`.convert`, so the CLI shows what comes over gRPC exactly as
it shows what it reads from the database. Reads are retried on transient failures; workflow
changes are tried once, since the hub may have made a change before its failure reached us.
"""

from __future__ import annotations

from sigshare.client.hub_client import HubConnection, HubServiceClient, RetryPolicy, Timeouts
from sigshare.hub.domain import Campaign, ReviewEvent, ReviewStatus, SharedIndicator
from sigshare.hub.listing import Page, RecordQuery
from sigshare.hub.rpc import convert
from sigshare.hub.services.coordinator_views import OverlapMatrix, SubmissionSummary
from sigshare.hub.storage.reviews import RecordState


class ReviewClient(HubServiceClient):
    """A coordinator's or admin's connection to the hub's ReviewService."""

    def __init__(
        self,
        connection: HubConnection,
        *,
        retry: RetryPolicy | None = None,
        timeouts: Timeouts | None = None,
    ) -> None:
        super().__init__(connection, retry=retry, timeouts=timeouts)
        self._stub = convert.review_stub(self._channel)

    # -- reads --------------------------------------------------------------------------------

    def overlaps(self, kind: str | None) -> list[OverlapMatrix]:
        """The overlap matrix of ``kind``, or of every indicator kind (``None``)."""
        response = self._unary(
            "GetOverlapMatrices", self._stub.GetOverlapMatrices, convert.overlap_request(kind)
        )
        return [convert.overlap_from_proto(matrix) for matrix in response.matrices]

    def submissions(self, kind: str | None, flag_factor: float) -> list[SubmissionSummary]:
        """Every member's active submissions (of ``kind``, or all), with probing flags."""
        response = self._unary(
            "ListSubmissions",
            self._stub.ListSubmissions,
            convert.submissions_request(kind, flag_factor),
        )
        return [convert.submission_summary(info) for info in response.submissions]

    def indicators(self, query: RecordQuery) -> Page[SharedIndicator]:
        response = self._unary(
            "ListSharedIndicators",
            self._stub.ListSharedIndicators,
            convert.indicators_request(query),
        )
        items = [convert.indicator_from_proto(item) for item in response.indicators]
        return convert.page_from_proto(items, response)

    def campaigns(self, query: RecordQuery) -> Page[Campaign]:
        response = self._unary(
            "ListCampaigns", self._stub.ListCampaigns, convert.campaigns_request(query)
        )
        items = [convert.campaign_from_proto(item) for item in response.campaigns]
        return convert.page_from_proto(items, response)

    def history(self, record_id: str) -> tuple[RecordState, list[ReviewEvent]]:
        response = self._unary(
            "GetReviewHistory", self._stub.GetReviewHistory, convert.history_request(record_id)
        )
        return convert.review_history_from_proto(response)

    # -- the workflow -------------------------------------------------------------------------

    def set_status(
        self,
        record_id: str,
        status: ReviewStatus,
        *,
        note: str | None,
        member_note: str | None,
    ) -> ReviewEvent:
        request = convert.set_status_request(record_id, status, note=note, member_note=member_note)
        response = self._unary("SetReviewStatus", self._stub.SetReviewStatus, request, retry=False)
        return convert.review_event_from_proto(response)

    def assign(self, record_id: str, assignee: str | None, *, note: str | None) -> ReviewEvent:
        request = convert.assign_request(record_id, assignee, note=note)
        response = self._unary("AssignReview", self._stub.AssignReview, request, retry=False)
        return convert.review_event_from_proto(response)

    def add_note(self, record_id: str, note: str, *, for_members: bool) -> ReviewEvent:
        request = convert.note_request(record_id, note, for_members=for_members)
        response = self._unary("AddReviewNote", self._stub.AddReviewNote, request, retry=False)
        return convert.review_event_from_proto(response)
