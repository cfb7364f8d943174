"""How the console answers what goes wrong: the console's own refusals and the exception
handlers that turn every expected error into a page or a redirect.

- :class:`SignInRequiredError` (no open session) redirects to the sign-in form, remembering the
  page asked for.
- :class:`RefusedError` (a POST failing the origin or CSRF checks) is a 403 page.
- A :class:`~sigshare.hub.errors.HubError` is an error page with the error's message and the
  HTTP status its class declares (``http_status``), for the signed-in viewer.
- Unknown paths, wrong methods and malformed requests get short fixed messages.

Anything else is an internal error: :class:`~.security.SecurityHeadersMiddleware` answers it
with a plain page and a log reference.

The handlers take the app's console first; :func:`~.app.create_app` binds it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, cast
from urllib.parse import quote

from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from sigshare.hub.errors import HubError
from sigshare.hub.web.security import delete_cookie

if TYPE_CHECKING:
    from sigshare.hub.web.console import Console, Viewer

HTTP_ERROR_MESSAGES = {404: "No such page.", 405: "That method is not allowed here."}


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


def on_sign_in_required(console: Console, request: Request, exc: Exception) -> Response:
    next_path = exc.next_path if isinstance(exc, SignInRequiredError) else "/"
    location = "/login" if next_path == "/" else f"/login?next={quote(next_path, safe='')}"
    response = RedirectResponse(location, status_code=303)
    if request.cookies.get(console.cookies.session):
        delete_cookie(response, console.cookies.session, secure=console.secure)
    return response


def on_refused(console: Console, request: Request, exc: Exception) -> Response:
    reason = exc.reason if isinstance(exc, RefusedError) else "refused"
    return console.error_page(request, None, f"Request refused: {reason}.", 403)


def on_hub_error(console: Console, request: Request, exc: Exception) -> Response:
    """The error page of a hub error met while serving a signed-in viewer; before anyone is
    signed in, a hub error is an internal error."""
    viewer = cast("Viewer | None", getattr(request.state, "viewer", None))
    if viewer is None or not isinstance(exc, HubError):
        raise exc
    return console.error_page(request, viewer, str(exc), exc.http_status)


def on_http_error(console: Console, request: Request, exc: Exception) -> Response:
    status_code = exc.status_code if isinstance(exc, StarletteHTTPException) else 500
    message = HTTP_ERROR_MESSAGES.get(status_code, "The request could not be handled.")
    return console.error_page(request, None, message, status_code)


def on_validation_error(console: Console, request: Request, exc: Exception) -> Response:
    return console.error_page(request, None, "The request was malformed.", 400)
