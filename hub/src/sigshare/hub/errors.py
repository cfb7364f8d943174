"""Typed errors raised by the hub below the transport layer.

Each error class declares, once, what every edge answers with it: a stable ``code`` (logs), the
gRPC status (by name: this module does not import gRPC), the console's HTTP status and the
`sigshare-hub` exit code. Subclasses inherit what they do not declare. The transports read
these attributes and keep no tables of their own. Messages name what went wrong and never
contain credentials.
"""

from __future__ import annotations

from typing import ClassVar

from sigshare.client.exit_codes import ExitCode


class HubError(Exception):
    """Base class of every error the hub raises on purpose."""

    code: ClassVar[str] = "hub_error"
    grpc_status: ClassVar[str] = "INTERNAL"
    """The name of the ``grpc.StatusCode`` the gRPC API answers with."""
    http_status: ClassVar[int] = 400
    """What the coordinators' console answers with."""
    exit_code: ClassVar[ExitCode] = ExitCode.FAILURE
    """What `sigshare-hub` exits with."""


class InvalidArgumentError(HubError, ValueError):
    """A value handed to the hub is malformed (bad name, wrong digest length, …)."""

    code = "invalid_argument"
    grpc_status = "INVALID_ARGUMENT"
    exit_code = ExitCode.INPUT


class NotFoundError(HubError, LookupError):
    """The named record does not exist."""

    code = "not_found"
    grpc_status = "NOT_FOUND"
    http_status = 404
    exit_code = ExitCode.INPUT

    def __init__(self, what: str, key: object) -> None:
        super().__init__(f"{what} {key!r} not found")
        self.what = what
        self.key = key


class RegistrationNotFoundError(NotFoundError):
    """The principal has no key registration with the fingerprint an admin named."""

    def __init__(self, name: str, fingerprint: str) -> None:
        super().__init__(f"key registration of {name}", fingerprint)
        self.args = (
            f"{name} has no key registration {fingerprint}: `sigshare-hub member keys {name}` "
            "lists its registrations",
        )


class AlreadyExistsError(HubError):
    """A record with the same unique key already exists."""

    code = "already_exists"
    grpc_status = "ALREADY_EXISTS"
    exit_code = ExitCode.INPUT


class ConflictError(HubError):
    """A concurrent writer changed the same records first; the operation may be retried."""

    code = "conflict"
    grpc_status = "ABORTED"
    http_status = 409


class DatabaseNotMigratedError(HubError):
    """The database schema is not at the revision this code expects."""

    code = "database_not_migrated"
    grpc_status = "UNAVAILABLE"
    exit_code = ExitCode.CONFIG

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
    grpc_status = "FAILED_PRECONDITION"
    http_status = 409
    exit_code = ExitCode.INPUT  # the request does not fit the records' current state


class SketchRejectedError(InvalidArgumentError):
    """A submitted sketch failed a check (format, digest, saturation, fill, uniformity)."""

    code = "sketch_rejected"


class PermissionDeniedError(HubError):
    """The authenticated principal may not do this."""

    code = "permission_denied"
    grpc_status = "PERMISSION_DENIED"
    exit_code = ExitCode.AUTH
