"""Small files only their owner may see or change: forum secrets, member keys, the pinned
custodian. One place reads and writes them, so every such file gets the same care.

Reading opens the file first and checks what was opened (``fstat`` on the descriptor, so a
file swapped between check and read cannot slip through), with ``O_NONBLOCK`` so that a FIFO
put in its place is refused instead of blocking. Writing creates the file under a temporary
name in the target directory with mode 0600 from the start (never briefly readable by others),
syncs it, then renames it into place — or, when it must not replace an existing file, links it
there, which fails if the target appeared meanwhile.

Errors are the standard ones plus :class:`NotRegularFileError` and :class:`ExposedFileError`;
callers turn them into messages about what the file holds.
"""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path


class NotRegularFileError(OSError):
    """The path is neither a regular file nor a directory (a FIFO, a device, a socket)."""


class ExposedFileError(OSError):
    """Group or others have a permission the file must not grant."""

    def __init__(self, path: Path, mode: int) -> None:
        super().__init__(f"{path}: permissions {stat.filemode(mode)}")
        self.path = path
        self.mode = mode

    @property
    def permissions(self) -> str:
        """The file's permissions as ``ls -l`` shows them (``-rw-r--r--``)."""
        return stat.filemode(self.mode)


def read_private(path: Path, *, limit: int, forbidden: int = 0o077) -> bytes:
    """At most ``limit`` bytes of ``path``, a regular file whose mode has none of the
    ``forbidden`` bits (by default: no access at all for group and others).

    Raises :class:`FileNotFoundError`, :class:`PermissionError`, :class:`IsADirectoryError`,
    :class:`NotRegularFileError`, :class:`ExposedFileError` or another :class:`OSError`.
    """
    # O_NONBLOCK: opening a FIFO must not wait for a writer before the type check refuses it.
    descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        mode = os.fstat(descriptor).st_mode
        if stat.S_ISDIR(mode):
            raise IsADirectoryError(f"{path}: is a directory")
        if not stat.S_ISREG(mode):
            raise NotRegularFileError(f"{path}: not a regular file")
        if mode & forbidden:
            raise ExposedFileError(path, mode)
        return os.read(descriptor, limit)
    finally:
        os.close(descriptor)


def write_private(path: Path, body: str, *, overwrite: bool, prefix: str) -> Path:
    """Write ``body`` to ``path`` with mode 0600, atomically; the temporary file's name starts
    with ``prefix``. Without ``overwrite``, :class:`FileExistsError` if ``path`` exists (also
    when another writer created it meanwhile: it is never clobbered). Other failures raise
    :class:`OSError` and leave no temporary file behind."""
    if not overwrite and path.exists():
        raise FileExistsError(f"{path}: already exists")
    directory = path.parent if str(path.parent) else Path()
    descriptor, temporary = tempfile.mkstemp(prefix=prefix, dir=directory)
    try:
        os.fchmod(descriptor, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(body)
            handle.flush()
            os.fsync(handle.fileno())
        if overwrite:
            os.replace(temporary, path)
        else:
            try:
                os.link(temporary, path)
            finally:
                os.unlink(temporary)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise
    return path
