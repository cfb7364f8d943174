"""One table from the hub's typed errors to gRPC status codes, and the single abort path.

Messages of :class:`HubError` are written for the caller and pass through. Database outages
become UNAVAILABLE (clients retry); anything unexpected becomes INTERNAL with a reference the
operator finds in the log — never a stack trace or a value from the request.
"""

from __future__ import annotations

import logging
import secrets
from typing import NoReturn

import grpc
from sqlalchemy.exc import DBAPIError, OperationalError

from sigshare.hub import errors

log = logging.getLogger("sigshare.hub.rpc")


MAX_MESSAGE_BYTES = 1500
"""Status messages travel in HTTP/2 trailers (8 KiB by default), percent-encoded: up to three
bytes per UTF-8 byte. A refusal that echoes a huge request value must not turn into
RESOURCE_EXHAUSTED, so messages are cut at this many UTF-8 bytes."""


def bounded(message: str) -> str:
    encoded = message.encode("utf-8")
    if len(encoded) <= MAX_MESSAGE_BYTES:
        return message
    return encoded[: MAX_MESSAGE_BYTES - 3].decode("utf-8", errors="ignore") + "…"


def status_of(error: errors.HubError) -> grpc.StatusCode:
    """The status ``error``'s class declares (see :mod:`sigshare.hub.errors`)."""
    return grpc.StatusCode[error.grpc_status]


def abort(context: grpc.ServicerContext, error: BaseException, method: str) -> NoReturn:
    """End the call with the status ``error`` maps to (re-raises gRPC's own aborts)."""
    if isinstance(error, errors.HubError):
        code = status_of(error)
        log.info("rpc refused method=%s status=%s reason=%s", method, code.name, error.code)
        context.abort(code, bounded(str(error)))
    if isinstance(error, OperationalError) or (
        isinstance(error, DBAPIError) and error.connection_invalidated
    ):
        log.warning("database unavailable method=%s error=%s", method, type(error).__name__)
        context.abort(grpc.StatusCode.UNAVAILABLE, "hub database unavailable; retry shortly")
    if isinstance(error, grpc.RpcError) and not context.is_active():
        # The caller cancelled or went away mid-stream: nothing went wrong here.
        log.info("rpc cancelled by the client method=%s", method)
        context.abort(grpc.StatusCode.CANCELLED, "cancelled by the client")
    reference = secrets.token_hex(6)
    log.exception("internal error method=%s reference=%s", method, reference)
    context.abort(grpc.StatusCode.INTERNAL, f"internal error (reference {reference})")
