"""The review records: listings and pages of shared indicators and campaigns, and the review
actions (status, assignee, note) on either.

Both record types are listed and shown by the same handlers, parameterised by
:class:`RecordPages`. A review action posts, then redirects to the record with its outcome as
a flash message (POST → redirect → GET).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

from fastapi import Form
from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from sigshare.hub.domain import (
    REVIEW_TRANSITIONS,
    Campaign,
    RecordType,
    ReviewEvent,
    ReviewStatus,
    SharedIndicator,
)
from sigshare.hub.errors import HubError, InvalidArgumentError
from sigshare.hub.listing import Page, RecordQuery, review_status
from sigshare.hub.services import reviews
from sigshare.hub.services.parameters import list_parameters
from sigshare.hub.storage import session_scope
from sigshare.hub.web import forms, views
from sigshare.hub.web.console import (
    AuditedRead,
    Console,
    ConsoleDep,
    PageView,
    Viewer,
    require_csrf,
    require_same_site,
)
from sigshare.hub.web.security import FLASH_SECONDS, Flash, encode_flash, set_cookie

Handler = Callable[..., Response]


@dataclass(frozen=True, slots=True)
class RecordPages:
    """How the console lists and shows one type of review record."""

    record_type: RecordType
    section: str
    """The listing's section, path and template: ``indicators`` is ``/indicators``, rendered
    by ``indicators.html``; a record is ``/indicators/<id>``."""
    scope_name: str
    """The listing's scope filter: ``kind`` or ``family``."""
    choices_name: str
    """The context name of the scopes to choose from: ``kinds`` or ``families``."""
    choices: Callable[[Session], list[str]]
    listed: Callable[[Session, RecordQuery, datetime], Page[Any]]
    """The listing's page of records, as of the moment given."""
    record: Callable[[Session, str], reviews.ReviewRecord[Any]]

    @property
    def listing_path(self) -> str:
        return f"/{self.section}"

    def record_path(self, record_id: str) -> str:
        return f"{self.listing_path}/{record_id}"


def _kinds(session: Session) -> list[str]:
    return [p.kind for p in list_parameters(session)[0]]


def _families(session: Session) -> list[str]:
    return [p.family for p in list_parameters(session)[1]]


def _listed_indicators(
    session: Session, query: RecordQuery, now: datetime
) -> Page[SharedIndicator]:
    return reviews.indicators(session, query)


def _listed_campaigns(session: Session, query: RecordQuery, now: datetime) -> Page[Campaign]:
    return reviews.campaigns(session, query, now)


INDICATORS = RecordPages(
    record_type=RecordType.INDICATOR,
    section="indicators",
    scope_name="kind",
    choices_name="kinds",
    choices=_kinds,
    listed=_listed_indicators,
    record=reviews.indicator,
)
CAMPAIGNS = RecordPages(
    record_type=RecordType.CAMPAIGN,
    section="campaigns",
    scope_name="family",
    choices_name="families",
    choices=_families,
    listed=_listed_campaigns,
    record=reviews.campaign,
)
RECORD_PAGES = {pages.record_type: pages for pages in (INDICATORS, CAMPAIGNS)}


# ---------------------------------------------------------------------------------- pages


def listing(pages: RecordPages) -> Handler:
    """The handler of ``pages``' listing: filters, order and cursor from the query string."""

    def handler(request: Request, console: ConsoleDep) -> Response:
        def build(session: Session, viewer: Viewer, now: datetime) -> PageView:
            asked = forms.record_query(
                pages.record_type, request.query_params, scope_name=pages.scope_name
            )
            listed = pages.listed(session, asked, now)
            link = forms.record_link(asked, scope_name=pages.scope_name)
            context = {
                "section": pages.section,
                "items": listed.items,
                "page": listed,
                "query": link,
                "path": pages.listing_path,
                pages.choices_name: pages.choices(session),
                "statuses": list(ReviewStatus),
            }
            read = AuditedRead(
                f"web.{pages.section}", asked.scope or "*", {**link, "first": listed.first}
            )
            return PageView(f"{pages.section}.html", context, read)

        return console.show(request, build)

    return handler


def detail(pages: RecordPages) -> Handler:
    """The handler of ``pages``' record page: the record, its review forms and history."""
    name = pages.record_type.value

    def handler(request: Request, console: ConsoleDep, record_id: str) -> Response:
        def build(session: Session, viewer: Viewer, now: datetime) -> PageView:
            found = pages.record(session, forms.record_id(record_id))
            context = {
                "section": pages.section,
                "item": found.item,
                "revealed": found.revealed,
                "steps": views.history_steps(found.events),
                "transitions": sorted(
                    REVIEW_TRANSITIONS[found.state.status], key=list(ReviewStatus).index
                ),
                "reviewers": reviews.reviewers(session),
            }
            read = AuditedRead(f"web.{name}", f"{name}:{record_id}")
            return PageView(f"{name}.html", context, read)

        return console.show(request, build)

    return handler


# ---------------------------------------------------------------------------------- actions


def set_status(
    request: Request,
    console: ConsoleDep,
    record_id: str,
    *,
    csrf: Annotated[str, Form()] = "",
    status: Annotated[str, Form()] = "",
    note: Annotated[str, Form()] = "",
    member_note: Annotated[str, Form()] = "",
) -> Response:
    def act(session: Session, viewer: Viewer, now: datetime) -> ReviewEvent:
        target = review_status(status)
        if target is None:
            raise InvalidArgumentError("choose a status")
        return reviews.set_status(
            session,
            actor=viewer.name,
            record_id=forms.record_id(record_id),
            status=target,
            note=note or None,
            member_note=member_note or None,
            now=now,
        )

    return _act(console, request, record_id, csrf, action=act, done=f"Status changed to {status}.")


def assign(
    request: Request,
    console: ConsoleDep,
    record_id: str,
    *,
    csrf: Annotated[str, Form()] = "",
    assignee: Annotated[str, Form()] = "",
    note: Annotated[str, Form()] = "",
) -> Response:
    name = assignee.strip() or None

    def act(session: Session, viewer: Viewer, now: datetime) -> ReviewEvent:
        return reviews.assign(
            session,
            actor=viewer.name,
            record_id=forms.record_id(record_id),
            assignee=name,
            note=note or None,
            now=now,
        )

    done = f"Assigned to {name}." if name else "Unassigned."
    return _act(console, request, record_id, csrf, action=act, done=done)


def add_note(
    request: Request,
    console: ConsoleDep,
    record_id: str,
    *,
    csrf: Annotated[str, Form()] = "",
    note: Annotated[str, Form()] = "",
    for_members: Annotated[str, Form()] = "",
) -> Response:
    shared = bool(for_members)

    def act(session: Session, viewer: Viewer, now: datetime) -> ReviewEvent:
        return reviews.add_note(
            session,
            actor=viewer.name,
            record_id=forms.record_id(record_id),
            note=note,
            for_members=shared,
            now=now,
        )

    done = "Note for members added." if shared else "Note added."
    return _act(console, request, record_id, csrf, action=act, done=done)


def _act(
    console: Console,
    request: Request,
    record_id: str,
    csrf: str,
    *,
    action: Callable[[Session, Viewer, datetime], ReviewEvent],
    done: str,
) -> Response:
    """Run a review action and redirect to the record, with the outcome as a flash message:
    a refused action changes nothing and says why."""
    require_same_site(request)
    now = console.clock()
    viewer: Viewer | None = None
    try:
        with session_scope(console.engine) as session:
            viewer = console.viewer(session, request, now)
            require_csrf(viewer, csrf)
            event = action(session, viewer, now)
        flash = Flash("ok", done)
        location = RECORD_PAGES[event.record_type].record_path(event.record_id)
    except HubError as error:
        if viewer is None:
            raise
        flash = Flash("error", str(error))
        location = _locate(console, record_id)
    response = RedirectResponse(location, status_code=303)
    set_cookie(
        response,
        console.cookies.flash,
        encode_flash(flash, viewer.csrf),
        secure=console.secure,
        max_age=FLASH_SECONDS,
    )
    return response


def _locate(console: Console, record_id: str) -> str:
    """Where to show the outcome of an action on ``record_id``: its page, or the indicators
    for an id that names no record."""
    if forms.RECORD_ID.fullmatch(record_id) is None:
        return INDICATORS.listing_path
    with session_scope(console.engine) as session:
        state = reviews.record_state(session, record_id)
    if state is None:
        return INDICATORS.listing_path
    return RECORD_PAGES[state.record_type].record_path(record_id)
