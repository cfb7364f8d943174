"""The console's browser-facing protections: response headers, cookies, origin and CSRF checks,
and signed flash messages.

- Every response carries a strict Content Security Policy (no inline script or style, no
  framing, forms post only to the console), ``no-store`` caching and no referrer.
- Session cookies are ``HttpOnly; SameSite=Strict; Path=/`` and, over TLS, ``Secure`` with the
  ``__Host-`` prefix (which also stops a sibling sub-domain from planting one).
- State-changing requests are POSTs carrying the session's CSRF token in a form field; a POST
  whose ``Sec-Fetch-Site`` or ``Origin`` shows another origin is refused before anything else.
- Flash messages ride in a short-lived cookie signed with the session's CSRF token, so nobody
  else can make the console display text of their choosing.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import secrets
from dataclasses import dataclass
from typing import Literal

from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "frame-ancestors 'none'; form-action 'self'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
FLASH_SECONDS = 60
MAX_FLASH_LENGTH = 500
FlashLevel = Literal["ok", "error"]

log = logging.getLogger("sigshare.hub.web")

INTERNAL_ERROR_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Internal error · sigshare console</title>
<link rel="icon" href="/static/favicon.svg" type="image/svg+xml">
<link rel="stylesheet" href="/static/console.css"></head>
<body><main class="narrow"><h1>Something went wrong</h1>
<p>The console could not complete this request. Nothing was changed.</p>
<p>Reference <code>{reference}</code> — the hub's log has the details.</p>
<p><a href="/">Back to the overview</a></p></main></body></html>
"""


class SecurityHeadersMiddleware:
    """Adds :data:`SECURITY_HEADERS` to every response, and turns an unhandled error into a
    plain page with a reference (logged with the traceback) instead of a stack trace."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_with_headers(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers[name] = value
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        except Exception:
            reference = secrets.token_hex(6)
            log.exception("internal error reference=%s path=%s", reference, scope.get("path"))
            if started:
                raise
            page = HTMLResponse(INTERNAL_ERROR_PAGE.format(reference=reference), status_code=500)
            await page(scope, receive, send_with_headers)


@dataclass(frozen=True, slots=True)
class CookieNames:
    session: str
    login: str
    """The pre-session CSRF token of the sign-in form (double-submit)."""
    flash: str

    @classmethod
    def for_transport(cls, secure: bool) -> CookieNames:
        prefix = "__Host-" if secure else ""
        return cls(
            session=f"{prefix}sigshare_session",
            login=f"{prefix}sigshare_login",
            flash=f"{prefix}sigshare_flash",
        )


def set_cookie(
    response: Response, name: str, value: str, *, secure: bool, max_age: int | None = None
) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path="/",
        secure=secure,
        httponly=True,
        samesite="strict",
    )


def delete_cookie(response: Response, name: str, *, secure: bool) -> None:
    response.delete_cookie(name, path="/", secure=secure, httponly=True, samesite="strict")


def own_origin(request: Request) -> str:
    return f"{request.url.scheme}://{request.url.netloc}"


def cross_site(request: Request) -> bool:
    """Whether the browser says the request comes from elsewhere: ``Sec-Fetch-Site`` other than
    ``same-origin`` (or ``none``: typed by the user), or an ``Origin`` that is not ours.

    ``Origin: null`` is no evidence either way: under ``Referrer-Policy: no-referrer`` browsers
    send it on the console's own form posts. Absent headers are no evidence either; the CSRF
    token decides then.
    """
    fetch_site = request.headers.get("sec-fetch-site", "").lower()
    if fetch_site and fetch_site not in ("same-origin", "none"):
        return True
    origin = request.headers.get("origin", "null").lower()
    return origin != "null" and origin != own_origin(request).lower()


def tokens_match(presented: str, expected: str) -> bool:
    """Constant-time comparison; an empty token never matches."""
    if not presented or not expected:
        return False
    return hmac.compare_digest(presented.encode(), expected.encode())


@dataclass(frozen=True, slots=True)
class Flash:
    level: FlashLevel
    text: str


def _signature(payload: str, key: str) -> str:
    digest = hmac.new(key.encode(), payload.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def encode_flash(flash: Flash, key: str) -> str:
    document = json.dumps({"level": flash.level, "text": flash.text[:MAX_FLASH_LENGTH]})
    payload = base64.urlsafe_b64encode(document.encode()).decode().rstrip("=")
    return f"{payload}.{_signature(payload, key)}"


def decode_flash(value: str, key: str) -> Flash | None:
    """The flash message in a cookie value, if it was signed with ``key``."""
    payload, _, signature = value.partition(".")
    if not payload or not hmac.compare_digest(signature, _signature(payload, key)):
        return None
    try:
        document = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (binascii.Error, ValueError):
        return None
    level, text = document.get("level"), document.get("text")
    if level not in ("ok", "error") or not isinstance(text, str):
        return None
    return Flash("ok" if level == "ok" else "error", text)
