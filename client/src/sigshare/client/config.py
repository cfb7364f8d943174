"""The member client's configuration: one flat TOML file naming the hub, the files and the job.

The file holds settings and paths only — never the hub credential or the forum secret, which
stay in their own owner-only files. It lives at ``--config FILE``, else ``$SIGSHARE_CONFIG``,
else ``$XDG_CONFIG_HOME/sigshare/config.toml`` (``~/.config/sigshare/config.toml``). Relative
paths inside it resolve against the file's own directory, so a config directory can be moved or
mounted elsewhere as a whole.

Every problem is a :class:`ConfigError` whose message says what to change. Unknown keys are
refused rather than ignored: a misspelt ``insecure`` or ``ca_cert`` must not silently fall back
to a default that connects somewhere else, or differently, than the member meant.
"""

from __future__ import annotations

import math
import os
import stat
import tempfile
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from sigshare.client.errors import HubConfigError
from sigshare.client.hub_client import (
    HubClient,
    HubConnection,
    RetryPolicy,
    Timeouts,
    is_loopback,
    target_host,
)

CONFIG_ENV: Final = "SIGSHARE_CONFIG"
CONFIG_FILE_VERSION: Final = 1
CONFIG_DIR_MODE: Final = 0o700
CONFIG_FILE_MODE: Final = 0o600
STATE_DIR_MODE: Final = 0o700
REJECTS_FILE_NAME: Final = "rejects.jsonl"
MAX_CREDENTIAL_FILE_BYTES: Final = 4096
"""A bearer credential is well under 100 bytes; anything far larger is the wrong file."""
MAX_CONFIG_FILE_BYTES: Final = 1 << 20


class ConfigError(Exception):
    """The configuration, or a file it names, is missing or unusable. Never holds a credential."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True, slots=True)
class ClientConfig:
    """Everything the member client needs to reach the hub and run its job.

    Constructing one checks the invariants that do not depend on the file system (address
    shape, loopback-only plaintext, certificate pairs, positive job settings) and raises
    :class:`ConfigError`; reading the files it names happens where they are used.
    """

    hub: str
    """``HOST:PORT``, an IPv6 address as ``[ADDR]:PORT``."""
    credential_file: Path
    """The member's hub bearer credential, mode 0600."""
    secret_file: Path
    """The forum secret file, mode 0600 (:func:`sigshare.sketch.keys.load_secret_file`)."""
    state_dir: Path
    """Local state of the job (rejects, run records), mode 0700."""
    ca_cert: Path | None = None
    """PEM roots to trust for the hub's certificate; ``None`` uses gRPC's bundled public roots."""
    client_cert: Path | None = None
    client_key: Path | None = None
    """Both or neither: the client certificate chain and its key, for mTLS."""
    insecure: bool = False
    """Plaintext gRPC; allowed only to a loopback hub (127.0.0.0/8, ::1, localhost)."""
    rejects_file: Path | None = None
    """Where rows that fail validation are recorded; ``None``: ``state_dir/rejects.jsonl``
    (see :attr:`rejects_path`)."""
    timeout_seconds: float = 60.0
    """Deadline of one hub call (and the base deadline of a stream)."""
    retries: int = 5
    """Further attempts after a transient hub failure; 0 tries each call once."""
    prompt_family: str = "prompt"
    """The hub's MinHash family that prompt clusters are sketched for."""
    min_cluster_volume: int = 3
    """Smallest local prompt cluster worth sharing."""

    def __post_init__(self) -> None:
        try:
            host = target_host(self.hub)
        except HubConfigError as error:
            raise ConfigError(f"hub: {error.message}") from None
        if self.insecure:
            tls_files = {
                "ca_cert": self.ca_cert,
                "client_cert": self.client_cert,
                "client_key": self.client_key,
            }
            given = [name for name, path in tls_files.items() if path is not None]
            if given:
                raise ConfigError(
                    f"insecure (plaintext) conflicts with the TLS files {', '.join(given)}: "
                    "remove one or the other"
                )
            if not is_loopback(host):
                raise ConfigError(
                    f"insecure (plaintext) is refused for hub {self.hub}: plaintext is allowed "
                    "only to loopback (127.0.0.0/8, ::1, localhost); use TLS (ca_cert, or gRPC's "
                    "public roots)"
                )
        if (self.client_cert is None) != (self.client_key is None):
            missing = "client_key" if self.client_key is None else "client_cert"
            raise ConfigError(f"mTLS needs both client_cert and client_key; {missing} is missing")
        if not math.isfinite(self.timeout_seconds) or self.timeout_seconds <= 0:
            raise ConfigError("timeout_seconds must be a positive number of seconds")
        if self.retries < 0:
            raise ConfigError("retries must not be negative")
        if not self.prompt_family.strip():
            raise ConfigError("prompt_family must not be empty")
        if self.min_cluster_volume < 1:
            raise ConfigError("min_cluster_volume must be at least 1")

    @property
    def rejects_path(self) -> Path:
        """The rejects file in effect: :attr:`rejects_file`, else ``state_dir/rejects.jsonl``."""
        return (
            self.rejects_file
            if self.rejects_file is not None
            else (self.state_dir / REJECTS_FILE_NAME)
        )

    @property
    def transport(self) -> str:
        """A one-phrase description of how the hub is reached, for summaries."""
        if self.insecure:
            return "plaintext (loopback only)"
        roots = f"CA {self.ca_cert}" if self.ca_cert is not None else "gRPC's public roots"
        return f"mTLS, {roots}" if self.client_cert is not None else f"TLS, {roots}"


# ---------------------------------------------------------------------------------- locations


def _xdg_home(variable: str, fallback: tuple[str, ...]) -> Path:
    # The XDG spec says relative values are invalid and must be ignored.
    value = os.environ.get(variable, "")
    if value and os.path.isabs(value):
        return Path(value)
    return Path.home().joinpath(*fallback)


def default_config_path() -> Path:
    """``$SIGSHARE_CONFIG``, else ``$XDG_CONFIG_HOME/sigshare/config.toml``."""
    explicit = os.environ.get(CONFIG_ENV, "")
    if explicit:
        return _absolute(Path(explicit))
    return _xdg_home("XDG_CONFIG_HOME", (".config",)) / "sigshare" / "config.toml"


def default_state_dir() -> Path:
    """``$XDG_STATE_HOME/sigshare`` (``~/.local/state/sigshare``)."""
    return _xdg_home("XDG_STATE_HOME", (".local", "state")) / "sigshare"


def config_path(path: Path | None) -> Path:
    """The configuration file in effect: ``path`` if given, else :func:`default_config_path`."""
    return _absolute(path) if path is not None else default_config_path()


def _absolute(path: Path) -> Path:
    return Path(os.path.abspath(path.expanduser()))


# ---------------------------------------------------------------------------------- reading

_TOML_TYPE_NAMES: Final[Mapping[type, str]] = {
    str: "a string",
    bool: "a boolean",
    int: "an integer",
    float: "a float",
    list: "an array",
    dict: "a table",
}


def _type_name(value: object) -> str:
    return _TOML_TYPE_NAMES.get(type(value), f"a {type(value).__name__}")


class _Fields:
    """Typed access to the parsed document; every wrong type is a :class:`ConfigError`."""

    def __init__(self, document: Mapping[str, Any], base: Path) -> None:
        self._document = document
        self._base = base

    def _get(self, key: str, check: Callable[[object], bool], wanted: str) -> Any:
        value = self._document.get(key)
        if value is not None and not check(value):
            raise ConfigError(f"{key} must be {wanted}, not {_type_name(value)}")
        return value

    def string(self, key: str) -> str | None:
        value: str | None = self._get(key, lambda v: isinstance(v, str), "a string")
        return value

    def required_string(self, key: str) -> str:
        value = self.string(key)
        if value is None:
            raise ConfigError(f"{key} is missing")
        return value

    def path(self, key: str) -> Path | None:
        value = self.string(key)
        if value is None:
            return None
        if not value:
            raise ConfigError(f"{key} must not be an empty path")
        # Relative to the file's directory, not to wherever the command happens to run.
        return Path(os.path.abspath(self._base / Path(value).expanduser()))

    def required_path(self, key: str) -> Path:
        value = self.path(key)
        if value is None:
            raise ConfigError(f"{key} is missing")
        return value

    def boolean(self, key: str) -> bool | None:
        value: bool | None = self._get(key, lambda v: type(v) is bool, "true or false")
        return value

    def integer(self, key: str) -> int | None:
        value: int | None = self._get(key, lambda v: type(v) is int, "an integer")
        return value

    def number(self, key: str) -> float | None:
        value: int | float | None = self._get(key, lambda v: type(v) in (int, float), "a number")
        return None if value is None else float(value)


_KEYS: Final = frozenset(
    {
        "version",
        "hub",
        "credential_file",
        "secret_file",
        "state_dir",
        "ca_cert",
        "client_cert",
        "client_key",
        "insecure",
        "rejects_file",
        "timeout_seconds",
        "retries",
        "prompt_family",
        "min_cluster_volume",
    }
)


def _read_config_bytes(path: Path) -> bytes:
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        raise ConfigError(
            f"no configuration at {path}; run `sigshare init` to create one "
            f"(or point --config / ${CONFIG_ENV} at an existing file)"
        ) from None
    except PermissionError:
        raise ConfigError(f"{path}: permission denied") from None
    except OSError as error:
        raise ConfigError(f"{path}: cannot open ({error.strerror})") from None
    try:
        mode = os.fstat(descriptor).st_mode
        if stat.S_ISDIR(mode):
            raise ConfigError(f"{path}: is a directory, not a configuration file")
        if not stat.S_ISREG(mode):
            raise ConfigError(f"{path}: not a regular file")
        if mode & 0o022:
            # Whoever can edit the file can send the credential to a hub of their choosing.
            raise ConfigError(
                f"{path}: permissions {stat.filemode(mode)} let others change where the hub "
                f"credential is sent; run: chmod 600 {path}"
            )
        raw = os.read(descriptor, MAX_CONFIG_FILE_BYTES + 1)
    finally:
        os.close(descriptor)
    if len(raw) > MAX_CONFIG_FILE_BYTES:
        raise ConfigError(f"{path}: larger than {MAX_CONFIG_FILE_BYTES} bytes; not a config file")
    return raw


def parse_config(text: str, base: Path) -> ClientConfig:
    """A configuration from TOML ``text``, relative paths resolved against ``base``.

    Raises :class:`ConfigError` without naming a file; :func:`load_config` adds the path.
    """
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"not valid TOML: {error}") from None
    unknown = sorted(set(document) - _KEYS)
    if unknown:
        raise ConfigError(
            f"unknown setting{'s' if len(unknown) > 1 else ''} {', '.join(unknown)} "
            f"(known: {', '.join(sorted(_KEYS))})"
        )
    fields = _Fields(document, base)
    version = fields.integer("version")
    if version is not None and version != CONFIG_FILE_VERSION:
        raise ConfigError(
            f"configuration version {version} is not supported (this client reads version "
            f"{CONFIG_FILE_VERSION})"
        )
    # Settings left out of the file keep the dataclass defaults.
    job_settings: dict[str, Any] = {
        key: value
        for key, value in (
            ("insecure", fields.boolean("insecure")),
            ("timeout_seconds", fields.number("timeout_seconds")),
            ("retries", fields.integer("retries")),
            ("prompt_family", fields.string("prompt_family")),
            ("min_cluster_volume", fields.integer("min_cluster_volume")),
        )
        if value is not None
    }
    return ClientConfig(
        hub=fields.required_string("hub"),
        credential_file=fields.required_path("credential_file"),
        secret_file=fields.required_path("secret_file"),
        state_dir=fields.required_path("state_dir"),
        ca_cert=fields.path("ca_cert"),
        client_cert=fields.path("client_cert"),
        client_key=fields.path("client_key"),
        rejects_file=fields.path("rejects_file"),
        **job_settings,
    )


def load_config(path: Path | None = None) -> tuple[ClientConfig, Path]:
    """Read and check the configuration; returns it with the absolute path it came from.

    ``path`` is ``--config``; ``None`` falls back to ``$SIGSHARE_CONFIG`` and then the XDG
    location. Every failure is a :class:`ConfigError` naming the file.
    """
    location = config_path(path)
    raw = _read_config_bytes(location)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{location}: not UTF-8 text; not a sigshare configuration") from None
    try:
        return parse_config(text, location.parent), location
    except ConfigError as error:
        raise ConfigError(f"{location}: {error.message}") from None


# ---------------------------------------------------------------------------------- writing


def _toml_string(value: str, key: str) -> str:
    """A TOML basic string: quotes, backslashes and control characters escaped."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        # A path with bytes that are not UTF-8 (surrogate-escaped): TOML cannot hold it.
        raise ConfigError(f"{key} is not valid UTF-8 and cannot be written to TOML") from None
    pieces: list[str] = []
    for char in value:
        code = ord(char)
        if char == '"':
            pieces.append('\\"')
        elif char == "\\":
            pieces.append("\\\\")
        elif char == "\t":
            pieces.append("\\t")
        elif char == "\n":
            pieces.append("\\n")
        elif char == "\r":
            pieces.append("\\r")
        elif code < 0x20 or code == 0x7F:
            pieces.append(f"\\u{code:04X}")
        else:
            pieces.append(char)
    return '"' + "".join(pieces) + '"'


def render_config(config: ClientConfig) -> str:
    """The TOML text of ``config`` (absent optional paths are left out)."""
    lines = [
        "# sigshare member client configuration (written by `sigshare init`).",
        "# Settings and paths only: the hub credential and the forum secret stay in their own",
        "# mode-0600 files. Relative paths resolve against this file's directory.",
        f"version = {CONFIG_FILE_VERSION}",
        "",
        f"hub = {_toml_string(config.hub, 'hub')}",
        f"insecure = {'true' if config.insecure else 'false'}",
    ]
    paths: list[tuple[str, Path | None]] = [
        ("credential_file", config.credential_file),
        ("secret_file", config.secret_file),
        ("state_dir", config.state_dir),
        ("ca_cert", config.ca_cert),
        ("client_cert", config.client_cert),
        ("client_key", config.client_key),
        ("rejects_file", config.rejects_file),
    ]
    lines += [f"{key} = {_toml_string(str(path), key)}" for key, path in paths if path is not None]
    lines += [
        "",
        "# Nightly job",
        f"timeout_seconds = {float(config.timeout_seconds)!r}",
        f"retries = {int(config.retries)}",
        f"prompt_family = {_toml_string(config.prompt_family, 'prompt_family')}",
        f"min_cluster_volume = {int(config.min_cluster_volume)}",
    ]
    return "\n".join(lines) + "\n"


def _make_private_dir(directory: Path, mode: int) -> None:
    """Create ``directory`` (and missing parents); the directory itself gets exactly ``mode``."""
    if directory.is_dir():
        return
    directory.parent.mkdir(parents=True, exist_ok=True)
    try:
        directory.mkdir(mode=mode)
    except FileExistsError:
        if not directory.is_dir():
            raise
        return
    os.chmod(directory, mode)  # mkdir's mode is narrowed by the umask; this one is exact


def ensure_state_dir(directory: Path) -> bool:
    """Create the state directory with mode 0700; ``True`` if it was created now.

    An existing directory is left as it is (its mode is the owner's decision).
    """
    if directory.exists() and not directory.is_dir():
        raise ConfigError(f"state directory {directory} exists and is not a directory")
    existed = directory.is_dir()
    try:
        _make_private_dir(directory, STATE_DIR_MODE)
    except OSError as error:
        raise ConfigError(
            f"cannot create the state directory {directory}: {error.strerror}"
        ) from None
    return not existed


def write_config(path: Path, config: ClientConfig, *, force: bool = False) -> Path:
    """Write ``config`` to ``path`` atomically with mode 0600; returns the absolute path.

    A missing configuration directory is created with mode 0700. The file is written under a
    temporary name with mode 0600 from the start, then renamed into place, so a crash never
    leaves a half-written configuration. An existing file is kept unless ``force`` is set.
    """
    target = _absolute(path)
    body = render_config(config).encode("utf-8")
    if target.exists() and not force:
        raise ConfigError(f"{target} already exists; use --force to replace it")
    try:
        _make_private_dir(target.parent, CONFIG_DIR_MODE)
        descriptor, temporary = tempfile.mkstemp(prefix=".sigshare-config-", dir=target.parent)
    except OSError as error:
        raise ConfigError(f"cannot write {target}: {error.strerror}") from None
    try:
        os.fchmod(descriptor, CONFIG_FILE_MODE)
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(body)
            handle.flush()
            os.fsync(handle.fileno())
        if force:
            os.replace(temporary, target)
        else:
            # link() refuses an existing target: never clobber a file that appeared meanwhile.
            try:
                os.link(temporary, target)
            except FileExistsError:
                raise ConfigError(f"{target} already exists; use --force to replace it") from None
            finally:
                os.unlink(temporary)
    except OSError as error:
        raise ConfigError(f"cannot write {target}: {error.strerror}") from None
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)
    return target


# ---------------------------------------------------------------------------------- the hub


def read_credential(config: ClientConfig) -> str:
    """The member's bearer credential (:func:`read_credential_file`)."""
    return read_credential_file(config.credential_file)


def read_credential_file(path: Path) -> str:
    """The hub bearer credential in ``path``, refusing a file that group or others could read.

    Surrounding whitespace is stripped. No message ever contains the credential or any part of
    the file's content.
    """
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer before the type check refuses it.
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        raise ConfigError(f"hub credential file {path}: no such file") from None
    except PermissionError:
        raise ConfigError(f"hub credential file {path}: permission denied") from None
    except OSError as error:
        raise ConfigError(f"hub credential file {path}: cannot open ({error.strerror})") from None
    try:
        mode = os.fstat(descriptor).st_mode
        if not stat.S_ISREG(mode):
            raise ConfigError(f"hub credential file {path}: not a regular file")
        if mode & 0o077:
            raise ConfigError(
                f"hub credential file {path}: permissions {stat.filemode(mode)} let others read "
                f"the credential; run: chmod 600 {path}"
            )
        raw = os.read(descriptor, MAX_CREDENTIAL_FILE_BYTES + 1)
    finally:
        os.close(descriptor)
    if len(raw) > MAX_CREDENTIAL_FILE_BYTES:
        raise ConfigError(f"hub credential file {path}: too large to be a credential")
    try:
        credential = raw.decode("ascii").strip()
    except UnicodeDecodeError:
        raise ConfigError(f"hub credential file {path}: not an ASCII credential") from None
    if not credential:
        raise ConfigError(f"hub credential file {path}: is empty")
    if not all("!" <= char <= "~" for char in credential):
        raise ConfigError(
            f"hub credential file {path}: must hold the credential alone, one word of visible "
            "ASCII characters"
        )
    return credential


def hub_connection(config: ClientConfig) -> HubConnection:
    """The SDK's connection settings, with the credential read from its file."""
    return HubConnection(
        target=config.hub,
        credential=read_credential(config),
        ca_cert=config.ca_cert,
        client_cert=config.client_cert,
        client_key=config.client_key,
        insecure=config.insecure,
    )


def retry_policy(config: ClientConfig) -> RetryPolicy:
    """The SDK's retry policy: ``retries`` further attempts after the first."""
    return RetryPolicy(attempts=config.retries + 1)


def timeouts(config: ClientConfig) -> Timeouts:
    """The SDK's deadlines: ``timeout_seconds`` per call, and as the base of a stream's."""
    return Timeouts(unary=config.timeout_seconds, stream_base=config.timeout_seconds)


def hub_client(config: ClientConfig) -> HubClient:
    """The SDK client a command talks to the hub with: ``config``'s connection, retries and
    deadlines (close it, or use it as a context manager)."""
    return HubClient(hub_connection(config), retry=retry_policy(config), timeouts=timeouts(config))
