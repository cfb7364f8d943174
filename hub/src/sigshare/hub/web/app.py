"""The coordinators' web console: server-rendered pages over the review services.

Transport only: every handler opens one ``session_scope`` (the unit of work commits when the
handler's block succeeds), resolves the browser session, calls the services and renders a
template (:mod:`.console`). Handlers are plain ``def`` — FastAPI runs them in its thread pool,
as the services and the database driver are synchronous.

What a page may show is what the services return: opaque record ids, counts, categories, dates
and member names where the forum's policy allows; never a token. Page views that read review
records or the audit log are audited in the same transaction as the read, sampled: one entry
per viewer and page kind per interval (:func:`~sigshare.hub.services.audit.record_page_view`);
every review action, export and sign-in is an entry of its own. GET handlers change nothing
themselves; the read services keep their derived data (campaigns) up to date.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.staticfiles import StaticFiles
from sqlalchemy import Engine
from starlette.exceptions import HTTPException as StarletteHTTPException

from sigshare.hub.errors import HubError, InvalidArgumentError
from sigshare.hub.services import web_sessions
from sigshare.hub.services.refusals import (
    RefusalLimiter,
    RefusalPolicy,
    RefusalSummary,
    audit_refusal,
)
from sigshare.hub.storage import session_scope
from sigshare.hub.web import errors
from sigshare.hub.web.console import Console
from sigshare.hub.web.routes import auth, export, health, pages, records
from sigshare.hub.web.security import SecurityHeadersMiddleware

STATIC = Path(__file__).parent / "static"


def _utc_now() -> datetime:
    return datetime.now(UTC)


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

    console = Console(
        engine,
        secure_cookies=secure_cookies,
        session_hours=session_hours,
        clock=now,
        refusals=RefusalLimiter("web", refusals_audited, refusal_policy, clock=refusal_clock),
    )
    app = FastAPI(
        title="sigshare coordinator console", docs_url=None, redoc_url=None, openapi_url=None
    )
    app.state.console = console
    app.add_middleware(SecurityHeadersMiddleware)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.add_exception_handler(
        errors.SignInRequiredError, partial(errors.on_sign_in_required, console)
    )
    app.add_exception_handler(errors.RefusedError, partial(errors.on_refused, console))
    app.add_exception_handler(HubError, partial(errors.on_hub_error, console))
    app.add_exception_handler(StarletteHTTPException, partial(errors.on_http_error, console))
    app.add_exception_handler(RequestValidationError, partial(errors.on_validation_error, console))

    app.api_route("/healthz", methods=["GET", "HEAD"])(health.healthz)
    app.get("/login")(auth.login_form)
    app.post("/login")(auth.login)
    app.post("/logout")(auth.logout)
    app.get("/")(pages.overview)
    app.get("/overlaps")(pages.overlaps)
    app.get("/indicators")(records.listing(records.INDICATORS))
    app.get("/indicators/{record_id}")(records.detail(records.INDICATORS))
    app.get("/campaigns")(records.listing(records.CAMPAIGNS))
    app.get("/campaigns/{record_id}")(records.detail(records.CAMPAIGNS))
    app.get("/audit")(pages.audit_log)
    app.get("/export")(export.export_page)
    app.get("/export/{fmt}")(export.export)
    app.post("/records/{record_id}/status")(records.set_status)
    app.post("/records/{record_id}/assign")(records.assign)
    app.post("/records/{record_id}/note")(records.add_note)
    return app
