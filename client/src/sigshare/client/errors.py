"""Typed errors of the hub SDK, one class per thing a caller does differently.

The mapping from gRPC status codes to these classes lives in one table in
:mod:`sigshare.client.hub_client`; this module imports neither gRPC nor the generated stubs, so
the plain types in :mod:`sigshare.client.hub_types` can raise them too. The ``sigshare`` command
maps them to its exit codes in :mod:`sigshare.client.cli.errors`. Messages never contain the
bearer credential.
"""

from __future__ import annotations


class HubClientError(Exception):
    """Base class of every error the SDK raises on purpose."""

    def __init__(self, message: str, *, status: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        """Name of the gRPC status code behind the error, when there was one (diagnostics)."""


class HubAuthError(HubClientError):
    """The hub refused the credential (unknown, revoked) or its role for the call."""


class HubUnavailableError(HubClientError):
    """The hub could not be reached or kept failing transiently after every retry."""


class HubRejectedError(HubClientError):
    """The hub refused the request; the message is the hub's own, written for users."""


class HubConfigError(HubClientError):
    """The connection settings are unusable: bad target, unreadable TLS files, plaintext off
    loopback."""


class HubTlsError(HubConfigError):
    """TLS cannot work with these settings, and another attempt would fail alike: a TLS file is
    unusable (:mod:`sigshare.client.tls_files`), or the handshake with the hub failed on a
    certificate — the hub's is not trusted or does not name it, the hub requires a client
    certificate and none or a refused one was presented, or no TLS answers at the address."""

    def __init__(self, problem: str, *, fix: str, status: str | None = None) -> None:
        super().__init__(f"{problem}; {fix}", status=status)
        self.problem = problem
        """What is wrong, naming the file or the hub."""
        self.fix = fix
        """What to change."""


class HubProtocolError(HubClientError):
    """The hub's answer breaks the wire contract: malformed stream, checksum mismatch, or
    parameters whose digest disagrees with this client's canonical encoding."""
