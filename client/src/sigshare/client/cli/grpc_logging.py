"""gRPC's own log lines kept off the ``sigshare`` command's terminal.

gRPC's C core writes lines of its own to stderr (``E1202 … Could not load any root
certificate``, ``I… Handshake failed …``) beside the one ``error: …`` line the console prints for
the same failure. It reads ``GRPC_VERBOSITY`` once, when grpc is imported, so importing this
module imports grpc with the variable set to ``NONE`` — unless the user set it (debugging with
``GRPC_TRACE``) — and removes it again: processes the command starts, and a test run that
imports the command, keep their own setting. :mod:`sigshare.client.cli` imports it before any
command module.
"""

from __future__ import annotations

import importlib
import os
from typing import Final

VARIABLE: Final = "GRPC_VERBOSITY"


def import_grpc_quietly() -> None:
    """Import grpc with its core logging off, unless ``GRPC_VERBOSITY`` is set already (or
    grpc was imported before, when the setting is fixed either way)."""
    if VARIABLE in os.environ:
        return
    os.environ[VARIABLE] = "NONE"
    try:
        importlib.import_module("grpc")
    finally:
        del os.environ[VARIABLE]


import_grpc_quietly()
