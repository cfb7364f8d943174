"""Typed errors of the hub SDK, one class per thing a caller (or the CLI) does differently.

Each class carries the :class:`ExitCode` the ``sigshare`` command exits with, so commands
translate an SDK failure with ``console.abort(str(error), error.exit_code)`` and nothing else.
The mapping from gRPC status codes to these classes lives in one table in
:mod:`sigshare.client.hub_client`; this module imports neither gRPC nor the generated stubs, so
the plain types in :mod:`sigshare.client.hub_types` can raise them too. Messages never contain
the bearer credential.
"""

from __future__ import annotations

from sigshare.client.exit_codes import ExitCode


class HubClientError(Exception):
    """Base class of every error the SDK raises on purpose."""

    default_exit_code = ExitCode.FAILURE

    def __init__(
        self, message: str, exit_code: ExitCode | None = None, *, status: str | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = self.default_exit_code if exit_code is None else exit_code
        self.status = status
        """Name of the gRPC status code behind the error, when there was one (diagnostics)."""


class HubAuthError(HubClientError):
    """The hub refused the credential (unknown, revoked) or its role for the call."""

    default_exit_code = ExitCode.AUTH


class HubUnavailableError(HubClientError):
    """The hub could not be reached or kept failing transiently after every retry."""

    default_exit_code = ExitCode.NETWORK


class HubRejectedError(HubClientError):
    """The hub refused the request; the message is the hub's own, written for users."""

    default_exit_code = ExitCode.REJECTED


class HubConfigError(HubClientError):
    """The connection settings are unusable: bad target, unreadable TLS files, plaintext off
    loopback."""

    default_exit_code = ExitCode.CONFIG


class HubProtocolError(HubClientError):
    """The hub's answer breaks the wire contract: malformed stream, checksum mismatch, or
    parameters whose digest disagrees with this client's canonical encoding."""

    default_exit_code = ExitCode.FAILURE
