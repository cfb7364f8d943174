"""Where `sigshare-hub review` does its work: on the hub's database, or over the hub's gRPC API.

Admins on the hub host review on the database of ``--db`` (:class:`DatabaseDesk`), recorded as
``cli:<user>``. Coordinators anywhere review over gRPC with their own credential (``--hub``:
:class:`~sigshare.hub.rpc.review_client.ReviewClient`), recorded by the hub under their
principal's name. Both answer the :class:`ReviewDesk` calls with the same domain values, so every
command prints the same text and JSON either way. :class:`ReviewContext` picks the desk and is
the one place errors of either leave through (:meth:`ReviewContext.desk`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from sigshare.client.cli.errors import exit_code_for
from sigshare.client.config import ConfigError, read_credential_file
from sigshare.client.console import Console
from sigshare.client.errors import HubClientError, HubRejectedError
from sigshare.client.exit_codes import ExitCode
from sigshare.client.hub_client import HubConnection
from sigshare.hub.cli.context import HubContext
from sigshare.hub.cli.errors import abort
from sigshare.hub.domain import Campaign, ReviewEvent, ReviewStatus, SharedIndicator
from sigshare.hub.errors import (
    AlreadyExistsError,
    InvalidArgumentError,
    NotFoundError,
    PreconditionError,
)
from sigshare.hub.listing import Page, RecordQuery
from sigshare.hub.rpc.review_client import ReviewClient
from sigshare.hub.services import audit, coordinator_views, reviews
from sigshare.hub.services.coordinator_views import OverlapMatrix, SubmissionSummary
from sigshare.hub.storage import session_scope
from sigshare.hub.storage.reviews import RecordState


class ReviewDesk(Protocol):
    """What the review commands ask, wherever the records are."""

    def overlaps(self, kind: str | None) -> list[OverlapMatrix]: ...

    def submissions(self, kind: str | None, flag_factor: float) -> list[SubmissionSummary]: ...

    def indicators(self, query: RecordQuery) -> Page[SharedIndicator]: ...

    def campaigns(self, query: RecordQuery) -> Page[Campaign]: ...

    def history(self, record_id: str) -> tuple[RecordState, list[ReviewEvent]]: ...

    def set_status(
        self,
        record_id: str,
        status: ReviewStatus,
        *,
        note: str | None,
        member_note: str | None,
    ) -> ReviewEvent: ...

    def assign(self, record_id: str, assignee: str | None, *, note: str | None) -> ReviewEvent: ...

    def add_note(self, record_id: str, note: str, *, for_members: bool) -> ReviewEvent: ...


class DatabaseDesk:
    """Review on the hub's database, as the CLI actor ``cli:<user>``: each call is one unit of
    work, and reads are audited in it."""

    def __init__(self, hub: HubContext) -> None:
        self._hub = hub

    def overlaps(self, kind: str | None) -> list[OverlapMatrix]:
        with session_scope(self._hub.engine()) as session:
            matrices = coordinator_views.overlap_matrices(session, kind, self._hub.now())
            audit.record_read(session, self._hub.actor, "review.overlap", kind, self._hub.now())
        return matrices

    def submissions(self, kind: str | None, flag_factor: float) -> list[SubmissionSummary]:
        with session_scope(self._hub.engine()) as session:
            views = coordinator_views.submissions(session, kind or "", flag_factor=flag_factor)
            audit.record_read(session, self._hub.actor, "review.submissions", kind, self._hub.now())
        return [SubmissionSummary.of(view) for view in views]

    def indicators(self, query: RecordQuery) -> Page[SharedIndicator]:
        with session_scope(self._hub.engine()) as session:
            found = reviews.indicators(session, query)
            audit.record_read(
                session, self._hub.actor, "review.indicators", query.scope, self._hub.now()
            )
        return found

    def campaigns(self, query: RecordQuery) -> Page[Campaign]:
        with session_scope(self._hub.engine()) as session:
            found = reviews.campaigns(session, query, self._hub.now())
            audit.record_read(
                session, self._hub.actor, "review.campaigns", query.scope, self._hub.now()
            )
        return found

    def history(self, record_id: str) -> tuple[RecordState, list[ReviewEvent]]:
        with session_scope(self._hub.engine()) as session:
            state, events = reviews.history(session, record_id)
            target = f"{state.record_type.value}:{record_id}"
            audit.record_read(session, self._hub.actor, "review.history", target, self._hub.now())
        return state, events

    def set_status(
        self,
        record_id: str,
        status: ReviewStatus,
        *,
        note: str | None,
        member_note: str | None,
    ) -> ReviewEvent:
        with session_scope(self._hub.engine()) as session:
            return reviews.set_status(
                session,
                actor=self._hub.actor,
                record_id=record_id,
                status=status,
                note=note,
                member_note=member_note,
                now=self._hub.now(),
            )

    def assign(self, record_id: str, assignee: str | None, *, note: str | None) -> ReviewEvent:
        with session_scope(self._hub.engine()) as session:
            return reviews.assign(
                session,
                actor=self._hub.actor,
                record_id=record_id,
                assignee=assignee,
                note=note,
                now=self._hub.now(),
            )

    def add_note(self, record_id: str, note: str, *, for_members: bool) -> ReviewEvent:
        with session_scope(self._hub.engine()) as session:
            return reviews.add_note(
                session,
                actor=self._hub.actor,
                record_id=record_id,
                note=note,
                for_members=for_members,
                now=self._hub.now(),
            )


@dataclass(frozen=True, slots=True)
class RemoteHub:
    """``--hub`` and how to reach it: the credential file of the coordinator or admin to act
    as, and the TLS settings (as a member's configuration names them)."""

    target: str
    credential_file: Path
    ca_cert: Path | None = None
    client_cert: Path | None = None
    client_key: Path | None = None
    insecure: bool = False

    def connection(self) -> HubConnection:
        """The SDK's connection settings, with the credential read from its file (which must
        be readable by its owner only)."""
        return HubConnection(
            target=self.target,
            credential=read_credential_file(self.credential_file),
            ca_cert=self.ca_cert,
            client_cert=self.client_cert,
            client_key=self.client_key,
            insecure=self.insecure,
        )


_REFUSALS: dict[str, ExitCode] = {
    error.grpc_status: error.exit_code
    for error in (InvalidArgumentError, NotFoundError, AlreadyExistsError, PreconditionError)
}
"""A refusal's gRPC status → what the hub error behind it exits with on the hub host, so a
command exits alike in both modes."""


def client_exit_code(error: HubClientError | ConfigError) -> ExitCode:
    """The exit code of an SDK or settings error: a refusal as on the hub host; anything else
    as the member CLI exits with it (network 6, authentication 4, settings 3)."""
    if isinstance(error, HubRejectedError) and error.status in _REFUSALS:
        return _REFUSALS[error.status]
    return exit_code_for(error) or ExitCode.FAILURE


class ReviewContext:
    """What every review command shares: the hub context and, with ``--hub``, the hub to review
    on over gRPC. The gRPC client is made on first use and closed with the context."""

    def __init__(self, hub: HubContext, remote: RemoteHub | None) -> None:
        self._hub = hub
        self._remote = remote
        self._client: ReviewClient | None = None

    @contextmanager
    def desk(self, console: Console) -> Iterator[ReviewDesk]:
        """The desk to review at; errors inside leave through the CLI's error table (remote
        ones exit as the same error would on the hub host)."""
        try:
            with self._hub.guard(console):
                yield self._desk()
        except (HubClientError, ConfigError) as error:
            abort(console, str(error), client_exit_code(error))

    def _desk(self) -> ReviewDesk:
        if self._remote is None:
            return DatabaseDesk(self._hub)
        if self._client is None:
            self._client = ReviewClient(self._remote.connection())
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
