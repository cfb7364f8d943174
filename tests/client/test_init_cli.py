"""``sigshare init``: files it checks and writes, exit codes, and a check against a real hub.

The hub is the real one (SQLite file, gRPC on 127.0.0.1, plaintext, TLS or mTLS with a PKI from
:mod:`tests.support.tls`), started in process with one member and published parameters, so the
check proves address, transport, certificates and credential end to end. Every run asserts that
neither the credential nor the forum secret reaches the output.
"""

from __future__ import annotations

import base64
import json
import os
import stat
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID
from sqlalchemy import Engine

from sigshare.client.cli import cli
from sigshare.client.config import load_config
from sigshare.client.exit_codes import ExitCode
from sigshare.hub.domain import Role
from sigshare.hub.rpc.app import build_hub
from sigshare.hub.rpc.server import parse_listen
from sigshare.hub.services import parameters, principals
from sigshare.hub.storage import make_engine, migrate, session_scope
from sigshare.sketch.keys import ForumSecret, write_secret_file
from tests.support.tls import (
    ForumPki,
    Issued,
    issue_ca,
    issue_forum_pki,
    issue_leaf,
    issuer,
    tls_hub,
)

KEY_ID = "epoch-7"
CREDENTIAL = "sgs1_00112233aabbccdd_AAAAsecret-part-of-the-credential-never-shown0"
UNKNOWN_CREDENTIAL = "sgs1_0123456789abcdef_" + "A" * 43


@dataclass(frozen=True)
class LocalHub:
    target: str
    credential: str


def provisioned_hub(directory: Path) -> tuple[Engine, str]:
    """A migrated SQLite hub database in ``directory`` with member ``firm-a`` and the kinds
    email and phone and the family prompt published: its engine and ``firm-a``'s credential."""
    url = f"sqlite:///{directory / 'hub.db'}"
    migrate.upgrade(url)
    engine = make_engine(url)
    now = datetime.now(UTC)
    with session_scope(engine) as session:
        _, credential = principals.add_principal(
            session, actor="test", name="firm-a", role=Role.MEMBER, now=now
        )
        for kind in ("phone", "email"):
            parameters.set_kind_parameters(
                session,
                actor="test",
                kind=kind,
                key_id=KEY_ID,
                capacity=10_000,
                forum_fpr=1e-3,
                now=now,
            )
        parameters.set_minhash_parameters(
            session, actor="test", family="prompt", key_id=KEY_ID, threshold=0.5, now=now
        )
    return engine, credential.token


@pytest.fixture
def local_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalHub]:
    """A started plaintext hub on a free loopback port over :func:`provisioned_hub`."""
    engine, credential = provisioned_hub(tmp_path_factory.mktemp("hub"))
    server = build_hub(engine, parse_listen("127.0.0.1:0"), tls=None, insecure=True)
    server.server.start()
    try:
        yield LocalHub(target=f"127.0.0.1:{server.port}", credential=credential)
    finally:
        server.stop(0)
        engine.dispose()


@dataclass
class Member:
    """A member's files and the secrets that must never appear in output."""

    tmp: Path
    home: Path
    secret: ForumSecret
    credential: str

    @property
    def secret_file(self) -> Path:
        return self.tmp / "keys" / "forum.secret"

    @property
    def credential_file(self) -> Path:
        return self.tmp / "keys" / "member.credential"

    @property
    def default_config(self) -> Path:
        return self.tmp / "xdg-config" / "sigshare" / "config.toml"

    @property
    def default_state(self) -> Path:
        return self.tmp / "xdg-state" / "sigshare"

    def set_credential(self, credential: str) -> None:
        self.credential = credential
        self.credential_file.write_text(credential + "\n")
        self.credential_file.chmod(0o600)

    def args(self, hub: str = "127.0.0.1:50051", *extra: str) -> list[str]:
        return [
            "init",
            "--hub",
            hub,
            "--credential-file",
            str(self.credential_file),
            "--secret-file",
            str(self.secret_file),
            *extra,
        ]

    def assert_private(self, result: Result) -> None:
        """Neither the credential (nor its secret part) nor the forum secret was printed."""
        printed = result.output + result.stdout + result.stderr
        assert self.credential not in printed
        assert self.credential.split("_", 2)[-1] not in printed  # the whole secret part
        assert self.secret.secret.hex() not in printed
        assert base64.b64encode(self.secret.secret).decode() not in printed
        assert self.secret_file.read_text().splitlines()[-2] not in printed  # secret = "..."


def make_member(tmp: Path, key_id: str = KEY_ID) -> Member:
    home = tmp / "home"
    home.mkdir(exist_ok=True)
    (tmp / "keys").mkdir(exist_ok=True)
    secret = ForumSecret.generate(key_id)
    member = Member(tmp=tmp, home=home, secret=secret, credential="")
    write_secret_file(member.secret_file, secret, overwrite=True)
    member.set_credential(CREDENTIAL)
    return member


@pytest.fixture
def member(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Member:
    made = make_member(tmp_path)
    monkeypatch.setenv("HOME", str(made.home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg-state"))
    monkeypatch.delenv("SIGSHARE_CONFIG", raising=False)
    return made


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# ---------------------------------------------------------------------------------- --no-check


def test_no_check_writes_an_owner_only_config_and_a_private_state_dir(
    runner: CliRunner, member: Member
) -> None:
    result = runner.invoke(
        cli, [*member.args("127.0.0.1:50051", "--insecure"), "--no-check", "--json"]
    )
    assert result.exit_code == 0, result.output
    member.assert_private(result)
    assert json.loads(result.stdout) == {
        "config": str(member.default_config),
        "hub": "127.0.0.1:50051",
        "transport": "plaintext (loopback only)",
        "credential_file": str(member.credential_file),
        "secret_file": str(member.secret_file),
        "key_id": KEY_ID,
        "state_dir": str(member.default_state),
        "state_dir_created": True,
        "rejects_file": str(member.default_state / "rejects.jsonl"),
        "checked": False,
        "hub_parameters": None,
        "warnings": [],
    }
    assert mode_of(member.default_config) == 0o600
    assert mode_of(member.default_config.parent) == 0o700
    assert mode_of(member.default_state) == 0o700
    config, location = load_config(None)
    assert location == member.default_config
    assert config.hub == "127.0.0.1:50051"
    assert config.insecure
    assert config.credential_file == member.credential_file
    assert config.secret_file == member.secret_file
    assert config.state_dir == member.default_state
    text = member.default_config.read_text()
    assert member.credential not in text
    assert base64.b64encode(member.secret.secret).decode() not in text


def test_human_output_summarises_without_secrets(runner: CliRunner, member: Member) -> None:
    result = runner.invoke(cli, [*member.args("localhost:7", "--insecure"), "--no-check"])
    assert result.exit_code == 0, result.output
    member.assert_private(result)
    assert result.stdout.splitlines() == [
        f"wrote {member.default_config} (mode 0600)",
        "  hub           localhost:7 (plaintext (loopback only))",
        f"  credential    {member.credential_file} (mode 0600)",
        f"  forum secret  {member.secret_file} (key id {KEY_ID})",
        f"  state dir     {member.default_state} (created, mode 0700)",
        "  hub check     skipped (--no-check)",
    ]
    assert result.stderr == ""


def test_relative_paths_are_written_absolute_to_the_chosen_config(
    runner: CliRunner, member: Member, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(member.tmp)
    args = [
        "init",
        "--hub",
        "hub.example.org:443",
        "--credential-file",
        "keys/member.credential",
        "--secret-file",
        "keys/../keys/forum.secret",
        "--state-dir",
        "run/state",
        "--config",
        "conf/sigshare.toml",
        "--no-check",
    ]
    result = runner.invoke(cli, args)
    assert result.exit_code == 0, result.output
    written = member.tmp / "conf" / "sigshare.toml"
    text = written.read_text()
    assert f'credential_file = "{member.credential_file}"' in text
    assert f'secret_file = "{member.secret_file}"' in text
    assert f'state_dir = "{member.tmp / "run" / "state"}"' in text
    assert "insecure = false" in text
    assert mode_of(member.tmp / "run" / "state") == 0o700
    config, _ = load_config(written)
    assert config.transport == "TLS, gRPC's public roots"


def test_the_config_location_comes_from_the_environment(
    runner: CliRunner, member: Member, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = member.tmp / "env" / "member.toml"
    monkeypatch.setenv("SIGSHARE_CONFIG", str(target))
    result = runner.invoke(cli, [*member.args("[::1]:9", "--insecure"), "--no-check", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["config"] == str(target)
    assert load_config(None)[0].hub == "[::1]:9"


def test_an_existing_config_is_kept_without_force(runner: CliRunner, member: Member) -> None:
    first = runner.invoke(cli, [*member.args("127.0.0.1:1", "--insecure"), "--no-check"])
    assert first.exit_code == 0, first.output
    before = member.default_config.read_bytes()
    again = runner.invoke(cli, [*member.args("127.0.0.1:2", "--insecure"), "--no-check", "--json"])
    assert again.exit_code == int(ExitCode.CONFIG) == 3
    assert json.loads(again.stdout) == {
        "error": f"{member.default_config} already exists; use --force to replace it",
        "exit_code": 3,
        "status": "config",
    }
    assert member.default_config.read_bytes() == before
    forced = runner.invoke(
        cli, [*member.args("127.0.0.1:2", "--insecure"), "--no-check", "--force"]
    )
    assert forced.exit_code == 0, forced.output
    assert load_config(None)[0].hub == "127.0.0.1:2"
    assert mode_of(member.default_config) == 0o600
    assert "already there" in forced.stdout


# ---------------------------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--insecure", "--ca-cert", "ca.pem"], "--ca-cert and --insecure conflict"),
        (
            ["--insecure", "--client-cert", "c.pem", "--client-key", "c.key"],
            "--client-cert/--client-key and --insecure conflict",
        ),
        (["--client-cert", "c.pem"], "--client-cert and --client-key go together"),
    ],
)
def test_conflicting_flags_are_usage_errors(
    runner: CliRunner, member: Member, extra: list[str], message: str
) -> None:
    result = runner.invoke(cli, [*member.args("127.0.0.1:1", *extra), "--no-check"])
    assert result.exit_code == int(ExitCode.USAGE) == 2
    assert message in result.stderr
    assert not member.default_config.exists()
    assert not member.default_state.exists()


def test_plaintext_to_a_remote_hub_is_refused(runner: CliRunner, member: Member) -> None:
    result = runner.invoke(cli, [*member.args("hub.example.org:443", "--insecure"), "--no-check"])
    assert result.exit_code == ExitCode.CONFIG
    assert "plaintext is allowed only to loopback" in result.stderr
    assert not member.default_config.exists()


def test_a_malformed_hub_address_is_a_config_error(runner: CliRunner, member: Member) -> None:
    result = runner.invoke(cli, [*member.args("::1:50051", "--insecure"), "--no-check"])
    assert result.exit_code == ExitCode.CONFIG
    assert "is not HOST:PORT (IPv6 as [ADDR]:PORT)" in result.stderr


def test_a_secret_file_others_can_read_is_refused(runner: CliRunner, member: Member) -> None:
    member.secret_file.chmod(0o644)
    result = runner.invoke(cli, [*member.args("127.0.0.1:1", "--insecure"), "--no-check"])
    assert result.exit_code == ExitCode.CONFIG
    assert f"run: chmod 600 {member.secret_file}" in result.stderr
    member.assert_private(result)
    assert not member.default_config.exists()


def test_a_credential_file_others_can_read_is_refused(runner: CliRunner, member: Member) -> None:
    member.credential_file.chmod(0o640)
    result = runner.invoke(cli, [*member.args("127.0.0.1:1", "--insecure"), "--no-check", "--json"])
    assert result.exit_code == ExitCode.CONFIG
    assert json.loads(result.stdout)["error"] == (
        f"hub credential file {member.credential_file}: permissions -rw-r----- let others read "
        f"the credential; run: chmod 600 {member.credential_file}"
    )
    member.assert_private(result)
    assert not member.default_config.exists()


def test_a_missing_credential_file_is_refused(runner: CliRunner, member: Member) -> None:
    member.credential_file.unlink()
    result = runner.invoke(cli, [*member.args("127.0.0.1:1", "--insecure"), "--no-check"])
    assert result.exit_code == ExitCode.CONFIG
    assert f"hub credential file {member.credential_file}: no such file" in result.stderr


def test_a_missing_ca_certificate_is_refused(runner: CliRunner, member: Member) -> None:
    missing = member.tmp / "ca.pem"
    result = runner.invoke(
        cli, [*member.args("hub.example.org:443", "--ca-cert", str(missing)), "--no-check"]
    )
    assert result.exit_code == ExitCode.CONFIG
    assert f"CA certificate {missing}: no such file" in result.stderr


def test_a_state_dir_that_is_a_file_is_refused(runner: CliRunner, member: Member) -> None:
    blocker = member.tmp / "state-file"
    blocker.write_text("")
    args = [*member.args("127.0.0.1:1", "--insecure"), "--state-dir", str(blocker), "--no-check"]
    result = runner.invoke(cli, args)
    assert result.exit_code == ExitCode.CONFIG
    assert "exists and is not a directory" in result.stderr
    assert not member.default_config.exists()


# ---------------------------------------------------------------------------------- --check


def test_check_against_a_real_hub_lists_its_kinds_and_families(
    runner: CliRunner, member: Member, local_hub: LocalHub
) -> None:
    member.set_credential(local_hub.credential)
    result = runner.invoke(cli, [*member.args(local_hub.target, "--insecure"), "--json"])
    assert result.exit_code == 0, result.output
    member.assert_private(result)
    document = json.loads(result.stdout)
    assert document["checked"] is True
    assert document["hub_parameters"] == {
        "kinds": [{"kind": "email", "key_id": KEY_ID}, {"kind": "phone", "key_id": KEY_ID}],
        "families": [{"family": "prompt", "key_id": KEY_ID}],
    }
    assert document["warnings"] == []
    assert load_config(None)[0].hub == local_hub.target


def test_check_in_human_form(runner: CliRunner, member: Member, local_hub: LocalHub) -> None:
    member.set_credential(local_hub.credential)
    result = runner.invoke(cli, member.args(local_hub.target, "--insecure"))
    assert result.exit_code == 0, result.output
    member.assert_private(result)
    lines = result.stdout.splitlines()
    assert lines[-3:] == [
        "  hub check     ok",
        f"    kinds       email ({KEY_ID}), phone ({KEY_ID})",
        f"    families    prompt ({KEY_ID})",
    ]


def test_check_warns_when_the_secret_is_for_another_key_epoch(
    runner: CliRunner, member: Member, local_hub: LocalHub
) -> None:
    other = make_member(member.tmp, key_id="epoch-8")
    other.set_credential(local_hub.credential)
    result = runner.invoke(cli, [*other.args(local_hub.target, "--insecure"), "--json"])
    assert result.exit_code == 0, result.output
    other.assert_private(result)
    assert json.loads(result.stdout)["warnings"] == [
        f"the forum secret is for key id epoch-8, the hub publishes parameters for {KEY_ID} "
        "only: sketches made with this secret would be refused; install the forum secret file "
        "of the hub's current key epoch"
    ]
    assert "warning:" in result.stderr


def test_a_wrong_credential_is_an_auth_error_and_writes_nothing(
    runner: CliRunner, member: Member, local_hub: LocalHub
) -> None:
    member.set_credential(UNKNOWN_CREDENTIAL)
    result = runner.invoke(cli, [*member.args(local_hub.target, "--insecure"), "--json"])
    assert result.exit_code == int(ExitCode.AUTH) == 4
    document = json.loads(result.stdout)
    assert document["status"] == "auth"
    assert document["error"].startswith("not authorised by the hub")
    member.assert_private(result)
    assert not member.default_config.exists()
    assert not member.default_state.exists()


def test_an_unreachable_hub_is_a_network_error_quickly(
    runner: CliRunner, member: Member, closed_port: int
) -> None:
    started = time.monotonic()
    result = runner.invoke(cli, member.args(f"127.0.0.1:{closed_port}", "--insecure"))
    elapsed = time.monotonic() - started
    assert result.exit_code == int(ExitCode.NETWORK) == 6
    assert f"hub at 127.0.0.1:{closed_port} unavailable for GetParameters" in result.stderr
    assert elapsed < 10, f"took {elapsed:.1f} s"
    member.assert_private(result)
    assert not member.default_config.exists()


def test_state_dir_permissions_are_reported_not_changed(
    runner: CliRunner, member: Member, tmp_path: Path
) -> None:
    state = tmp_path / "open-state"
    state.mkdir()
    state.chmod(0o755)
    args = [*member.args("127.0.0.1:1", "--insecure"), "--state-dir", str(state), "--no-check"]
    result = runner.invoke(cli, [*args, "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["warnings"] == [
        f"state directory {state} has permissions drwxr-xr-x and will hold rejected input "
        f"rows; run: chmod 700 {state}"
    ]
    assert mode_of(state) == 0o755
    assert os.path.isdir(state)


# ---------------------------------------------------------------------------------- TLS files


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> ForumPki:
    return issue_forum_pki(tmp_path_factory.mktemp("pki"), datetime.now(UTC), member="firm-a")


def client_leaf(pki: ForumPki, directory: Path, stem: str, **dates: datetime) -> Issued:
    """A client certificate from the forum CA, valid between ``not_before`` and ``not_after``."""
    return issue_leaf(
        directory,
        stem,
        issuer=issuer(pki.ca),
        usage=ExtendedKeyUsageOID.CLIENT_AUTH,
        not_before=dates["not_before"],
        not_after=dates["not_after"],
    )


BadTls = tuple[list[str], str]
"""The ``init`` TLS flags of one broken set-up, and the start of the message naming it."""


def _garbage(directory: Path) -> Path:
    garbage = directory / "garbage.pem"
    garbage.write_text("this is not PEM\n")
    return garbage


def _mtls(pki: ForumPki, certificate: Path, key: Path) -> list[str]:
    return [
        "--ca-cert",
        str(pki.ca.cert),
        "--client-cert",
        str(certificate),
        "--client-key",
        str(key),
    ]


def _garbage_ca(pki: ForumPki, directory: Path) -> BadTls:
    garbage = _garbage(directory)
    return (
        ["--ca-cert", str(garbage)],
        f"CA certificate {garbage}: not a PEM certificate (no -----BEGIN CERTIFICATE----- block)",
    )


def _key_as_ca(pki: ForumPki, directory: Path) -> BadTls:
    return (
        ["--ca-cert", str(pki.ca.key)],
        f"CA certificate {pki.ca.key}: holds a private key; a CA file holds certificates only",
    )


def _ca_with_its_key(pki: ForumPki, directory: Path) -> BadTls:
    bundle = directory / "ca-and-key.pem"
    bundle.write_bytes(pki.ca.cert.read_bytes() + pki.ca.key.read_bytes())
    return (
        ["--ca-cert", str(bundle)],
        f"CA certificate {bundle}: holds a private key; a CA file holds certificates only",
    )


def _expired_ca(pki: ForumPki, directory: Path) -> BadTls:
    old, _, _ = issue_ca(directory, "old-ca", datetime.now(UTC) - timedelta(days=60))
    return ["--ca-cert", str(old.cert)], f"CA certificate {old.cert}: expired on "


def _garbage_client_certificate(pki: ForumPki, directory: Path) -> BadTls:
    garbage = _garbage(directory)
    return (
        _mtls(pki, garbage, pki.client.key),
        f"client certificate {garbage}: not a PEM certificate",
    )


def _key_of_another_certificate(pki: ForumPki, directory: Path) -> BadTls:
    return (
        _mtls(pki, pki.client.cert, pki.other_client.key),
        f"client key {pki.other_client.key}: is not the private key of the client certificate "
        f"{pki.client.cert}",
    )


def _expired_client_certificate(pki: ForumPki, directory: Path) -> BadTls:
    now = datetime.now(UTC)
    leaf = client_leaf(pki, directory, "expired", not_before=now - timedelta(days=9), not_after=now)
    return _mtls(pki, leaf.cert, leaf.key), f"client certificate {leaf.cert}: expired on "


def _client_certificate_not_valid_yet(pki: ForumPki, directory: Path) -> BadTls:
    now = datetime.now(UTC)
    leaf = client_leaf(
        pki,
        directory,
        "future",
        not_before=now + timedelta(days=1),
        not_after=now + timedelta(days=9),
    )
    return _mtls(pki, leaf.cert, leaf.key), f"client certificate {leaf.cert}: not valid before "


def _server_certificate_as_client(pki: ForumPki, directory: Path) -> BadTls:
    return (
        _mtls(pki, pki.server.cert, pki.server.key),
        f"client certificate {pki.server.cert}: is not for client authentication",
    )


def _encrypted_key(pki: ForumPki, directory: Path) -> BadTls:
    encrypted = directory / "encrypted.key"
    key = serialization.load_pem_private_key(pki.client.key.read_bytes(), password=None)
    encrypted.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"passphrase"),
        )
    )
    encrypted.chmod(0o600)
    return (
        _mtls(pki, pki.client.cert, encrypted),
        f"client key {encrypted}: is encrypted with a passphrase; gRPC needs an unencrypted "
        "key; decrypt a copy for this client: openssl pkey",
    )


def _certificate_as_key(pki: ForumPki, directory: Path) -> BadTls:
    return (
        _mtls(pki, pki.client.cert, pki.client.cert),
        f"client key {pki.client.cert}: holds a certificate, not a private key",
    )


BAD_TLS_FILES: dict[str, Callable[[ForumPki, Path], BadTls]] = {
    "garbage CA": _garbage_ca,
    "a private key as CA": _key_as_ca,
    "a CA file with its key": _ca_with_its_key,
    "an expired CA": _expired_ca,
    "garbage client certificate": _garbage_client_certificate,
    "the key of another certificate": _key_of_another_certificate,
    "an expired client certificate": _expired_client_certificate,
    "a client certificate not valid yet": _client_certificate_not_valid_yet,
    "a server certificate as client certificate": _server_certificate_as_client,
    "an encrypted key": _encrypted_key,
    "a certificate as key": _certificate_as_key,
}


@pytest.mark.parametrize("case", sorted(BAD_TLS_FILES))
def test_unusable_tls_files_are_refused_naming_the_file(
    runner: CliRunner, member: Member, pki: ForumPki, case: str
) -> None:
    flags, message = BAD_TLS_FILES[case](pki, member.tmp)
    result = runner.invoke(
        cli, [*member.args("hub.example.org:443", *flags), "--no-check", "--json"]
    )
    assert result.exit_code == int(ExitCode.CONFIG) == 3, result.output
    document = json.loads(result.stdout)
    assert document["status"] == "config"
    assert document["error"].startswith(message), document["error"]
    assert result.stderr.startswith(f"error: {message}")
    member.assert_private(result)
    assert not member.default_config.exists()
    assert not member.default_state.exists()


def test_a_client_certificate_expiring_soon_is_a_warning(
    runner: CliRunner, member: Member, pki: ForumPki
) -> None:
    now = datetime.now(UTC)
    leaf = client_leaf(
        pki,
        member.tmp,
        "soon",
        not_before=now - timedelta(days=80),
        not_after=now + timedelta(days=3),
    )
    flags = ["--ca-cert", str(pki.ca.cert), "--client-cert", str(leaf.cert)]
    result = runner.invoke(
        cli,
        [
            *member.args("hub.example.org:443", *flags),
            "--client-key",
            str(leaf.key),
            "--no-check",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    [warning] = json.loads(result.stdout)["warnings"]
    assert warning.startswith(f"client certificate {leaf.cert}: expires on ")
    assert warning.endswith(", in 2 days; ask the forum for a new client certificate before then")


# ---------------------------------------------------------------------------------- TLS and mTLS


@dataclass(frozen=True)
class TlsForum:
    engine: Engine
    credential: str
    """``firm-a``'s credential."""


@pytest.fixture(scope="module")
def tls_forum(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsForum]:
    engine, credential = provisioned_hub(tmp_path_factory.mktemp("tls-hub"))
    yield TlsForum(engine=engine, credential=credential)
    engine.dispose()


@pytest.mark.parametrize("mtls", [False, True], ids=["TLS", "mTLS"])
def test_check_over_tls_and_mtls(
    runner: CliRunner, member: Member, pki: ForumPki, tls_forum: TlsForum, mtls: bool
) -> None:
    member.set_credential(tls_forum.credential)
    flags = ["--ca-cert", str(pki.ca.cert)]
    if mtls:
        flags += ["--client-cert", str(pki.client.cert), "--client-key", str(pki.client.key)]
    with tls_hub(tls_forum.engine, pki, require_client_certificate=mtls) as target:
        result = runner.invoke(cli, [*member.args(target, *flags), "--json"])
    assert result.exit_code == 0, result.output
    member.assert_private(result)
    document = json.loads(result.stdout)
    assert document["checked"] is True
    assert document["transport"] == f"{'mTLS' if mtls else 'TLS'}, CA {pki.ca.cert}"
    assert document["warnings"] == []


@pytest.mark.parametrize(
    "case", ["no client certificate", "a stranger's certificate", "another CA", "plaintext hub"]
)
def test_refused_handshakes_are_explained_at_once(
    runner: CliRunner,
    member: Member,
    pki: ForumPki,
    tls_forum: TlsForum,
    case: str,
) -> None:
    """Each is a configuration error (exit 3) that says what the hub refused and what to set;
    none is retried."""
    member.set_credential(tls_forum.credential)
    stranger = [
        "--client-cert",
        str(pki.other_client.cert),
        "--client-key",
        str(pki.other_client.key),
    ]
    flags = {
        "no client certificate": ["--ca-cert", str(pki.ca.cert)],
        "a stranger's certificate": ["--ca-cert", str(pki.ca.cert), *stranger],
        "another CA": ["--ca-cert", str(pki.other_ca.cert)],
        "plaintext hub": ["--ca-cert", str(pki.ca.cert)],
    }[case]
    started = time.monotonic()
    if case == "plaintext hub":
        server = build_hub(tls_forum.engine, parse_listen("127.0.0.1:0"), tls=None, insecure=True)
        server.server.start()
        target = f"127.0.0.1:{server.port}"
        try:
            result = runner.invoke(cli, [*member.args(target, *flags), "--json"])
        finally:
            server.stop(0)
    else:
        mtls = case != "another CA"
        with tls_hub(tls_forum.engine, pki, require_client_certificate=mtls) as target:
            result = runner.invoke(cli, [*member.args(target, *flags), "--json"])
    elapsed = time.monotonic() - started
    expected = {
        "no client certificate": f"the hub at {target} closed the connection after the TLS "
        "handshake: the hub requires a client certificate signed by its CA (mTLS), and none was "
        "presented; set client_cert and client_key (--client-cert, --client-key)",
        "a stranger's certificate": f"the hub at {target} refused the client certificate "
        f"{pki.other_client.cert}: the hub requires a client certificate signed by its CA; use "
        "the client certificate the forum's CA issued you",
        "another CA": f"the hub's certificate at {target} is not trusted (unable to get local "
        f"issuer certificate), checked against the CA certificate {pki.other_ca.cert}; set "
        "ca_cert (--ca-cert) to the forum CA's certificate",
        "plaintext hub": f"no TLS answers at {target}: a plaintext hub, or another service on "
        "that port; check the port",
    }[case]
    assert result.exit_code == int(ExitCode.CONFIG), result.output
    assert json.loads(result.stdout)["error"].startswith(expected)
    assert elapsed < 5, f"took {elapsed:.1f} s"
    member.assert_private(result)
    assert not member.default_config.exists()
