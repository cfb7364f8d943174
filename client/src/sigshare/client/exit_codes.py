"""Exit codes of the ``sigshare`` command: distinct per failure class, stable for cron and CI."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    FAILURE = 1
    """An unexpected internal error (a bug): the message says what to report."""
    USAGE = 2
    """Bad command-line usage (click's own convention)."""
    CONFIG = 3
    """Configuration or key file problem."""
    AUTH = 4
    INPUT = 5
    """Input data could not be read at all (bad rows alone never fail a run)."""
    NETWORK = 6
    REJECTED = 7
    """The hub refused a submission."""
    BUSY = 75
    """Another run holds the state directory's lock; try again later (sysexits' EX_TEMPFAIL)."""
