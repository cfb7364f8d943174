"""Private files of the hub: its SQLite database and its blob directory."""

from __future__ import annotations

from pathlib import Path

PRIVATE_FILE_MODE = 0o600
PRIVATE_DIRECTORY_MODE = 0o700


def make_private_directories(directory: Path) -> list[Path]:
    """Create ``directory`` and any missing directory above it ``0700`` whatever the umask;
    the directories created, outermost first. Existing ones are left as they are."""
    missing = []
    while not directory.exists():
        missing.append(directory)
        if directory.parent == directory:
            break
        directory = directory.parent
    created = []
    for candidate in reversed(missing):
        try:
            candidate.mkdir(mode=PRIVATE_DIRECTORY_MODE)
        except FileExistsError:
            continue  # created meanwhile by someone else: theirs, left as it is
        candidate.chmod(PRIVATE_DIRECTORY_MODE)  # mkdir's mode is narrowed by the umask
        created.append(candidate)
    return created
