"""The member client's configuration file: locations, validation messages, writing, credential."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from sigshare.client.config import (
    ClientConfig,
    ConfigError,
    config_path,
    default_state_dir,
    ensure_state_dir,
    hub_connection,
    load_config,
    parse_config,
    read_credential,
    render_config,
    retry_policy,
    timeouts,
    write_config,
)

CREDENTIAL = "sgs1_0123456789abcdef_s3cr3t-credential-value-never-printed-xyz"


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """HOME and the XDG directories inside the test's own directory; no $SIGSHARE_CONFIG."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    monkeypatch.delenv("XDG_STATE_HOME", raising=False)
    monkeypatch.delenv("SIGSHARE_CONFIG", raising=False)
    return home


def owner_only(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(0o600)
    return path


def full_config(base: Path) -> ClientConfig:
    return ClientConfig(
        hub="hub.example.org:443",
        credential_file=base / "member.credential",
        secret_file=base / "forum.secret",
        state_dir=base / "state",
        ca_cert=base / "ca.pem",
        client_cert=base / "client.pem",
        client_key=base / "client.key",
        rejects_file=base / "rejects" / "out.jsonl",
        timeout_seconds=12.5,
        retries=0,
        prompt_family="prompts-v2",
        min_cluster_volume=7,
    )


def write_toml(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o600)
    return path


MINIMAL = """\
hub = "127.0.0.1:50051"
insecure = true
credential_file = "/etc/sigshare/member.credential"
secret_file = "/etc/sigshare/forum.secret"
state_dir = "/var/lib/sigshare"
"""


def refusal(path: Path | None) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert type(caught.value) is ConfigError
    return caught.value


# ---------------------------------------------------------------------------------- round trip


def test_write_then_load_gives_the_same_configuration(tmp_path: Path) -> None:
    config = full_config(tmp_path)
    path = tmp_path / "conf" / "config.toml"
    assert write_config(path, config) == path
    loaded, location = load_config(path)
    assert loaded == config
    assert location == path


def test_defaults_fill_the_job_settings_and_rejects_live_in_the_state_dir(tmp_path: Path) -> None:
    loaded, _ = load_config(write_toml(tmp_path / "config.toml", MINIMAL))
    assert loaded == ClientConfig(
        hub="127.0.0.1:50051",
        credential_file=Path("/etc/sigshare/member.credential"),
        secret_file=Path("/etc/sigshare/forum.secret"),
        state_dir=Path("/var/lib/sigshare"),
        insecure=True,
    )
    assert (loaded.timeout_seconds, loaded.retries) == (60.0, 5)
    assert (loaded.prompt_family, loaded.min_cluster_volume) == ("prompt", 3)
    assert loaded.rejects_file is None
    assert loaded.rejects_path == Path("/var/lib/sigshare/rejects.jsonl")
    assert loaded.ca_cert is None
    assert loaded.transport == "plaintext (loopback only)"


def test_awkward_strings_survive_the_hand_written_toml(tmp_path: Path) -> None:
    awkward = 'we"ird\\dir\twith\nnewline\x7f\x01 ünï ✓ #not-a-comment'
    config = ClientConfig(
        hub="[::1]:7000",
        credential_file=tmp_path / awkward / "cred",
        secret_file=tmp_path / "s",
        state_dir=tmp_path / "state",
        insecure=True,
        prompt_family=awkward,
    )
    path = write_config(tmp_path / "config.toml", config)
    assert load_config(path)[0] == config


def test_a_path_that_is_not_utf8_cannot_be_written(tmp_path: Path) -> None:
    config = ClientConfig(
        hub="localhost:1",
        credential_file=tmp_path / "bad\udcff",
        secret_file=tmp_path / "s",
        state_dir=tmp_path,
        insecure=True,
    )
    with pytest.raises(ConfigError, match="credential_file is not valid UTF-8"):
        render_config(config)


def test_relative_paths_resolve_against_the_config_files_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, home: Path
) -> None:
    path = write_toml(
        tmp_path / "etc" / "sigshare" / "config.toml",
        'hub = "hub.example.org:443"\n'
        'credential_file = "member.credential"\n'
        'secret_file = "../keys/forum.secret"\n'
        'state_dir = "~/state"\n'
        'ca_cert = "./tls/ca.pem"\n'
        'rejects_file = "/abs/rejects.jsonl"\n',
    )
    monkeypatch.chdir(home)  # the working directory must not matter
    loaded, _ = load_config(path)
    assert loaded.credential_file == tmp_path / "etc" / "sigshare" / "member.credential"
    assert loaded.secret_file == tmp_path / "etc" / "keys" / "forum.secret"
    assert loaded.state_dir == home / "state"
    assert loaded.ca_cert == tmp_path / "etc" / "sigshare" / "tls" / "ca.pem"
    assert loaded.rejects_path == Path("/abs/rejects.jsonl")
    assert loaded.transport == f"TLS, CA {loaded.ca_cert}"


def test_neither_ca_cert_nor_insecure_means_tls_with_system_roots(tmp_path: Path) -> None:
    path = write_toml(tmp_path / "c.toml", MINIMAL.replace("insecure = true\n", ""))
    loaded, _ = load_config(path)
    assert not loaded.insecure
    assert loaded.ca_cert is None
    assert loaded.transport == "TLS, gRPC's public roots"


# ---------------------------------------------------------------------------------- locations


def test_location_explicit_then_environment_then_xdg_then_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, home: Path
) -> None:
    assert config_path(None) == home / ".config" / "sigshare" / "config.toml"
    monkeypatch.setenv("XDG_CONFIG_HOME", "relative/ignored")  # the XDG spec says so
    assert config_path(None) == home / ".config" / "sigshare" / "config.toml"
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert config_path(None) == tmp_path / "xdg" / "sigshare" / "config.toml"
    monkeypatch.setenv("SIGSHARE_CONFIG", str(tmp_path / "env.toml"))
    assert config_path(None) == tmp_path / "env.toml"
    assert config_path(tmp_path / "flag.toml") == tmp_path / "flag.toml"
    monkeypatch.chdir(tmp_path)
    assert config_path(Path("rel.toml")) == tmp_path / "rel.toml"


def test_load_uses_the_environment_variable_when_no_path_is_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_toml(tmp_path / "env.toml", MINIMAL)
    monkeypatch.setenv("SIGSHARE_CONFIG", str(path))
    assert load_config(None)[1] == path


def test_default_state_dir_respects_xdg_state_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, home: Path
) -> None:
    assert default_state_dir() == home / ".local" / "state" / "sigshare"
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    assert default_state_dir() == tmp_path / "state" / "sigshare"


# ---------------------------------------------------------------------------------- refusals


def test_a_missing_file_says_to_run_init(home: Path) -> None:
    error = refusal(None)
    expected = home / ".config" / "sigshare" / "config.toml"
    assert str(error) == (
        f"no configuration at {expected}; run `sigshare init` to create one "
        "(or point --config / $SIGSHARE_CONFIG at an existing file)"
    )


def test_a_directory_is_not_a_config_file(tmp_path: Path) -> None:
    assert "is a directory" in str(refusal(tmp_path))


def test_toml_syntax_errors_name_the_line(tmp_path: Path) -> None:
    path = write_toml(tmp_path / "c.toml", MINIMAL + "retries = = 3\n")
    message = str(refusal(path))
    assert message.startswith(f"{path}: not valid TOML: ")
    assert "line 6" in message


def test_text_that_is_not_utf8_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_bytes(b'hub = "\xff"\n')
    path.chmod(0o600)
    assert str(refusal(path)) == f"{path}: not UTF-8 text; not a sigshare configuration"


def test_unknown_keys_are_refused_and_listed(tmp_path: Path) -> None:
    path = write_toml(tmp_path / "c.toml", MINIMAL + "retires = 3\ninsecur = true\n[job]\n")
    message = str(refusal(path))
    assert message.startswith(f"{path}: unknown settings insecur, job, retires (known: ")
    assert "min_cluster_volume" in message


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("retries = '5'", "retries must be an integer, not a string"),
        ("retries = 2.0", "retries must be an integer, not a float"),
        ("retries = true", "retries must be an integer, not a boolean"),
        ("timeout_seconds = true", "timeout_seconds must be a number, not a boolean"),
        ("timeout_seconds = '60'", "timeout_seconds must be a number, not a string"),
        ("min_cluster_volume = [3]", "min_cluster_volume must be an integer, not an array"),
        ("prompt_family = 1", "prompt_family must be a string, not an integer"),
        ("ca_cert = 1", "ca_cert must be a string, not an integer"),
        ("rejects_file = ''", "rejects_file must not be an empty path"),
        ("client_cert = { a = 1 }", "client_cert must be a string, not a table"),
        ("version = 2", "configuration version 2 is not supported"),
        ("timeout_seconds = 0", "timeout_seconds must be a positive number of seconds"),
        ("timeout_seconds = inf", "timeout_seconds must be a positive number of seconds"),
        ("retries = -1", "retries must not be negative"),
        ("min_cluster_volume = 0", "min_cluster_volume must be at least 1"),
        ("prompt_family = ' '", "prompt_family must not be empty"),
    ],
)
def test_wrong_types_and_values_are_refused(tmp_path: Path, line: str, message: str) -> None:
    path = write_toml(tmp_path / "c.toml", MINIMAL + line + "\n")
    assert str(refusal(path)).startswith(f"{path}: {message}")


def test_a_wrong_type_for_a_replaced_setting_is_refused(tmp_path: Path) -> None:
    path = write_toml(tmp_path / "c.toml", MINIMAL.replace("insecure = true", 'insecure = "yes"'))
    assert str(refusal(path)) == f"{path}: insecure must be true or false, not a string"
    path = write_toml(tmp_path / "c.toml", MINIMAL.replace('"127.0.0.1:50051"', "50051"))
    assert str(refusal(path)) == f"{path}: hub must be a string, not an integer"


@pytest.mark.parametrize("key", ["hub", "credential_file", "secret_file", "state_dir"])
def test_required_settings_must_be_present(tmp_path: Path, key: str) -> None:
    text = "".join(line + "\n" for line in MINIMAL.splitlines() if not line.startswith(key))
    path = write_toml(tmp_path / "c.toml", text)
    assert str(refusal(path)) == f"{path}: {key} is missing"


@pytest.mark.parametrize("hub", ["hub.example.org", "::1:50051", "host:0", "host:70000", ":5"])
def test_a_malformed_hub_address_is_refused(tmp_path: Path, hub: str) -> None:
    path = write_toml(tmp_path / "c.toml", MINIMAL.replace("127.0.0.1:50051", hub))
    assert "is not HOST:PORT (IPv6 as [ADDR]:PORT)" in str(refusal(path))


@pytest.mark.parametrize("hub", ["10.0.0.5:50051", "hub.example.org:443", "[2001:db8::1]:443"])
def test_insecure_to_a_hub_off_loopback_is_refused(tmp_path: Path, hub: str) -> None:
    path = write_toml(tmp_path / "c.toml", MINIMAL.replace("127.0.0.1:50051", hub))
    assert str(refusal(path)) == (
        f"{path}: insecure (plaintext) is refused for hub {hub}: plaintext is allowed only to "
        "loopback (127.0.0.0/8, ::1, localhost); use TLS (ca_cert, or gRPC's public roots)"
    )


@pytest.mark.parametrize("hub", ["127.0.0.1:1", "127.8.9.10:2", "[::1]:3", "localhost:4"])
def test_insecure_to_loopback_is_accepted(tmp_path: Path, hub: str) -> None:
    path = write_toml(tmp_path / "c.toml", MINIMAL.replace("127.0.0.1:50051", hub))
    assert load_config(path)[0].hub == hub


def test_insecure_with_tls_files_is_refused(tmp_path: Path) -> None:
    path = write_toml(tmp_path / "c.toml", MINIMAL + 'ca_cert = "ca.pem"\n')
    assert str(refusal(path)) == (
        f"{path}: insecure (plaintext) conflicts with the TLS files ca_cert: "
        "remove one or the other"
    )


@pytest.mark.parametrize(
    ("given", "missing"), [("client_cert", "client_key"), ("client_key", "client_cert")]
)
def test_half_a_client_certificate_pair_is_refused(
    tmp_path: Path, given: str, missing: str
) -> None:
    text = MINIMAL.replace("insecure = true\n", "") + f'{given} = "x.pem"\n'
    path = write_toml(tmp_path / "c.toml", text)
    assert str(refusal(path)) == (
        f"{path}: mTLS needs both client_cert and client_key; {missing} is missing"
    )


def test_a_config_others_can_change_is_refused(tmp_path: Path) -> None:
    path = write_toml(tmp_path / "c.toml", MINIMAL)
    path.chmod(0o664)
    assert str(refusal(path)) == (
        f"{path}: permissions -rw-rw-r-- let others change where the hub credential is sent; "
        f"run: chmod 600 {path}"
    )
    path.chmod(0o644)  # readable is fine: the file holds no secret
    assert load_config(path)[0].hub == "127.0.0.1:50051"


# ---------------------------------------------------------------------------------- writing


def test_write_creates_a_private_directory_and_an_owner_only_file(tmp_path: Path) -> None:
    path = tmp_path / "new" / "sigshare" / "config.toml"
    write_config(path, full_config(tmp_path))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert sorted(p.name for p in path.parent.iterdir()) == ["config.toml"]  # no temp files


def test_write_leaves_an_existing_directory_mode_alone(tmp_path: Path) -> None:
    directory = tmp_path / "shared"
    directory.mkdir(mode=0o755)
    directory.chmod(0o755)
    write_config(directory / "config.toml", full_config(tmp_path))
    assert stat.S_IMODE(directory.stat().st_mode) == 0o755


def test_write_refuses_to_overwrite_unless_forced(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    write_config(path, full_config(tmp_path))
    before = path.read_bytes()
    changed = ClientConfig(
        hub="localhost:9", credential_file=tmp_path, secret_file=tmp_path, state_dir=tmp_path
    )
    with pytest.raises(ConfigError) as caught:
        write_config(path, changed)
    assert str(caught.value) == f"{path} already exists; use --force to replace it"
    assert type(caught.value) is ConfigError
    assert path.read_bytes() == before
    write_config(path, changed, force=True)
    assert load_config(path)[0] == changed
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_the_written_file_is_flat_and_commented(tmp_path: Path) -> None:
    text = render_config(full_config(tmp_path))
    assert text.startswith("# sigshare member client configuration")
    assert "version = 1\n" in text
    assert "timeout_seconds = 12.5\n" in text
    assert "[" not in text  # no tables


def test_constructing_an_invalid_config_raises_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="plaintext is allowed only to loopback"):
        ClientConfig(
            hub="192.0.2.1:1",
            credential_file=tmp_path,
            secret_file=tmp_path,
            state_dir=tmp_path,
            insecure=True,
        )


def test_ensure_state_dir_creates_mode_0700_once(tmp_path: Path) -> None:
    directory = tmp_path / "a" / "state"
    assert ensure_state_dir(directory) is True
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert ensure_state_dir(directory) is False
    (tmp_path / "file").write_text("")
    with pytest.raises(ConfigError, match="exists and is not a directory"):
        ensure_state_dir(tmp_path / "file")


# ---------------------------------------------------------------------------------- credential


def config_with_credential(tmp_path: Path, credential_file: Path) -> ClientConfig:
    return ClientConfig(
        hub="127.0.0.1:50051",
        credential_file=credential_file,
        secret_file=tmp_path / "forum.secret",
        state_dir=tmp_path / "state",
        insecure=True,
    )


def test_read_credential_strips_whitespace(tmp_path: Path) -> None:
    path = owner_only(tmp_path / "cred", f"\n  {CREDENTIAL}\r\n\n")
    assert read_credential(config_with_credential(tmp_path, path)) == CREDENTIAL


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o660, 0o602])
def test_read_credential_refuses_a_file_others_can_reach(tmp_path: Path, mode: int) -> None:
    path = owner_only(tmp_path / "cred", CREDENTIAL)
    path.chmod(mode)
    with pytest.raises(ConfigError) as caught:
        read_credential(config_with_credential(tmp_path, path))
    message = str(caught.value)
    assert message == (
        f"hub credential file {path}: permissions {stat.filemode(path.stat().st_mode)} let "
        f"others read the credential; run: chmod 600 {path}"
    )
    assert type(caught.value) is ConfigError
    assert CREDENTIAL not in message


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "is empty"),
        ("  \n", "is empty"),
        (f"{CREDENTIAL} {CREDENTIAL}", "must hold the credential alone"),
        (f"{CREDENTIAL}\x00", "must hold the credential alone"),
        (f"{CREDENTIAL}é", "not an ASCII credential"),
        (CREDENTIAL * 100, "too large to be a credential"),
    ],
)
def test_read_credential_refuses_bad_content_without_echoing_it(
    tmp_path: Path, content: str, message: str
) -> None:
    path = owner_only(tmp_path / "cred", content)
    with pytest.raises(ConfigError) as caught:
        read_credential(config_with_credential(tmp_path, path))
    assert message in str(caught.value)
    assert CREDENTIAL not in str(caught.value)
    assert "s3cr3t" not in str(caught.value)


def test_read_credential_refuses_missing_and_special_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        read_credential(config_with_credential(tmp_path, tmp_path / "absent"))
    with pytest.raises(ConfigError, match="not a regular file"):
        read_credential(config_with_credential(tmp_path, tmp_path))
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo, 0o600)
    with pytest.raises(ConfigError, match="not a regular file"):  # and does not hang
        read_credential(config_with_credential(tmp_path, fifo))


def test_hub_connection_carries_the_settings_and_hides_the_credential(tmp_path: Path) -> None:
    path = owner_only(tmp_path / "cred", CREDENTIAL + "\n")
    config = ClientConfig(
        hub="hub.example.org:443",
        credential_file=path,
        secret_file=tmp_path / "s",
        state_dir=tmp_path,
        ca_cert=tmp_path / "ca.pem",
        client_cert=tmp_path / "c.pem",
        client_key=tmp_path / "c.key",
    )
    connection = hub_connection(config)
    assert connection.target == "hub.example.org:443"
    assert connection.credential == CREDENTIAL
    assert (connection.ca_cert, connection.client_cert, connection.client_key) == (
        tmp_path / "ca.pem",
        tmp_path / "c.pem",
        tmp_path / "c.key",
    )
    assert connection.insecure is False
    assert CREDENTIAL not in repr(connection)
    assert CREDENTIAL not in repr(config)


def test_retries_and_timeout_map_onto_the_sdk(tmp_path: Path) -> None:
    config = full_config(tmp_path)
    assert retry_policy(config).attempts == 1  # retries = 0: one attempt
    assert timeouts(config).unary == 12.5
    assert retry_policy(parse_config(MINIMAL, tmp_path)).attempts == 6
