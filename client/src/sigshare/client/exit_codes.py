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
    """The hub refused a submission, or refused everything a push was given."""
    PARTIAL = 8
    """Done in part: some kinds or families were skipped (the hub does not publish them, they
    exceed its capacity, or it refused them) while the rest was pushed and pulled; the summary
    and ``--json`` ``skipped`` say which and why. Not a crash: retrying changes nothing."""
    BUSY = 75
    """Another run holds the state directory's lock; try again later (sysexits' EX_TEMPFAIL)."""
