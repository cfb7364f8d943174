"""``sigshare doctor``, and the same TLS checks where ``sync`` connects.

Real hubs on loopback over one provisioned SQLite database (:func:`tests.support.hub.provision`:
members m1…m4, ``email`` and the family ``prompt`` under key epoch ``epoch-1``): plaintext, TLS
and mTLS with a PKI from :mod:`tests.support.tls`. Each member set-up is a configuration written
by :func:`sigshare.client.config.write_config` with its own files; every test asserts the exit
code and what each check says, and that neither the credential nor the forum secret is printed.
The last tests run the installed ``sigshare`` in a subprocess, where gRPC's own logging would
reach stderr.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import Engine

from sigshare.client.cli import cli
from sigshare.client.config import ClientConfig, write_config
from sigshare.client.exit_codes import ExitCode
from sigshare.hub.rpc.app import build_hub
from sigshare.hub.rpc.server import parse_listen
from sigshare.hub.storage import make_engine, migrate
from sigshare.sketch.keys import ForumSecret, write_secret_file
from tests.support.e2e import SIGSHARE, client_env
from tests.support.hub import KEY_ID, forum_secret, provision
from tests.support.tls import ForumPki, issue_forum_pki, tls_hub

MEMBER = "m1"
CHECKS = [
    "config",
    "secret file",
    "credential file",
    "state dir",
    "ca certificate",
    "client certificate",
    "hub reachable",
    "connection",
    "credential",
    "key epoch",
    "kinds",
    "prompt family",
]
"""Every check of a TLS set-up, in order."""
GRPC_LOG_LINE = re.compile(r"^[DIWEF]\d{4} \d\d:\d\d:\d\d")
"""The prefix of gRPC core's own log lines (``E1202 10:11:12.131415 …``)."""


# ---------------------------------------------------------------------------------- the forum


@dataclass(frozen=True)
class Forum:
    engine: Engine
    credentials: dict[str, str]
    pki: ForumPki


@pytest.fixture(scope="module")
def forum(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Forum]:
    directory = tmp_path_factory.mktemp("doctor-hub")
    url = f"sqlite:///{directory / 'hub.db'}"
    migrate.upgrade(url)
    engine = make_engine(url)
    credentials = provision(engine)
    pki = issue_forum_pki(directory, datetime.now(UTC), member=MEMBER)
    yield Forum(engine=engine, credentials=credentials, pki=pki)
    engine.dispose()


@pytest.fixture(scope="module")
def plaintext_target(forum: Forum) -> Iterator[str]:
    server = build_hub(forum.engine, parse_listen("127.0.0.1:0"), tls=None, insecure=True)
    server.server.start()
    yield f"127.0.0.1:{server.port}"
    server.stop(0)


@pytest.fixture(scope="module")
def tls_target(forum: Forum) -> Iterator[str]:
    with tls_hub(forum.engine, forum.pki, require_client_certificate=False) as target:
        yield target


@pytest.fixture(scope="module")
def mtls_target(forum: Forum) -> Iterator[str]:
    with tls_hub(forum.engine, forum.pki, require_client_certificate=True) as target:
        yield target


# ---------------------------------------------------------------------------------- a member


@dataclass
class Member:
    """A member's files and configuration; :meth:`write` (re)writes the configuration."""

    directory: Path
    config: ClientConfig
    secret: ForumSecret
    credential: str

    @property
    def path(self) -> Path:
        return self.directory / "config.toml"

    def write(self, **changes: object) -> Path:
        self.config = replace(self.config, **changes)  # type: ignore[arg-type]
        return write_config(self.path, self.config, force=True)

    def doctor(self, *extra: str) -> Result:
        result = CliRunner().invoke(cli, ["doctor", "--config", str(self.path), *extra])
        printed = result.stdout + result.stderr
        assert self.credential not in printed
        assert self.credential.split("_", 2)[-1] not in printed
        assert self.secret.secret.hex() not in printed
        return result

    def checks(self) -> tuple[Result, dict[str, dict[str, str | None]]]:
        """``doctor --json``: the result and each check's record by name (in order)."""
        result = self.doctor("--json")
        document = json.loads(result.stdout)
        assert document["exit_code"] == result.exit_code
        by_name = {record.pop("check"): record for record in document["checks"]}
        return result, by_name


def owner_only(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(0o600)
    return path


@pytest.fixture
def member(tmp_path: Path, forum: Forum, mtls_target: str) -> Member:
    """Member m1 over mTLS with its own certificate: every check passes."""
    secret = forum_secret()
    write_secret_file(tmp_path / "forum.secret", secret)
    credential = forum.credentials[MEMBER]
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    made = Member(
        directory=tmp_path,
        config=ClientConfig(
            hub=mtls_target,
            credential_file=owner_only(tmp_path / "hub.credential", credential + "\n"),
            secret_file=tmp_path / "forum.secret",
            state_dir=state,
            ca_cert=forum.pki.ca.cert,
            client_cert=forum.pki.client.cert,
            client_key=forum.pki.client.key,
            retries=5,
        ),
        secret=secret,
        credential=credential,
    )
    made.write()
    return made


def statuses(checks: dict[str, dict[str, str | None]]) -> dict[str, str | None]:
    return {name: record["status"] for name, record in checks.items()}


# ---------------------------------------------------------------------------------- all well


def test_a_sound_mtls_setup_passes_every_check(member: Member, forum: Forum) -> None:
    result = member.doctor()
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    config, pki = member.config, forum.pki
    ca = "CN=forum-ca root,O=sigshare tests"
    lines = result.stdout.splitlines()
    assert [line.split(":")[0] for line in lines] == [f"ok    {name}" for name in CHECKS]
    assert lines == [
        f"ok    config: {member.path}: hub {config.hub}, mTLS, CA {pki.ca.cert}",
        f"ok    secret file: {config.secret_file}: key id {KEY_ID}, mode 0600",
        f"ok    credential file: {config.credential_file}: mode 0600",
        f"ok    state dir: {config.state_dir}: mode 0700",
        lines[4],
        lines[5],
        f"ok    hub reachable: {config.hub} accepts TCP connections",
        "ok    connection: TLS handshake accepted, with the client certificate",
        f"ok    credential: accepted: the hub knows this member as {MEMBER}",
        f"ok    key epoch: {KEY_ID}, as the hub's parameters",
        f"ok    kinds: the hub publishes email ({KEY_ID})",
        f"ok    prompt family: prompt ({KEY_ID})",
    ]
    assert lines[4].startswith(f"ok    ca certificate: {pki.ca.cert}: {ca}, self-signed, ")
    assert lines[5].startswith(
        f"ok    client certificate: {pki.client.cert}: CN={MEMBER},O=sigshare tests, issued by "
        f"{ca}, valid until "
    )
    assert lines[5].endswith(f"; key {pki.client.key} matches")


def test_json_lists_every_check_with_its_fix(member: Member) -> None:
    result = member.doctor("--json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert (document["exit_code"], document["status"]) == (0, "ok")
    assert [c["check"] for c in document["checks"]] == CHECKS
    for check in document["checks"]:
        assert set(check) == {"check", "status", "detail", "fix"}
        assert (check["status"], check["fix"]) == ("ok", None)


def test_plaintext_to_a_loopback_hub(member: Member, plaintext_target: str) -> None:
    member.write(
        hub=plaintext_target, insecure=True, ca_cert=None, client_cert=None, client_key=None
    )
    result, checks = member.checks()
    assert result.exit_code == 0, result.output
    assert checks["tls files"]["detail"] == "none: plaintext (insecure = true) to a loopback hub"
    assert checks["connection"]["detail"] == "plaintext gRPC to a loopback hub"
    assert set(statuses(checks).values()) == {"ok"}


# ---------------------------------------------------------------------------------- refusals


def test_mtls_without_a_client_certificate_is_explained(member: Member) -> None:
    member.write(client_cert=None, client_key=None)
    started = time.monotonic()
    result = member.doctor()
    elapsed = time.monotonic() - started
    assert result.exit_code == int(ExitCode.CONFIG), result.output
    lines = result.stdout.splitlines()
    at = lines.index(
        f"fail  connection: the hub at {member.config.hub} closed the connection after the TLS "
        "handshake: the hub requires a client certificate signed by its CA (mTLS), and none was "
        "presented"
    )
    assert lines[at + 1] == (
        "      set client_cert and client_key (--client-cert, --client-key) to the client "
        "certificate the forum issued you and its key"
    )
    assert lines[at + 2 :] == [
        "skip  credential: not checked: no TLS connection to the hub",
        "skip  key epoch: not checked: the hub did not answer",
        "skip  kinds: not checked: the hub did not answer",
        "skip  prompt family: not checked: the hub did not answer",
    ]
    assert elapsed < 5, f"took {elapsed:.1f} s: a certificate refusal must not be retried"


def test_a_certificate_from_another_ca_is_explained(member: Member, forum: Forum) -> None:
    member.write(client_cert=forum.pki.other_client.cert, client_key=forum.pki.other_client.key)
    result, checks = member.checks()
    assert result.exit_code == int(ExitCode.CONFIG), result.output
    assert checks["client certificate"]["status"] == "ok"  # well-formed; the hub refuses it
    assert checks["connection"] == {
        "status": "fail",
        "detail": f"the hub at {member.config.hub} refused the client certificate "
        f"{forum.pki.other_client.cert}: the hub requires a client certificate signed by its CA",
        "fix": "use the client certificate the forum's CA issued you (this one is from another "
        "CA, or no longer accepted)",
    }


def test_an_untrusted_hub_certificate_is_explained(
    member: Member, forum: Forum, tls_target: str
) -> None:
    member.write(hub=tls_target, ca_cert=forum.pki.other_ca.cert, client_cert=None, client_key=None)
    result, checks = member.checks()
    assert result.exit_code == int(ExitCode.CONFIG), result.output
    assert checks["connection"]["status"] == "fail"
    assert checks["connection"]["detail"] == (
        f"the hub's certificate at {tls_target} is not trusted (unable to get local issuer "
        f"certificate), checked against the CA certificate {forum.pki.other_ca.cert}"
    )


def test_an_unusable_ca_file_skips_the_hub(member: Member) -> None:
    garbage = owner_only(member.directory / "ca.pem", "not a certificate\n")
    member.write(ca_cert=garbage)
    result, checks = member.checks()
    assert result.exit_code == int(ExitCode.CONFIG), result.output
    assert checks["ca certificate"] == {
        "status": "fail",
        "detail": f"CA certificate {garbage}: not a PEM certificate (no -----BEGIN "
        "CERTIFICATE----- block)",
        "fix": "set ca_cert (--ca-cert) to the forum CA's certificate, a PEM file",
    }
    for name in CHECKS[6:]:
        assert checks[name] == {
            "status": "skip",
            "detail": "not checked: a TLS file is unusable",
            "fix": None,
        }


def test_an_unreachable_hub_is_a_network_failure(member: Member, closed_port: int) -> None:
    member.write(hub=f"127.0.0.1:{closed_port}")
    result, checks = member.checks()
    assert result.exit_code == int(ExitCode.NETWORK), result.output
    assert checks["hub reachable"]["status"] == "fail"
    assert checks["hub reachable"]["detail"] == (
        f"cannot connect to 127.0.0.1:{closed_port}: Connection refused"
    )
    assert {statuses(checks)[name] for name in CHECKS[7:]} == {"skip"}


def test_a_refused_credential_is_an_auth_failure(member: Member) -> None:
    owner_only(member.config.credential_file, "sgs1_0123456789abcdef_" + "A" * 43 + "\n")
    result, checks = member.checks()
    assert result.exit_code == int(ExitCode.AUTH), result.output
    assert checks["connection"]["status"] == "ok"
    assert checks["credential"]["status"] == "fail"
    assert str(checks["credential"]["detail"]).startswith("not authorised by the hub")


def test_a_secret_of_another_key_epoch_fails_the_epoch_check(member: Member) -> None:
    secret = ForumSecret.generate("epoch-9")
    write_secret_file(member.config.secret_file, secret, overwrite=True)
    member.secret = secret
    result, checks = member.checks()
    assert result.exit_code == int(ExitCode.CONFIG), result.output
    assert checks["key epoch"] == {
        "status": "fail",
        "detail": f"the forum secret is for key id epoch-9, the hub publishes parameters for "
        f"{KEY_ID} only: sketches made with this secret would be refused",
        "fix": "install the forum secret file of the hub's current key epoch",
    }
    assert statuses(checks)["kinds"] == "ok"


def test_file_modes_fail_or_warn_with_the_command_that_fixes_them(member: Member) -> None:
    member.config.secret_file.chmod(0o640)
    member.config.state_dir.chmod(0o755)
    result = member.doctor()
    assert result.exit_code == int(ExitCode.CONFIG), result.output
    lines = result.stdout.splitlines()
    secret, state = member.config.secret_file, member.config.state_dir
    at = lines.index(
        f"fail  secret file: {secret}: permissions -rw-r----- let others read the forum secret; "
        f"run: chmod 600 {secret}"
    )
    assert lines[at + 1] == f"      run: chmod 600 {secret}"
    at = lines.index(
        f"warn  state dir: state directory {state} has permissions drwxr-xr-x and will hold "
        "rejected input rows"
    )
    assert lines[at + 1] == f"      run: chmod 700 {state}"
    # The hub is still checked; only the key epoch needs the secret.
    assert "ok    credential: accepted: the hub knows this member as m1" in lines
    assert "skip  key epoch: not checked: the forum secret file is unusable" in lines


def test_warnings_alone_exit_zero(member: Member) -> None:
    member.write(prompt_family="prompts")
    result, checks = member.checks()
    assert result.exit_code == 0, result.output
    assert checks["prompt family"] == {
        "status": "warn",
        "detail": "the hub publishes no MinHash family 'prompts': prompt clusters cannot be "
        "shared until it does (it publishes: prompt)",
        "fix": "ask the forum's coordinator to publish it (`sigshare-hub params set-minhash "
        "prompts …`), or set prompt_family to a family the hub publishes",
    }


def test_a_missing_configuration_says_to_run_init(tmp_path: Path) -> None:
    missing = tmp_path / "none.toml"
    result = CliRunner().invoke(cli, ["doctor", "--config", str(missing), "--json"])
    assert result.exit_code == int(ExitCode.CONFIG)
    assert json.loads(result.stdout) == {
        "checks": [
            {
                "check": "config",
                "status": "fail",
                "detail": f"no configuration at {missing}; run `sigshare init` to create one "
                "(or point --config / $SIGSHARE_CONFIG at an existing file)",
                "fix": "run `sigshare init` to write one, or point --config / $SIGSHARE_CONFIG "
                "at it",
            }
        ],
        "exit_code": 3,
        "status": "config",
    }


# ---------------------------------------------------------------------------------- sync


def emails(directory: Path) -> Path:
    path = directory / "accounts.csv"
    path.write_text("kind,value\nemail,someone@example.com\n")
    return path


def test_sync_refuses_a_bad_tls_file_before_connecting(member: Member) -> None:
    member.write(client_key=member.config.client_cert)  # a certificate where the key belongs
    started = time.monotonic()
    result = CliRunner().invoke(
        cli, ["sync", "--json", "--config", str(member.path), str(emails(member.directory))]
    )
    elapsed = time.monotonic() - started
    assert result.exit_code == int(ExitCode.CONFIG), result.output
    assert json.loads(result.stdout)["error"] == (
        f"client key {member.config.client_cert}: holds a certificate, not a private key; set "
        "client_cert and client_key (--client-cert, --client-key) to the client certificate the "
        "forum issued you and its private key, PEM files"
    )
    assert elapsed < 5, f"took {elapsed:.1f} s"


@pytest.mark.parametrize("case", ["untrusted hub", "no client certificate"])
def test_sync_in_a_terminal_shows_one_error_line_and_no_grpc_logging(
    member: Member, forum: Forum, tls_target: str, case: str
) -> None:
    """The installed command in its own process, where gRPC core would print its own lines
    (``I… ssl_transport_security.cc … Handshake failed``) unless told not to."""
    if case == "untrusted hub":
        member.write(
            hub=tls_target, ca_cert=forum.pki.other_ca.cert, client_cert=None, client_key=None
        )
        expected = f"error: the hub's certificate at {tls_target} is not trusted"
    else:
        member.write(client_cert=None, client_key=None)
        expected = (
            f"error: the hub at {member.config.hub} closed the connection after the TLS "
            "handshake: the hub requires a client certificate signed by its CA"
        )
    home = member.directory / "home"
    home.mkdir()
    env = {k: v for k, v in client_env(home).items() if k not in ("GRPC_VERBOSITY", "GRPC_TRACE")}
    completed = subprocess.run(
        [str(SIGSHARE), "sync", "--config", str(member.path), str(emails(member.directory))],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == int(ExitCode.CONFIG), completed.stderr
    lines = completed.stderr.splitlines()
    assert [line for line in lines if GRPC_LOG_LINE.match(line)] == []
    assert lines[-1].startswith(expected), completed.stderr
    assert member.credential not in completed.stdout + completed.stderr
