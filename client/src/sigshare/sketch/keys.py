"""The forum secret and the per-purpose keys derived from it.

A forum shares one secret (≥ 32 random bytes) identified by a ``key_id``. The hub never sees it.
Every use gets its own 256-bit key, derived with HKDF-SHA256 and the label
``sigshare/v1/<purpose>/<kind>/<key_id>``, so a key leaked or misused for one purpose says nothing
about another, and a new ``key_id`` (a new epoch) yields unrelated sketches.

The secret travels out of band as a small TOML file that must be readable by its owner only.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import secrets
import tomllib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from sigshare.sketch.errors import KeyFileError
from sigshare.sketch.private_files import (
    ExposedFileError,
    NotRegularFileError,
    read_private,
    write_private,
)

SECRET_FILE_VERSION = 1
MIN_SECRET_BYTES = 32
DERIVED_KEY_BYTES = 32
KEY_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,31}")


class KeyPurpose(StrEnum):
    """What a derived key is for. Part of the HKDF label: never reuse one key for two purposes."""

    BLOOM_TOKEN = "bloom-token"  # noqa: S105 (a label, not a password)
    """Keyed PRF turning a canonical indicator into its 128-bit token (Bloom positions)."""
    MINHASH_SALT = "minhash-salt"
    """Keys the shingle hashes and permutations of MinHash signatures."""


KEY_ID_RULE = (
    "key id must be 1-32 characters of letters, digits, '.', '_' or '-', "
    "starting with a letter or digit"
)


def is_valid_key_id(key_id: str) -> bool:
    return isinstance(key_id, str) and KEY_ID_PATTERN.fullmatch(key_id) is not None


def validate_key_id(key_id: str) -> str:
    if not is_valid_key_id(key_id):
        raise KeyFileError(KEY_ID_RULE)
    return key_id


@dataclass(frozen=True)
class ForumSecret:
    """The forum secret of one key epoch. ``repr`` never shows the secret."""

    key_id: str
    secret: bytes = field(repr=False)

    def __post_init__(self) -> None:
        validate_key_id(self.key_id)
        if len(self.secret) < MIN_SECRET_BYTES:
            raise KeyFileError(
                f"forum secret must be at least {MIN_SECRET_BYTES} bytes, got {len(self.secret)}"
            )

    @classmethod
    def generate(cls, key_id: str) -> ForumSecret:
        return cls(key_id=key_id, secret=secrets.token_bytes(MIN_SECRET_BYTES))

    def label(self, purpose: KeyPurpose, kind: str) -> bytes:
        """The HKDF ``info`` label for ``purpose`` and ``kind`` in this key epoch."""
        if not kind or "/" in kind:
            raise ValueError("kind must be a non-empty name without '/'")
        return f"sigshare/v1/{purpose.value}/{kind}/{self.key_id}".encode("ascii")

    def derive(self, purpose: KeyPurpose, kind: str) -> bytes:
        """The 32-byte sub-key for ``purpose`` and ``kind`` (HKDF-SHA256, no salt)."""
        hkdf = HKDF(
            algorithm=hashes.SHA256(),
            length=DERIVED_KEY_BYTES,
            salt=None,
            info=self.label(purpose, kind),
        )
        return hkdf.derive(self.secret)


def load_secret_file(path: str | os.PathLike[str]) -> ForumSecret:
    """Load a forum secret file, refusing one that group or others could read or write."""
    file_path = Path(path)
    try:
        raw = read_private(file_path, limit=64 * 1024)  # a secret file is a few hundred bytes
    except FileNotFoundError:
        raise KeyFileError(f"{file_path}: no such file") from None
    except PermissionError:
        raise KeyFileError(f"{file_path}: permission denied") from None
    except IsADirectoryError:
        raise KeyFileError(f"{file_path}: is a directory") from None
    except NotRegularFileError:
        raise KeyFileError(f"{file_path}: not a regular file") from None
    except ExposedFileError as exposed:
        raise KeyFileError(
            f"{file_path}: permissions {exposed.permissions} let others read the forum "
            f"secret; run: chmod 600 {file_path}"
        ) from None
    except OSError as error:
        raise KeyFileError(f"{file_path}: cannot open ({error.strerror})") from None
    try:
        document = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise KeyFileError(f"{file_path}: not a sigshare secret file ({error})") from None
    version = document.get("version")
    if type(version) is not int or version != SECRET_FILE_VERSION:
        raise KeyFileError(f"{file_path}: unsupported secret file version {version!r}")
    key_id = document.get("key_id")
    encoded = document.get("secret")
    if not isinstance(key_id, str) or not isinstance(encoded, str):
        raise KeyFileError(f"{file_path}: needs string fields 'key_id' and 'secret'")
    try:
        secret = base64.b64decode(encoded, validate=True)
    except binascii.Error:
        raise KeyFileError(f"{file_path}: 'secret' is not valid base64") from None
    return ForumSecret(key_id=validate_key_id(key_id), secret=secret)


def write_secret_file(
    path: str | os.PathLike[str], forum_secret: ForumSecret, *, overwrite: bool = False
) -> Path:
    """Write ``forum_secret`` to ``path`` with mode 0600, atomically.

    The file is created in the target directory under a temporary name with mode 0600 from the
    start (never briefly readable by others), then renamed into place. An existing file is kept
    unless ``overwrite`` is set: replacing a forum secret makes every earlier sketch unusable.
    """
    target = Path(path)
    if target.exists() and not overwrite:
        raise KeyFileError(f"{target}: already exists; refusing to replace a forum secret")
    created = datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
    body = (
        "# sigshare forum secret. Keep it private: mode 0600, never commit it,\n"
        "# never send it to the hub. Distribute it to member firms out of band only.\n"
        f"version = {SECRET_FILE_VERSION}\n"
        f'key_id = "{forum_secret.key_id}"\n'
        f'secret = "{base64.b64encode(forum_secret.secret).decode("ascii")}"\n'
        f'created = "{created}"\n'
    )
    try:
        write_private(target, body, overwrite=overwrite, prefix=".sigshare-secret-")
    except FileExistsError:
        raise KeyFileError(f"{target}: already exists") from None
    return target
