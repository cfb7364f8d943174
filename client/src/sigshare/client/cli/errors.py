"""The one place where errors the ``sigshare`` command meets become its exit codes.

The SDK, the configuration, the input readers, the local state, the sync job and the sketch core
raise typed errors that know nothing of exit codes; commands leave through :func:`fail`, which
looks the error's class up in :data:`EXIT_CODES` and aborts through the console.
"""

from __future__ import annotations

from typing import NoReturn

from sigshare.client.config import ConfigError
from sigshare.client.console import Console
from sigshare.client.errors import (
    HubAuthError,
    HubClientError,
    HubConfigError,
    HubProtocolError,
    HubRejectedError,
    HubUnavailableError,
)
from sigshare.client.exit_codes import ExitCode
from sigshare.client.inputs import InputFormatError
from sigshare.client.sealed_keys import NoRecipientsError, SealedKeysError
from sigshare.client.state import StateError
from sigshare.client.sync import (
    KeyEpochError,
    LockedError,
    NothingAcceptedError,
    ValuesNotFoundError,
)
from sigshare.keyring.errors import KeyringError
from sigshare.sketch.errors import SketchError, UnknownKindError

EXIT_CODES: tuple[tuple[type[Exception], ExitCode], ...] = (
    (HubAuthError, ExitCode.AUTH),
    (HubUnavailableError, ExitCode.NETWORK),
    (HubRejectedError, ExitCode.REJECTED),
    (HubConfigError, ExitCode.CONFIG),
    (HubProtocolError, ExitCode.FAILURE),
    (HubClientError, ExitCode.FAILURE),
    (NothingAcceptedError, ExitCode.REJECTED),
    (KeyEpochError, ExitCode.CONFIG),
    (NoRecipientsError, ExitCode.REJECTED),  # a rotation would reach nobody
    # No custodian with the fingerprint to trust, a pin that would be replaced, keys missing or
    # not approved: settings the member fixes.
    (SealedKeysError, ExitCode.CONFIG),
    (KeyringError, ExitCode.CONFIG),  # member key files
    (ConfigError, ExitCode.CONFIG),
    (StateError, ExitCode.CONFIG),
    (InputFormatError, ExitCode.INPUT),
    (ValuesNotFoundError, ExitCode.INPUT),  # confirm --value names no resolved item
    (LockedError, ExitCode.BUSY),
    (UnknownKindError, ExitCode.USAGE),  # --kind names no kind
    (SketchError, ExitCode.CONFIG),  # the forum secret file, or a kind's options
)
"""Error class → exit code; the first class the error is an instance of decides, so subclasses
come before their bases."""

HANDLED: tuple[type[Exception], ...] = tuple(cls for cls, _ in EXIT_CODES)
"""Every error class :func:`fail` turns into an exit code (for ``except HANDLED``)."""


def exit_code_for(error: Exception) -> ExitCode | None:
    """The exit code of ``error``; ``None`` for an error no table entry covers (a bug)."""
    return next((code for cls, code in EXIT_CODES if isinstance(error, cls)), None)


def fail(console: Console, error: Exception) -> NoReturn:
    """Abort with ``error``'s message and exit code; re-raise an error the table does not know."""
    code = exit_code_for(error)
    if code is None:
        raise error
    console.abort(str(error), code)
