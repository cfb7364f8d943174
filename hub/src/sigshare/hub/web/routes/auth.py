"""Signing in and out of the console.

The sign-in form carries a pre-session CSRF token (double-submit cookie); refused sign-ins are
limited per client address before the credential is looked at, and a wrong credential and a
member's look the same.
"""

from __future__ import annotations

import math
import secrets
from typing import Annotated

from fastapi import Form, Query
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from sigshare.hub.services import web_sessions
from sigshare.hub.services.principals import authenticate
from sigshare.hub.services.refusals import source_key
from sigshare.hub.storage import session_scope
from sigshare.hub.web import views
from sigshare.hub.web.console import Console, ConsoleDep, require_csrf, require_same_site
from sigshare.hub.web.errors import RefusedError
from sigshare.hub.web.security import delete_cookie, set_cookie, tokens_match

REFUSAL = "unknown credential or not a coordinator"
"""The one answer to a failed sign-in: a wrong credential and a member's look the same."""
LIMITED = "too many refused sign-ins from your address: try again in {seconds} s"
LOGIN_FORM_SECONDS = 3600
LOGIN_TOKEN_LENGTH = 43
"""Of ``secrets.token_urlsafe(32)``: a form token of another length is replaced."""


def _client(request: Request) -> str:
    return request.client.host if request.client else ""


def login_form(
    request: Request,
    console: ConsoleDep,
    next_path: Annotated[str, Query(alias="next")] = "/",
) -> Response:
    now = console.clock()
    with session_scope(console.engine) as session:
        signed_in = console.current(session, request, now) is not None
    if signed_in:
        return RedirectResponse(views.safe_next(next_path), status_code=303)
    return _login_page(console, request, views.safe_next(next_path), None, 200)


def _login_page(
    console: Console, request: Request, next_path: str, error: str | None, status_code: int
) -> Response:
    token = request.cookies.get(console.cookies.login, "")
    if len(token) != LOGIN_TOKEN_LENGTH:  # a tab already open keeps working
        token = secrets.token_urlsafe(32)
    response = console.render(
        request,
        "login.html",
        None,
        {"csrf": token, "next": next_path, "error": error},
        status_code=status_code,
    )
    set_cookie(
        response, console.cookies.login, token, secure=console.secure, max_age=LOGIN_FORM_SECONDS
    )
    return response


def login(
    request: Request,
    console: ConsoleDep,
    credential: Annotated[str, Form()] = "",
    csrf: Annotated[str, Form()] = "",
    next_path: Annotated[str, Form(alias="next")] = "/",
) -> Response:
    require_same_site(request)
    if not tokens_match(csrf, request.cookies.get(console.cookies.login, "")):
        raise RefusedError("the sign-in form expired: reload it and try again")
    source = source_key(_client(request))
    if (wait := console.refusals.admit(source)) is not None:
        # Refused before the credential is looked at, so guessing is no faster than refill.
        seconds = math.ceil(wait)
        response = _login_page(
            console, request, views.safe_next(next_path), LIMITED.format(seconds=seconds), 429
        )
        response.headers["retry-after"] = str(seconds)
        return response
    now = console.clock()
    opened: tuple[str, str] | None = None
    with session_scope(console.engine) as session:
        principal = authenticate(session, credential, now)
        if principal is not None and web_sessions.may_sign_in(principal, now):
            previous = request.cookies.get(console.cookies.session)
            if previous:
                web_sessions.end(session, previous, now)
            opened = web_sessions.start(
                session, principal, now, console.session_hours, client=_client(request)
            )
    if opened is None:
        console.refusals.refused(source)  # audited in aggregate, in its own transaction
        return _login_page(console, request, views.safe_next(next_path), REFUSAL, 401)
    response = RedirectResponse(views.safe_next(next_path), status_code=303)
    set_cookie(response, console.cookies.session, opened[0], secure=console.secure)
    delete_cookie(response, console.cookies.login, secure=console.secure)
    return response


def logout(request: Request, console: ConsoleDep, csrf: Annotated[str, Form()] = "") -> Response:
    require_same_site(request)
    now = console.clock()
    with session_scope(console.engine) as session:
        viewer = console.viewer(session, request, now)
        require_csrf(viewer, csrf)
        web_sessions.end(session, request.cookies.get(console.cookies.session, ""), now)
    response = RedirectResponse("/login", status_code=303)
    delete_cookie(response, console.cookies.session, secure=console.secure)
    return response
