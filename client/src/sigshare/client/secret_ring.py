"""The member's forum secrets by key epoch: the configured secret file and its installed siblings.

A forum changes its secret by key epochs. The configured ``secret_file`` (``forum.secret``)
holds the secret the member was set up with; every later epoch the member receives sealed
through the hub is installed next to it as ``<stem>.<key_id><suffix>`` (``forum.k2027a.secret``),
with the same format and mode (:func:`sigshare.sketch.keys.write_secret_file`). Together they
are the member's :class:`SecretRing`, and the sync job uses whichever secret matches the key id
the hub publishes — so when the forum moves to a new epoch, the secret is already in place.

Files are never replaced: an installed secret is written once, under a name no other file has
(a second, different secret for the same epoch is refused before it gets here). A custodian
writes the secret it generates under a temporary name first (:meth:`SecretRing.stage`) and
renames it into place only once the hub has accepted the rotation.
"""

from __future__ import annotations

import getpass
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from sigshare.sketch.errors import KeyFileError
from sigshare.sketch.keys import ForumSecret, is_valid_key_id, load_secret_file, write_secret_file


class KeyEpochError(Exception):
    """No forum secret of the member's is for the key epoch the hub uses (or the hub uses an
    epoch the custodian has retired)."""


def _not_writable(directory: Path, key_id: str) -> KeyFileError:
    return KeyFileError(
        f"cannot write forum secret {key_id} into {directory}: the directory is not writable "
        f"by user {getpass.getuser()}; the job's user must be able to create new secret files "
        f"there (e.g. chown that user {directory}, or setfacl -m u:USER:rwx {directory})"
    )


@dataclass
class StagedSecret:
    """A new forum secret written under a temporary name, not yet part of the ring."""

    ring: SecretRing
    secret: ForumSecret
    temporary: Path
    target: Path

    def commit(self) -> Path:
        """Move the secret to its final name and add it to the ring; returns that name."""
        try:
            os.link(self.temporary, self.target)  # refuses to replace a file that appeared since
        except FileExistsError:
            raise KeyFileError(
                f"{self.target}: already exists; the new forum secret {self.secret.key_id} "
                f"stays in {self.temporary}: compare the two and keep the right one"
            ) from None
        os.unlink(self.temporary)
        self.ring.add(self.secret, self.target)
        return self.target

    def discard(self) -> None:
        """Delete the temporary file: the secret was never used."""
        self.temporary.unlink(missing_ok=True)


class SecretRing:
    """The forum secrets a member holds, by key id, and where each lives.

    Built by :meth:`load` from the configured secret file, or by :meth:`single` from one secret
    in memory (a ring that cannot install: the demo and tests that run the job directly).
    """

    def __init__(
        self,
        base: Path | None,
        secrets_by_id: Mapping[str, ForumSecret],
        paths: Mapping[str, Path],
    ) -> None:
        self._base = base
        self._secrets = dict(secrets_by_id)
        self._paths = dict(paths)

    def __repr__(self) -> str:
        return f"SecretRing(base={self._base}, key_ids={self.key_ids})"

    @classmethod
    def single(cls, secret: ForumSecret) -> SecretRing:
        """A ring of ``secret`` alone, held in memory."""
        return cls(None, {secret.key_id: secret}, {})

    @classmethod
    def load(cls, secret_file: Path, *, require_base: bool = True) -> SecretRing:
        """The configured ``secret_file`` and its installed siblings, each loaded and checked.

        ``require_base=False`` accepts a missing ``secret_file`` (a custodian that has not
        generated a forum secret yet); its directory is still where new secrets go.
        Raises :class:`~sigshare.sketch.errors.KeyFileError` naming the file at fault.
        """
        found: dict[str, ForumSecret] = {}
        paths: dict[str, Path] = {}
        if require_base or secret_file.exists():
            base = load_secret_file(secret_file)
            found[base.key_id] = base
            paths[base.key_id] = secret_file
        for path, key_id in sorted(_siblings(secret_file)):
            secret = load_secret_file(path)
            if secret.key_id != key_id:
                raise KeyFileError(
                    f"{path}: holds key epoch {secret.key_id!r} but is named for {key_id!r}; "
                    "rename or remove it (installed secrets are named <stem>.<key_id><suffix>)"
                )
            if key_id in found and found[key_id].secret != secret.secret:
                raise KeyFileError(
                    f"{path} and {paths[key_id]} hold different secrets for key epoch "
                    f"{key_id!r}; keep the right one (ask the custodian) and remove the other"
                )
            found.setdefault(key_id, secret)
            paths.setdefault(key_id, path)
        return cls(secret_file, found, paths)

    @property
    def key_ids(self) -> tuple[str, ...]:
        return tuple(sorted(self._secrets))

    def get(self, key_id: str) -> ForumSecret | None:
        return self._secrets.get(key_id)

    def path_of(self, key_id: str) -> Path | None:
        """The file that holds ``key_id``'s secret (``None``: not installed, or held in memory)."""
        return self._paths.get(key_id)

    def for_key_id(self, key_id: str, what: str) -> ForumSecret:
        """The secret of epoch ``key_id``; :class:`KeyEpochError` naming ``what`` needs it (a
        kind or family) and the epochs installed when there is none."""
        found = self._secrets.get(key_id)
        if found is not None:
            return found
        if len(self._secrets) == 1:
            (only,) = self._secrets
            raise KeyEpochError(
                f"{what}: the hub uses key epoch {key_id!r}, the forum secret file is for "
                f"{only!r}; install the current forum secret"
            )
        installed = ", ".join(repr(k) for k in self.key_ids) or "none"
        raise KeyEpochError(
            f"{what}: the hub uses key epoch {key_id!r}, the installed forum secrets are for "
            f"{installed}; install the current forum secret (`sigshare keys fetch` picks up one "
            "the custodian sealed to you)"
        )

    def sibling_path(self, key_id: str) -> Path:
        """Where the secret of epoch ``key_id`` is installed: ``<stem>.<key_id><suffix>``."""
        if self._base is None:
            raise KeyFileError(
                f"cannot install forum secret {key_id}: this ring has no secret file"
            )
        if not is_valid_key_id(key_id):
            raise KeyFileError(f"cannot install forum secret {key_id!r}: not a valid key id")
        return self._base.with_name(f"{self._base.stem}.{key_id}{self._base.suffix}")

    def install(self, secret: ForumSecret) -> Path:
        """Write ``secret`` as a new sibling (mode 0600, atomic, never over an existing file)
        and add it to the ring; returns its path."""
        target = self.sibling_path(secret.key_id)
        try:
            written = write_secret_file(target, secret)
        except PermissionError:
            raise _not_writable(target.parent, secret.key_id) from None
        except OSError as error:
            raise KeyFileError(f"{target}: cannot write ({error.strerror})") from None
        self.add(secret, written)
        return written

    def stage(self, secret: ForumSecret) -> StagedSecret:
        """Write ``secret`` under a temporary name beside where :meth:`install` would put it.

        Fails now, before anything else happens, if that name is taken or the directory is
        not writable; :meth:`StagedSecret.commit` moves it into place."""
        target = self.sibling_path(secret.key_id)
        if target.exists() or secret.key_id in self._secrets:
            where = self._paths.get(secret.key_id, target)
            raise KeyFileError(
                f"{where}: a forum secret for key epoch {secret.key_id} is already installed; "
                "choose a new key id"
            )
        temporary = target.with_name(f".{target.name}.{secrets.token_hex(4)}.pending")
        try:
            write_secret_file(temporary, secret)
        except PermissionError:
            raise _not_writable(target.parent, secret.key_id) from None
        except OSError as error:
            raise KeyFileError(f"{temporary}: cannot write ({error.strerror})") from None
        return StagedSecret(self, secret, temporary, target)

    def add(self, secret: ForumSecret, path: Path) -> None:
        """Count ``secret``, just written to ``path``, among the ring's."""
        self._secrets[secret.key_id] = secret
        self._paths[secret.key_id] = path


def _siblings(secret_file: Path) -> list[tuple[Path, str]]:
    """``(path, key id)`` of each file beside ``secret_file`` named ``<stem>.<key_id><suffix>``."""
    prefix, suffix = f"{secret_file.stem}.", secret_file.suffix
    try:
        entries = list(secret_file.parent.iterdir())
    except FileNotFoundError:
        return []
    except OSError as error:
        raise KeyFileError(f"{secret_file.parent}: cannot list ({error.strerror})") from None
    found = []
    for path in entries:
        name = path.name
        if path == secret_file or not name.startswith(prefix) or not name.endswith(suffix):
            continue
        key_id = name[len(prefix) : len(name) - len(suffix)]
        if is_valid_key_id(key_id):
            found.append((path, key_id))
    return found
