"""The member's forum secrets by key epoch: the configured file, installed siblings, staging."""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

import pytest

from sigshare.client.secret_ring import KeyEpochError, SecretRing
from sigshare.sketch.errors import KeyFileError
from sigshare.sketch.keys import ForumSecret, load_secret_file, write_secret_file

K1 = ForumSecret("k1", b"\x01" * 32)
K2 = ForumSecret("k2027a", b"\x02" * 32)
K3 = ForumSecret("k.3", b"\x03" * 32)


@pytest.fixture
def secret_file(tmp_path: Path) -> Path:
    return write_secret_file(tmp_path / "forum.secret", K1)


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_configured_file_alone_is_a_ring_of_one(secret_file: Path) -> None:
    ring = SecretRing.load(secret_file)
    assert ring.key_ids == ("k1",)
    assert ring.for_key_id("k1", "email") == K1
    assert ring.path_of("k1") == secret_file


def test_a_missing_epoch_keeps_the_single_secret_message(secret_file: Path) -> None:
    with pytest.raises(KeyEpochError) as caught:
        SecretRing.load(secret_file).for_key_id("k9", "email")
    assert str(caught.value) == (
        "email: the hub uses key epoch 'k9', the forum secret file is for 'k1'; install the "
        "current forum secret"
    )


def test_installed_siblings_join_the_ring_by_their_key_id(
    tmp_path: Path, secret_file: Path
) -> None:
    write_secret_file(tmp_path / "forum.k2027a.secret", K2)
    write_secret_file(tmp_path / "forum.k.3.secret", K3)
    ring = SecretRing.load(secret_file)
    assert ring.key_ids == ("k.3", "k1", "k2027a")
    assert ring.for_key_id("k2027a", "email") == K2
    assert ring.for_key_id("k.3", "prompt") == K3
    assert ring.path_of("k.3") == tmp_path / "forum.k.3.secret"
    with pytest.raises(KeyEpochError) as caught:
        ring.for_key_id("k9", "prompt")
    assert str(caught.value) == (
        "prompt: the hub uses key epoch 'k9', the installed forum secrets are for 'k.3', "
        "'k1', 'k2027a'; install the current forum secret (`sigshare keys fetch` picks up one "
        "the custodian sealed to you)"
    )


def test_files_that_are_not_siblings_are_ignored(tmp_path: Path, secret_file: Path) -> None:
    for name in (
        "forum.secret.bak",  # another suffix
        "other.k2.secret",  # another stem
        ".forum.k2.secret.1a2b3c4d.pending",  # a custodian's staged secret
        "forum.bad id!.secret",  # not a key id
        "forum..secret",  # no key id
    ):
        (tmp_path / name).write_text("not a secret file")
    assert SecretRing.load(secret_file).key_ids == ("k1",)


def test_a_sibling_named_for_another_epoch_is_refused_by_name(
    tmp_path: Path, secret_file: Path
) -> None:
    wrong = write_secret_file(tmp_path / "forum.k2.secret", K2)
    with pytest.raises(KeyFileError) as caught:
        SecretRing.load(secret_file)
    assert str(caught.value) == (
        f"{wrong}: holds key epoch 'k2027a' but is named for 'k2'; rename or remove it "
        "(installed secrets are named <stem>.<key_id><suffix>)"
    )


def test_a_sibling_others_can_read_is_refused(tmp_path: Path, secret_file: Path) -> None:
    open_file = write_secret_file(tmp_path / "forum.k2027a.secret", K2)
    open_file.chmod(0o644)
    with pytest.raises(KeyFileError) as caught:
        SecretRing.load(secret_file)
    assert str(caught.value) == (
        f"{open_file}: permissions -rw-r--r-- let others read the forum secret; run: "
        f"chmod 600 {open_file}"
    )


def test_two_files_with_different_secrets_for_one_epoch_are_refused(
    tmp_path: Path, secret_file: Path
) -> None:
    twin = write_secret_file(tmp_path / "forum.k1.secret", ForumSecret("k1", b"\x09" * 32))
    with pytest.raises(KeyFileError) as caught:
        SecretRing.load(secret_file)
    assert str(caught.value) == (
        f"{twin} and {secret_file} hold different secrets for key epoch 'k1'; keep the right "
        "one (ask the custodian) and remove the other"
    )
    twin.unlink()
    write_secret_file(twin, K1)  # the same secret twice is harmless
    assert SecretRing.load(secret_file).key_ids == ("k1",)


def test_the_configured_file_is_required_unless_told_otherwise(tmp_path: Path) -> None:
    missing = tmp_path / "forum.secret"
    with pytest.raises(KeyFileError, match="no such file"):
        SecretRing.load(missing)
    write_secret_file(tmp_path / "forum.k2027a.secret", K2)
    assert SecretRing.load(missing, require_base=False).key_ids == ("k2027a",)


def test_install_writes_a_private_sibling_and_never_replaces_one(
    tmp_path: Path, secret_file: Path
) -> None:
    ring = SecretRing.load(secret_file)
    path = ring.install(K2)
    assert path == tmp_path / "forum.k2027a.secret"
    assert mode_of(path) == 0o600
    assert load_secret_file(path) == K2
    assert ring.for_key_id("k2027a", "email") == K2
    assert SecretRing.load(secret_file).key_ids == ("k1", "k2027a")
    before = path.read_bytes()
    with pytest.raises(KeyFileError, match="already exists"):
        SecretRing.load(secret_file).install(ForumSecret("k2027a", b"\x07" * 32))
    assert path.read_bytes() == before


def test_install_into_a_directory_the_job_cannot_write_says_so(
    secret_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The tests may run as root, whom no mode stops: the denial is what the OS would raise.
    def denied(**_: object) -> tuple[int, str]:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "mkstemp", denied)
    with pytest.raises(KeyFileError) as caught:
        SecretRing.load(secret_file).install(K2)
    message = str(caught.value)
    directory = secret_file.parent
    assert message.startswith(
        f"cannot write forum secret k2027a into {directory}: the directory is not writable by user "
    )
    assert message.endswith(
        "; the job's user must be able to create new secret files there (e.g. chown that user "
        f"{directory}, or setfacl -m u:USER:rwx {directory})"
    )


def test_a_ring_held_in_memory_cannot_install(tmp_path: Path) -> None:
    ring = SecretRing.single(K1)
    assert ring.key_ids == ("k1",)
    assert ring.path_of("k1") is None
    with pytest.raises(KeyFileError) as caught:
        ring.install(K2)
    assert str(caught.value) == "cannot install forum secret k2027a: this ring has no secret file"
    assert list(tmp_path.iterdir()) == []


def test_a_staged_secret_is_hidden_until_committed(tmp_path: Path, secret_file: Path) -> None:
    ring = SecretRing.load(secret_file)
    staged = ring.stage(K2)
    assert staged.temporary.parent == tmp_path
    assert staged.temporary.name.startswith(".forum.k2027a.secret.")
    assert staged.temporary.name.endswith(".pending")
    assert mode_of(staged.temporary) == 0o600
    assert SecretRing.load(secret_file).key_ids == ("k1",)
    assert ring.get("k2027a") is None
    assert staged.commit() == tmp_path / "forum.k2027a.secret"
    assert not staged.temporary.exists()
    assert ring.get("k2027a") == K2
    assert load_secret_file(tmp_path / "forum.k2027a.secret") == K2


def test_a_discarded_stage_leaves_nothing(tmp_path: Path, secret_file: Path) -> None:
    staged = SecretRing.load(secret_file).stage(K2)
    staged.discard()
    assert sorted(os.listdir(tmp_path)) == ["forum.secret"]


def test_staging_an_installed_epoch_is_refused_before_anything_is_written(
    tmp_path: Path, secret_file: Path
) -> None:
    ring = SecretRing.load(secret_file)
    with pytest.raises(KeyFileError) as caught:
        ring.stage(ForumSecret("k1", b"\x05" * 32))
    assert str(caught.value) == (
        f"{secret_file}: a forum secret for key epoch k1 is already installed; choose a new key id"
    )
    assert sorted(os.listdir(tmp_path)) == ["forum.secret"]


def test_a_commit_never_replaces_a_file_that_appeared_meanwhile(
    tmp_path: Path, secret_file: Path
) -> None:
    staged = SecretRing.load(secret_file).stage(K2)
    rival = write_secret_file(tmp_path / "forum.k2027a.secret", ForumSecret("k2027a", b"\x08" * 32))
    with pytest.raises(KeyFileError) as caught:
        staged.commit()
    assert str(caught.value) == (
        f"{rival}: already exists; the new forum secret k2027a stays in {staged.temporary}: "
        "compare the two and keep the right one"
    )
    assert load_secret_file(staged.temporary) == K2
