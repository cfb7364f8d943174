"""The coordinators' web console: server-rendered pages over the review services.

Transport only: every handler opens one ``session_scope`` (the unit of work commits when the
handler's block succeeds), resolves the browser session, calls the services and renders a
template. Handlers are plain ``def`` — FastAPI runs them in its thread pool, as the services and
the database driver are synchronous.

What a page may show is what the review services return: opaque record ids, counts,
categories, dates and member names where the forum's policy allows. Tokens are blanked by the
services and again here before anything reaches a template. Every read of review records is
audited once per page view, in the same transaction as the read.
"""

from __future__ import annotations

import math
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, cast, get_args
from urllib.parse import quote

import jinja2
from fastapi import FastAPI, Form, Query
from fastapi.exceptions import RequestValidationError
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from sqlalchemy import Engine
from sqlalchemy.orm import Session
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from sigshare.hub.domain import (
    NAME_RULE,
    REVIEW_TRANSITIONS,
    Principal,
    RecordType,
    ReviewEvent,
    ReviewStatus,
    Role,
    is_valid_name,
)
from sigshare.hub.errors import (
    HubError,
    InvalidArgumentError,
    NotFoundError,
)
from sigshare.hub.services import audit, exports, review, review_workflow, web_sessions
from sigshare.hub.services import campaigns as campaign_service
from sigshare.hub.services.audit import search_audit_log
from sigshare.hub.services.parameters import list_parameters
from sigshare.hub.services.principals import authenticate, list_principals
from sigshare.hub.services.refusals import (
    RefusalLimiter,
    RefusalPolicy,
    RefusalSummary,
    audit_refusal,
    source_key,
)
from sigshare.hub.services.reveal import RevealPolicy
from sigshare.hub.storage import session_scope
from sigshare.hub.storage.console_reads import ConsoleReadRepository
from sigshare.hub.storage.database import database_reachable
from sigshare.hub.storage.review import (
    MAX_PAGE_SIZE,
    CampaignSort,
    IndicatorSort,
    ReviewRepository,
)
from sigshare.hub.web import views
from sigshare.hub.web.heatmap import figure, heatmap_svg, spread
from sigshare.hub.web.security import (
    FLASH_SECONDS,
    CookieNames,
    Flash,
    SecurityHeadersMiddleware,
    cross_site,
    decode_flash,
    delete_cookie,
    encode_flash,
    set_cookie,
    tokens_match,
)

HERE = Path(__file__).parent
RECORD_ID = re.compile(r"[0-9a-f]{32}")
PAGE_SIZES = (25, 50, 100, 200, 500)
DEFAULT_PAGE_SIZE = 50
AUDIT_PAGE_SIZE = 100
MAX_FILTER_LENGTH = 64
INDICATOR_SORTS: tuple[str, ...] = get_args(IndicatorSort)
CAMPAIGN_SORTS: tuple[str, ...] = get_args(CampaignSort)
"""Sort keys of the listings; the first (``created``) is the default."""
EXPORT_FORMATS: dict[str, str] = {
    "csv": "CSV — one row per shared indicator and campaign, for spreadsheets.",
    "json": "JSON — the same records with their review state, for scripts.",
    "stix": "STIX 2.1 bundle — indicators with TLP marking and sightings, for threat-intel tools.",
}
REFUSAL = "unknown credential or not a coordinator"
"""The one answer to a failed sign-in: a wrong credential and a member's look the same."""
LIMITED = "too many refused sign-ins from your address: try again in {seconds} s"
LOGIN_FORM_SECONDS = 3600
SECTIONS = (
    ("overview", "Overview", "/"),
    ("overlaps", "Overlaps", "/overlaps"),
    ("indicators", "Indicators", "/indicators"),
    ("campaigns", "Campaigns", "/campaigns"),
    ("audit", "Audit", "/audit"),
    ("export", "Export", "/export"),
)
"""The header's navigation: section key (pages name theirs), label, path."""

assert max(PAGE_SIZES) <= MAX_PAGE_SIZE


class SignInRequiredError(Exception):
    """No open session: answered with a redirect to the sign-in form."""

    def __init__(self, next_path: str) -> None:
        super().__init__("sign in required")
        self.next_path = next_path


class RefusedError(Exception):
    """A request that fails the CSRF or origin checks: answered 403, nothing changed."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Viewer:
    """The signed-in coordinator or admin of a request."""

    principal: Principal
    csrf: str

    @property
    def name(self) -> str:
        return self.principal.name


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _page_number(value: str) -> int:
    return int(value) if value.isdigit() and 0 < int(value) < 10**9 else 1


def _page_size(value: str, default: int = DEFAULT_PAGE_SIZE) -> int:
    if not value.isdigit():
        return default
    return min(max(int(value), 1), MAX_PAGE_SIZE)


def _status(value: str) -> ReviewStatus | None:
    if not value:
        return None
    try:
        return ReviewStatus(value)
    except ValueError:
        allowed = ", ".join(s.value for s in ReviewStatus)
        raise InvalidArgumentError(f"unknown status {value[:32]!r}: use one of {allowed}") from None


def _name_filter(what: str, value: str) -> str | None:
    value = value.strip()
    if not value:
        return None
    if not is_valid_name(value):
        raise InvalidArgumentError(f"{what} filter {value[:64]!r} is not a valid name: {NAME_RULE}")
    return value


def _text_filter(what: str, value: str) -> str | None:
    value = value.strip()
    if not value:
        return None
    if len(value) > MAX_FILTER_LENGTH or any(ord(c) < 32 for c in value):
        raise InvalidArgumentError(
            f"{what} filter must be 1-{MAX_FILTER_LENGTH} printable characters"
        )
    return value


@dataclass(frozen=True, slots=True, kw_only=True)
class Listing:
    """A review listing's filters, order and page, as asked for and checked."""

    scope: str | None
    """Indicator kind or campaign family; ``None``: all."""
    status: ReviewStatus | None
    category: str | None
    assignee: str | None
    sort: str
    descending: bool
    page: int
    size: int

    @classmethod
    def parse(
        cls,
        sorts: tuple[str, ...],
        *,
        scope: str | None,
        status: str,
        category: str,
        assignee: str,
        sort: str,
        order: str,
        page: str,
        size: str,
    ) -> Listing:
        """Filters that cannot match anything valid are refused; an unknown order, page or
        page size falls back to the default."""
        return cls(
            scope=scope,
            status=_status(status),
            category=_text_filter("category", category),
            assignee=_name_filter("assignee", assignee),
            sort=sort if sort in sorts else sorts[0],
            descending=order != "asc",
            page=_page_number(page),
            size=_page_size(size),
        )

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.size

    def query(self, scope_name: str) -> dict[str, Any]:
        """The listing as query parameters (for links; the page is added per link)."""
        return {
            scope_name: self.scope or "",
            "status": "" if self.status is None else self.status.value,
            "category": self.category or "",
            "assignee": self.assignee or "",
            "sort": self.sort,
            "order": "desc" if self.descending else "asc",
            "size": self.size,
        }


def _record_id(value: str) -> str:
    if RECORD_ID.fullmatch(value) is None:
        raise NotFoundError("indicator or campaign", value[:40])
    return value


def _record_path(record_type: RecordType, record_id: str) -> str:
    section = "indicators" if record_type is RecordType.INDICATOR else "campaigns"
    return f"/{section}/{record_id}"


def _client(request: Request) -> str:
    return request.client.host if request.client else ""


def _templates() -> Jinja2Templates:
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.globals.update(href=views.href, sections=SECTIONS, page_sizes=PAGE_SIZES)
    environment.filters.update(
        when=views.when,
        number=views.number,
        percent=views.percent,
        rate=views.rate,
        similarity=views.similarity,
        figure=figure,
        spread=spread,
    )
    return Jinja2Templates(env=environment)


Built = tuple[str, dict[str, Any]]
"""A template name and its context."""


class _Console:
    """The routes, bound to one engine and cookie policy."""

    def __init__(
        self,
        engine: Engine,
        *,
        secure_cookies: bool,
        session_hours: float,
        clock: Callable[[], datetime],
        refusals: RefusalLimiter,
    ) -> None:
        self.engine = engine
        self.refusals = refusals
        self.secure = secure_cookies
        self.session_hours = session_hours
        self.clock = clock
        self.cookies = CookieNames.for_transport(secure_cookies)
        self.templates = _templates()

    # ------------------------------------------------------------------ health

    def healthz(self) -> Response:
        """For load balancers and orchestrators: no credential, no session, no audit entry;
        200 while the database answers, 503 otherwise."""
        if database_reachable(self.engine):
            return JSONResponse({"status": "ok"})
        return JSONResponse({"status": "unavailable"}, status_code=503)

    # ------------------------------------------------------------------ sessions and guards

    def _viewer(self, session: Session, request: Request, now: datetime) -> Viewer:
        viewer = self._current(session, request, now)
        if viewer is None:
            wanted = request.url.path
            if request.url.query:
                wanted += f"?{request.url.query}"
            raise SignInRequiredError(wanted if request.method == "GET" else "/")
        return viewer

    def _current(self, session: Session, request: Request, now: datetime) -> Viewer | None:
        token = request.cookies.get(self.cookies.session)
        if not token:
            return None
        resolved = web_sessions.resolve(session, token, now)
        return None if resolved is None else Viewer(*resolved)

    @staticmethod
    def _require_same_site(request: Request) -> None:
        if cross_site(request):
            raise RefusedError("this request came from another site")

    @staticmethod
    def _require_csrf(viewer: Viewer, presented: str) -> None:
        if not tokens_match(presented, viewer.csrf):
            raise RefusedError("the form's security token is missing or stale: reload the page")

    # ------------------------------------------------------------------ rendering

    def _render(
        self,
        request: Request,
        template: str,
        viewer: Viewer | None,
        context: dict[str, Any],
        *,
        status_code: int = 200,
    ) -> Response:
        raw_flash = request.cookies.get(self.cookies.flash)
        flash = decode_flash(raw_flash, viewer.csrf) if raw_flash and viewer else None
        response = self.templates.TemplateResponse(
            request,
            template,
            {"viewer": viewer, "flash": flash, "section": "", **context},
            status_code=status_code,
        )
        if raw_flash:
            delete_cookie(response, self.cookies.flash, secure=self.secure)
        return response

    def _error(
        self, request: Request, viewer: Viewer | None, message: str, status_code: int
    ) -> Response:
        return self._render(
            request,
            "error.html",
            viewer,
            {"message": message, "status_code": status_code},
            status_code=status_code,
        )

    def _show(
        self,
        request: Request,
        build: Callable[[Session, Viewer, datetime], Built],
    ) -> Response:
        """A page for the signed-in viewer; a hub error becomes an error page, never a trace."""
        now = self.clock()
        viewer: Viewer | None = None
        try:
            with session_scope(self.engine) as session:
                viewer = self._viewer(session, request, now)
                template, context = build(session, viewer, now)
        except HubError as error:
            if viewer is None:
                raise
            return self._error(request, viewer, str(error), error.http_status)
        return self._render(request, template, viewer, context)

    @staticmethod
    def _audit(
        session: Session,
        viewer: Viewer,
        action: str,
        target: str,
        *,
        now: datetime,
        details: dict[str, Any] | None = None,
    ) -> None:
        audit.record_read(session, viewer.name, action, target, now, details=details)

    # ------------------------------------------------------------------ exception handlers

    def on_sign_in_required(self, request: Request, exc: Exception) -> Response:
        next_path = exc.next_path if isinstance(exc, SignInRequiredError) else "/"
        location = "/login" if next_path == "/" else f"/login?next={quote(next_path, safe='')}"
        response = RedirectResponse(location, status_code=303)
        if request.cookies.get(self.cookies.session):
            delete_cookie(response, self.cookies.session, secure=self.secure)
        return response

    def on_refused(self, request: Request, exc: Exception) -> Response:
        reason = exc.reason if isinstance(exc, RefusedError) else "refused"
        return self._error(request, None, f"Request refused: {reason}.", 403)

    def on_http_error(self, request: Request, exc: Exception) -> Response:
        status_code = exc.status_code if isinstance(exc, StarletteHTTPException) else 500
        message = {404: "No such page.", 405: "That method is not allowed here."}.get(
            status_code, "The request could not be handled."
        )
        return self._error(request, None, message, status_code)

    def on_validation_error(self, request: Request, exc: Exception) -> Response:
        return self._error(request, None, "The request was malformed.", 400)

    # ------------------------------------------------------------------ sign-in and sign-out

    def login_form(
        self, request: Request, next_path: Annotated[str, Query(alias="next")] = "/"
    ) -> Response:
        now = self.clock()
        with session_scope(self.engine) as session:
            signed_in = self._current(session, request, now) is not None
        if signed_in:
            return RedirectResponse(views.safe_next(next_path), status_code=303)
        return self._login_page(request, views.safe_next(next_path), None, 200)

    def _login_page(
        self, request: Request, next_path: str, error: str | None, status_code: int
    ) -> Response:
        token = request.cookies.get(self.cookies.login, "")
        if len(token) != 43:  # token_urlsafe(32); a tab already open keeps working
            token = secrets.token_urlsafe(32)
        response = self._render(
            request,
            "login.html",
            None,
            {"csrf": token, "next": next_path, "error": error},
            status_code=status_code,
        )
        set_cookie(
            response, self.cookies.login, token, secure=self.secure, max_age=LOGIN_FORM_SECONDS
        )
        return response

    def login(
        self,
        request: Request,
        credential: Annotated[str, Form()] = "",
        csrf: Annotated[str, Form()] = "",
        next_path: Annotated[str, Form(alias="next")] = "/",
    ) -> Response:
        self._require_same_site(request)
        if not tokens_match(csrf, request.cookies.get(self.cookies.login, "")):
            raise RefusedError("the sign-in form expired: reload it and try again")
        source = source_key(_client(request))
        if (wait := self.refusals.admit(source)) is not None:
            # Refused before the credential is looked at, so guessing is no faster than refill.
            seconds = math.ceil(wait)
            response = self._login_page(
                request, views.safe_next(next_path), LIMITED.format(seconds=seconds), 429
            )
            response.headers["retry-after"] = str(seconds)
            return response
        now = self.clock()
        opened: tuple[str, str] | None = None
        with session_scope(self.engine) as session:
            principal = authenticate(session, credential, now)
            if principal is not None and web_sessions.may_sign_in(principal, now):
                previous = request.cookies.get(self.cookies.session)
                if previous:
                    web_sessions.end(session, previous, now)
                opened = web_sessions.start(
                    session, principal, now, self.session_hours, client=_client(request)
                )
        if opened is None:
            self.refusals.refused(source)  # audited in aggregate, in its own transaction
            return self._login_page(request, views.safe_next(next_path), REFUSAL, 401)
        response = RedirectResponse(views.safe_next(next_path), status_code=303)
        set_cookie(response, self.cookies.session, opened[0], secure=self.secure)
        delete_cookie(response, self.cookies.login, secure=self.secure)
        return response

    def logout(self, request: Request, csrf: Annotated[str, Form()] = "") -> Response:
        self._require_same_site(request)
        now = self.clock()
        with session_scope(self.engine) as session:
            viewer = self._viewer(session, request, now)
            self._require_csrf(viewer, csrf)
            web_sessions.end(session, request.cookies.get(self.cookies.session, ""), now)
        response = RedirectResponse("/login", status_code=303)
        delete_cookie(response, self.cookies.session, secure=self.secure)
        return response

    # ------------------------------------------------------------------ pages

    def overview(self, request: Request) -> Response:
        def build(session: Session, viewer: Viewer, now: datetime) -> Built:
            kinds, families = list_parameters(session)
            campaign_service.refresh(session, now)
            members = [p for p in list_principals(session) if p.role is Role.MEMBER]
            health = [views.submission_health(v) for v in review.submissions(session, "")]
            by_member: dict[str, list[views.SubmissionHealth]] = {p.name: [] for p in members}
            for item in health:
                by_member.setdefault(item.member, []).append(item)
            counts = review_workflow.status_counts(session)
            self._audit(session, viewer, "web.overview", "*", now=now)
            return "overview.html", {
                "section": "overview",
                "members": members,
                "by_member": by_member,
                "now": now,
                "kinds": kinds,
                "families": families,
                "indicator_counts": counts[RecordType.INDICATOR],
                "campaign_counts": counts[RecordType.CAMPAIGN],
                "statuses": list(ReviewStatus),
                "exports": EXPORT_FORMATS,
                "flag_label": views.FLAG_LABELS,
                "flag_help": views.FLAG_HELP,
            }

        return self._show(request, build)

    def overlaps(self, request: Request, kind: str = "") -> Response:
        def build(session: Session, viewer: Viewer, now: datetime) -> Built:
            kinds = [p.kind for p in list_parameters(session)[0]]
            selected = kind or (kinds[0] if kinds else "")
            context: dict[str, Any] = {"section": "overlaps", "kinds": kinds, "kind": selected}
            if not selected:
                return "overlaps.html", {**context, "matrix": None, "svg": None}
            if selected not in kinds:
                raise NotFoundError("indicator kind", selected[:64])
            matrix = review.overlap_matrix(session, selected, now)
            self._audit(session, viewer, "web.overlaps", selected, now=now)
            svg = (
                heatmap_svg(matrix.members, matrix.estimate, matrix.stderr, kind=selected)
                if matrix.members
                else None
            )
            return "overlaps.html", {**context, "matrix": matrix, "svg": svg}

        return self._show(request, build)

    def indicators(
        self,
        request: Request,
        *,
        kind: str = "",
        status: str = "",
        category: str = "",
        assignee: str = "",
        sort: str = "created",
        order: str = "desc",
        page: str = "1",
        size: str = "",
    ) -> Response:
        def build(session: Session, viewer: Viewer, now: datetime) -> Built:
            listing = Listing.parse(
                INDICATOR_SORTS,
                scope=_name_filter("kind", kind),
                status=status,
                category=category,
                assignee=assignee,
                sort=sort,
                order=order,
                page=page,
                size=size,
            )
            listed = review_workflow.indicators(
                session,
                kind=listing.scope,
                status=listing.status,
                category=listing.category,
                assignee=listing.assignee,
                sort=cast(IndicatorSort, listing.sort),
                descending=listing.descending,
                offset=listing.offset,
                limit=listing.size,
            )
            items = [replace(item, token=b"") for item in listed.items]
            query = listing.query("kind")
            target = listing.scope or "*"
            self._audit(
                session,
                viewer,
                "web.indicators",
                target,
                now=now,
                details={**query, "page": listing.page},
            )
            return "indicators.html", {
                "section": "indicators",
                "items": items,
                "pager": views.Pager(listed.total, listing.page, listing.size),
                "query": query,
                "path": "/indicators",
                "kinds": [p.kind for p in list_parameters(session)[0]],
                "statuses": list(ReviewStatus),
            }

        return self._show(request, build)

    def indicator(self, request: Request, record_id: str) -> Response:
        def build(session: Session, viewer: Viewer, now: datetime) -> Built:
            found = ConsoleReadRepository(session).indicator(_record_id(record_id))
            if found is None:
                raise NotFoundError("shared indicator", record_id)
            reveal = RevealPolicy.current(session)
            item = replace(reveal.indicator(found), token=b"")
            state, events = review_workflow.history(session, record_id)
            self._audit(session, viewer, "web.indicator", f"indicator:{record_id}", now=now)
            return "indicator.html", {
                "section": "indicators",
                "item": item,
                "revealed": found.kind in reveal.kinds,
                **_review_context(session, state.status, events),
            }

        return self._show(request, build)

    def campaigns(
        self,
        request: Request,
        *,
        family: str = "",
        status: str = "",
        category: str = "",
        assignee: str = "",
        sort: str = "created",
        order: str = "desc",
        page: str = "1",
        size: str = "",
    ) -> Response:
        def build(session: Session, viewer: Viewer, now: datetime) -> Built:
            listing = Listing.parse(
                CAMPAIGN_SORTS,
                scope=_name_filter("family", family),
                status=status,
                category=category,
                assignee=assignee,
                sort=sort,
                order=order,
                page=page,
                size=size,
            )
            campaign_service.refresh(session, now)
            listed = review_workflow.campaigns(
                session,
                family=listing.scope,
                status=listing.status,
                category=listing.category,
                assignee=listing.assignee,
                sort=cast(CampaignSort, listing.sort),
                descending=listing.descending,
                offset=listing.offset,
                limit=listing.size,
            )
            query = listing.query("family")
            target = listing.scope or "*"
            self._audit(
                session,
                viewer,
                "web.campaigns",
                target,
                now=now,
                details={**query, "page": listing.page},
            )
            return "campaigns.html", {
                "section": "campaigns",
                "items": listed.items,
                "pager": views.Pager(listed.total, listing.page, listing.size),
                "query": query,
                "path": "/campaigns",
                "families": [p.family for p in list_parameters(session)[1]],
                "statuses": list(ReviewStatus),
            }

        return self._show(request, build)

    def campaign(self, request: Request, record_id: str) -> Response:
        def build(session: Session, viewer: Viewer, now: datetime) -> Built:
            found = ConsoleReadRepository(session).campaign(_record_id(record_id))
            if found is None:
                raise NotFoundError("campaign", record_id)
            state, events = review_workflow.history(session, record_id)
            self._audit(session, viewer, "web.campaign", f"campaign:{record_id}", now=now)
            return "campaign.html", {
                "section": "campaigns",
                "item": found,
                **_review_context(session, state.status, events),
            }

        return self._show(request, build)

    def audit(
        self,
        request: Request,
        actor: str = "",
        action: str = "",
        before: str = "",
        size: str = "",
    ) -> Response:
        def build(session: Session, viewer: Viewer, now: datetime) -> Built:
            query: dict[str, Any] = {
                "actor": _text_filter("actor", actor) or "",
                "action": _text_filter("action", action) or "",
                "size": _page_size(size, AUDIT_PAGE_SIZE),
            }
            cursor = int(before) if before.isdigit() and 0 < int(before) < 2**62 else None
            limit = int(query["size"])
            filters = {"actor": query["actor"] or None, "action": query["action"] or None}
            entries = search_audit_log(session, limit=limit, before_id=cursor, **filters)
            reads = ConsoleReadRepository(session)
            # Entries newer than this page: above its first entry (or from the cursor on when
            # the page is empty). The newer page's cursor is just above the limit-th of them.
            top = entries[0].id if entries else (cursor - 1 if cursor is not None else None)
            newer = reads.audit_count(above_id=top, **filters) if top is not None else 0
            newer_before: int | str = ""
            if newer > limit and top is not None:
                newer_before = reads.audit_ids_above(top, limit, **filters)[-1] + 1
            older = reads.audit_count(below_id=entries[-1].id, **filters) if entries else 0
            total = reads.audit_count(**filters)
            self._audit(session, viewer, "web.audit", "*", now=now, details=dict(filters))
            return "audit.html", {
                "section": "audit",
                "entries": entries,
                "query": query,
                "path": "/audit",
                "total": total,
                "first_item": newer + 1 if entries else 0,
                "last_item": newer + len(entries),
                "has_newer": newer > 0,
                "newer_before": newer_before,
                "has_older": older > 0,
                "older_before": entries[-1].id if entries else "",
            }

        return self._show(request, build)

    def export_page(self, request: Request) -> Response:
        now = self.clock()
        with session_scope(self.engine) as session:
            viewer = self._viewer(session, request, now)
        return self._render(
            request, "export.html", viewer, {"section": "export", "exports": EXPORT_FORMATS}
        )

    def export(self, request: Request, fmt: str) -> Response:
        now = self.clock()
        viewer: Viewer | None = None
        try:
            with session_scope(self.engine) as session:
                viewer = self._viewer(session, request, now)
                if fmt not in EXPORT_FORMATS:
                    raise NotFoundError("export format", fmt[:16])
                # The export service records the export in the audit log itself.
                document = exports.export_document(
                    session, cast(exports.ExportFormat, fmt), now, actor=viewer.name
                )
        except HubError as error:
            if viewer is None:
                raise
            return self._error(request, viewer, str(error), error.http_status)
        filename = re.sub(r"[^A-Za-z0-9._-]", "_", document.filename) or f"sigshare.{fmt}"
        return Response(
            document.content,
            media_type=document.media_type,
            headers={"Content-Disposition": f'attachment; filename="{filename}"'},
        )

    # ------------------------------------------------------------------ review actions

    def set_status(
        self,
        request: Request,
        record_id: str,
        csrf: Annotated[str, Form()] = "",
        status: Annotated[str, Form()] = "",
        note: Annotated[str, Form()] = "",
    ) -> Response:
        def act(session: Session, viewer: Viewer, now: datetime) -> ReviewEvent:
            target = _status(status)
            if target is None:
                raise InvalidArgumentError("choose a status")
            return review_workflow.set_status(
                session,
                actor=viewer.name,
                record_id=_record_id(record_id),
                status=target,
                note=note or None,
                now=now,
            )

        return self._act(request, record_id, csrf, act, f"Status changed to {status}.")

    def assign(
        self,
        request: Request,
        record_id: str,
        csrf: Annotated[str, Form()] = "",
        assignee: Annotated[str, Form()] = "",
        note: Annotated[str, Form()] = "",
    ) -> Response:
        name = assignee.strip() or None

        def act(session: Session, viewer: Viewer, now: datetime) -> ReviewEvent:
            return review_workflow.assign(
                session,
                actor=viewer.name,
                record_id=_record_id(record_id),
                assignee=name,
                note=note or None,
                now=now,
            )

        done = f"Assigned to {name}." if name else "Unassigned."
        return self._act(request, record_id, csrf, act, done)

    def add_note(
        self,
        request: Request,
        record_id: str,
        csrf: Annotated[str, Form()] = "",
        note: Annotated[str, Form()] = "",
    ) -> Response:
        def act(session: Session, viewer: Viewer, now: datetime) -> ReviewEvent:
            return review_workflow.add_note(
                session, actor=viewer.name, record_id=_record_id(record_id), note=note, now=now
            )

        return self._act(request, record_id, csrf, act, "Note added.")

    def _act(
        self,
        request: Request,
        record_id: str,
        csrf: str,
        action: Callable[[Session, Viewer, datetime], ReviewEvent],
        done: str,
    ) -> Response:
        """Run a review action and redirect to the record (POST → redirect → GET), with the
        outcome as a flash message: a refused action changes nothing and says why."""
        self._require_same_site(request)
        now = self.clock()
        viewer: Viewer | None = None
        try:
            with session_scope(self.engine) as session:
                viewer = self._viewer(session, request, now)
                self._require_csrf(viewer, csrf)
                event = action(session, viewer, now)
            flash = Flash("ok", done)
            location = _record_path(event.record_type, event.record_id)
        except HubError as error:
            if viewer is None:
                raise
            flash = Flash("error", str(error))
            location = self._locate(record_id)
        response = RedirectResponse(location, status_code=303)
        set_cookie(
            response,
            self.cookies.flash,
            encode_flash(flash, viewer.csrf),
            secure=self.secure,
            max_age=FLASH_SECONDS,
        )
        return response

    def _locate(self, record_id: str) -> str:
        if RECORD_ID.fullmatch(record_id) is None:
            return "/indicators"
        with session_scope(self.engine) as session:
            state = ReviewRepository(session).record(record_id)
        return "/indicators" if state is None else _record_path(state.record_type, record_id)


def _review_context(
    session: Session, status: ReviewStatus, events: list[ReviewEvent]
) -> dict[str, Any]:
    reviewers = sorted(
        p.name
        for p in list_principals(session)
        if p.role in web_sessions.CONSOLE_ROLES and p.revoked_at is None
    )
    return {
        "steps": views.history_steps(events),
        "transitions": sorted(REVIEW_TRANSITIONS[status], key=list(ReviewStatus).index),
        "reviewers": reviewers,
    }


def create_app(
    engine: Engine,
    *,
    secure_cookies: bool = True,
    session_hours: float = 12,
    clock: Callable[[], datetime] | None = None,
    refusal_policy: RefusalPolicy | None = None,
    refusal_clock: Callable[[], float] = time.monotonic,
) -> FastAPI:
    """The console over ``engine`` (already migrated).

    ``secure_cookies``: mark cookies ``Secure`` with the ``__Host-`` prefix — true whenever the
    console is served over TLS; false only for plaintext on loopback and tests. ``clock`` (UTC
    now) is for tests of session expiry. ``refusal_policy``: the per-source limit on refused
    sign-ins (default ``RefusalPolicy()``); ``refusal_clock`` (monotonic seconds) is for tests.
    """
    if not 0 < session_hours <= web_sessions.MAX_SESSION_HOURS:
        raise InvalidArgumentError(
            f"session_hours must be more than 0 and at most {web_sessions.MAX_SESSION_HOURS}"
        )
    now = clock or _utc_now

    def refusals_audited(summary: RefusalSummary) -> None:
        with session_scope(engine) as session:
            audit_refusal(session, summary, now())

    console = _Console(
        engine,
        secure_cookies=secure_cookies,
        session_hours=session_hours,
        clock=now,
        refusals=RefusalLimiter("web", refusals_audited, refusal_policy, clock=refusal_clock),
    )
    app = FastAPI(
        title="sigshare coordinator console", docs_url=None, redoc_url=None, openapi_url=None
    )
    app.add_middleware(SecurityHeadersMiddleware)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    app.add_exception_handler(SignInRequiredError, console.on_sign_in_required)
    app.add_exception_handler(RefusedError, console.on_refused)
    app.add_exception_handler(StarletteHTTPException, console.on_http_error)
    app.add_exception_handler(RequestValidationError, console.on_validation_error)

    app.api_route("/healthz", methods=["GET", "HEAD"])(console.healthz)
    app.get("/login")(console.login_form)
    app.post("/login")(console.login)
    app.post("/logout")(console.logout)
    app.get("/")(console.overview)
    app.get("/overlaps")(console.overlaps)
    app.get("/indicators")(console.indicators)
    app.get("/indicators/{record_id}")(console.indicator)
    app.get("/campaigns")(console.campaigns)
    app.get("/campaigns/{record_id}")(console.campaign)
    app.get("/audit")(console.audit)
    app.get("/export")(console.export_page)
    app.get("/export/{fmt}")(console.export)
    app.post("/records/{record_id}/status")(console.set_status)
    app.post("/records/{record_id}/assign")(console.assign)
    app.post("/records/{record_id}/note")(console.add_note)
    return app
