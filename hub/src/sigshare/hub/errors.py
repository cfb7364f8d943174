"""Typed errors raised by the hub below the transport layer.

Each error carries a stable ``code``; the transports (gRPC, CLI) translate codes to statuses and
exit codes once, at the edge. Messages name what went wrong and never contain credentials.
"""

from __future__ import annotations


class HubError(Exception):
    """Base class of every error the hub raises on purpose."""

    code = "hub_error"


class InvalidArgumentError(HubError, ValueError):
    """A value handed to the hub is malformed (bad name, wrong digest length, …)."""

    code = "invalid_argument"


class NotFoundError(HubError, LookupError):
    """The named record does not exist."""

    code = "not_found"

    def __init__(self, what: str, key: object) -> None:
        super().__init__(f"{what} {key!r} not found")
        self.what = what
        self.key = key


class AlreadyExistsError(HubError):
    """A record with the same unique key already exists."""

    code = "already_exists"


class ConflictError(HubError):
    """A concurrent writer changed the same records first; the operation may be retried."""

    code = "conflict"


class DatabaseNotMigratedError(HubError):
    """The database schema is not at the revision this code expects."""

    code = "database_not_migrated"

    def __init__(self, current: str | None, expected: str) -> None:
        shown = current if current is not None else "<empty>"
        super().__init__(
            f"database at revision {shown}, code expects {expected}: run `sigshare-hub db upgrade`"
        )
        self.current = current
        self.expected = expected


class AuditChainError(HubError):
    """The audit log's hash chain is broken at entry ``entry_id``."""

    code = "audit_chain_broken"

    def __init__(self, entry_id: int, reason: str) -> None:
        super().__init__(f"audit log entry {entry_id}: {reason}")
        self.entry_id = entry_id
        self.reason = reason


class PreconditionError(HubError):
    """The request is well-formed but the hub's state does not allow it yet (or any more):
    parameters changed since the caller fetched them, nothing submitted to resolve against."""

    code = "failed_precondition"


class SketchRejectedError(InvalidArgumentError):
    """A submitted sketch failed a check (format, digest, saturation, fill, uniformity)."""

    code = "sketch_rejected"


class PermissionDeniedError(HubError):
    """The authenticated principal may not do this."""

    code = "permission_denied"
