"""The console's shared request machinery: the per-app :class:`Console` (database, clock,
cookie policy, sign-in limiter, templates), who is signed in, the guards of state-changing
requests, and rendering a page for the signed-in viewer.

Route handlers receive the app's console as a dependency (:data:`ConsoleDep`). A page is built
in one unit of work (:meth:`Console.show`): the viewer is resolved, the services are read, and
the read is audited as a sampled page view (:func:`~sigshare.hub.services.audit.record_page_view`),
in the same transaction, before the template is rendered.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import jinja2
from fastapi import Depends
from fastapi.templating import Jinja2Templates
from sqlalchemy import Engine
from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.responses import Response

from sigshare.hub.domain import Principal
from sigshare.hub.services import audit, web_sessions
from sigshare.hub.services.refusals import RefusalLimiter
from sigshare.hub.storage import session_scope
from sigshare.hub.web import views
from sigshare.hub.web.errors import RefusedError, SignInRequiredError
from sigshare.hub.web.forms import PAGE_SIZES
from sigshare.hub.web.heatmap import figure, spread
from sigshare.hub.web.security import (
    CookieNames,
    cross_site,
    decode_flash,
    delete_cookie,
    tokens_match,
)

TEMPLATES = Path(__file__).parent / "templates"
SECTIONS = (
    ("overview", "Overview", "/"),
    ("overlaps", "Overlaps", "/overlaps"),
    ("indicators", "Indicators", "/indicators"),
    ("campaigns", "Campaigns", "/campaigns"),
    ("audit", "Audit", "/audit"),
    ("export", "Export", "/export"),
)
"""The header's navigation: section key (pages name theirs), label, path."""


@dataclass(frozen=True, slots=True)
class Viewer:
    """The signed-in coordinator or admin of a request."""

    principal: Principal
    csrf: str

    @property
    def name(self) -> str:
        return self.principal.name


@dataclass(frozen=True, slots=True)
class AuditedRead:
    """What a page view read, as its audit entry records it; ``action`` is the page kind
    views are sampled by."""

    action: str
    target: str
    details: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class PageView:
    """A page to render: its template and context, and the read to audit (``None``: the page
    showed nothing that is audited)."""

    template: str
    context: dict[str, Any] = field(default_factory=dict)
    read: AuditedRead | None = None


PageBuilder = Callable[[Session, Viewer, datetime], PageView]
"""Reads what a page shows, in the request's unit of work, for the viewer at that moment."""


def _templates() -> Jinja2Templates:
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.globals.update(
        href=views.href,
        sections=SECTIONS,
        page_sizes=PAGE_SIZES,
        page_view_minutes=round(audit.PAGE_VIEW_INTERVAL.total_seconds() / 60),
    )
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


class Console:
    """One console app's database, clock, cookie policy and sign-in limiter, and the steps
    every request shares."""

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

    # ------------------------------------------------------------------ who is signed in

    def current(self, session: Session, request: Request, now: datetime) -> Viewer | None:
        """The request's viewer, if its session cookie names an open session."""
        token = request.cookies.get(self.cookies.session)
        if not token:
            return None
        resolved = web_sessions.resolve(session, token, now)
        return None if resolved is None else Viewer(*resolved)

    def viewer(self, session: Session, request: Request, now: datetime) -> Viewer:
        """The request's viewer; :class:`SignInRequiredError` without one. The viewer is kept
        on the request for the error pages."""
        viewer = self.current(session, request, now)
        if viewer is None:
            wanted = request.url.path
            if request.url.query:
                wanted += f"?{request.url.query}"
            raise SignInRequiredError(wanted if request.method == "GET" else "/")
        request.state.viewer = viewer
        return viewer

    # ------------------------------------------------------------------ rendering

    def render(
        self,
        request: Request,
        template: str,
        viewer: Viewer | None,
        context: dict[str, Any],
        *,
        status_code: int = 200,
    ) -> Response:
        """``template`` with the viewer and the pending flash message (then cleared)."""
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

    def error_page(
        self, request: Request, viewer: Viewer | None, message: str, status_code: int
    ) -> Response:
        return self.render(
            request,
            "error.html",
            viewer,
            {"message": message, "status_code": status_code},
            status_code=status_code,
        )

    def show(self, request: Request, build: PageBuilder) -> Response:
        """The page ``build`` reads for the signed-in viewer, its read audited (sampled) in the
        same transaction. A hub error becomes an error page (:mod:`.errors`), never a trace."""
        now = self.clock()
        with session_scope(self.engine) as session:
            viewer = self.viewer(session, request, now)
            page = build(session, viewer, now)
            if page.read is not None:
                read = page.read
                audit.record_page_view(
                    session, viewer.name, read.action, read.target, now, details=read.details
                )
        return self.render(request, page.template, viewer, page.context)


def require_same_site(request: Request) -> None:
    """Refuse a state-changing request another site's page sent."""
    if cross_site(request):
        raise RefusedError("this request came from another site")


def require_csrf(viewer: Viewer, presented: str) -> None:
    """Refuse a form without the viewer's session's CSRF token."""
    if not tokens_match(presented, viewer.csrf):
        raise RefusedError("the form's security token is missing or stale: reload the page")


def console_of(request: Request) -> Console:
    """The console of the app serving ``request``."""
    console = request.app.state.console
    assert isinstance(console, Console)
    return console


ConsoleDep = Annotated[Console, Depends(console_of)]
"""A route handler's parameter receiving the app's :class:`Console`."""
