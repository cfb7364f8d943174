"""The member's TLS files, read and checked before gRPC is given them.

gRPC takes PEM bytes as they are and finds a bad file only when it connects: a CA file that is
garbage or a private key, or a client key of another certificate, then shows up as log lines on
stderr and an ``UNAVAILABLE`` call that looks worth retrying. This module parses the CA bundle,
the client certificate and its key with ``cryptography`` instead — PEM blocks, the key belongs to
the certificate, validity dates — and raises :class:`~sigshare.client.errors.HubTlsError` naming
the file, the problem and the fix. The SDK's channel, ``sigshare init`` and ``sigshare doctor``
all read the files through here, so each refuses a bad file the same way, before any call.
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID

from sigshare.client.errors import HubTlsError

EXPIRY_WARNING: Final = timedelta(days=14)
"""A certificate expiring sooner than this is worth a warning: renewal takes people."""
MAX_PEM_FILE_BYTES: Final = 4 << 20
"""Far above any CA bundle (the public roots are about 250 KiB); anything larger is the wrong
file."""

_PEM_BLOCK: Final = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----\r?\n.*?-----END \1-----", re.DOTALL)
_CA_FIX: Final = "set ca_cert (--ca-cert) to the forum CA's certificate, a PEM file"
_CLIENT_FIX: Final = (
    "set client_cert and client_key (--client-cert, --client-key) to the client certificate "
    "the forum issued you and its private key, PEM files"
)
_RENEW_FIX: Final = "ask the forum for a new client certificate"


@dataclass(frozen=True, slots=True)
class TlsWarning:
    """Something that works today but will not for long, or is less safe than it should be."""

    problem: str
    fix: str

    def __str__(self) -> str:
        return f"{self.problem}; {self.fix}"


@dataclass(frozen=True, slots=True)
class CertificateSummary:
    """What a person checking a certificate wants to see: who it names, who signed it, when."""

    subject: str
    issuer: str
    not_before: datetime
    not_after: datetime

    @classmethod
    def of(cls, certificate: x509.Certificate) -> CertificateSummary:
        return cls(
            subject=certificate.subject.rfc4514_string(),
            issuer=certificate.issuer.rfc4514_string(),
            not_before=certificate.not_valid_before_utc,
            not_after=certificate.not_valid_after_utc,
        )


@dataclass(frozen=True, slots=True)
class CaBundle:
    """A checked ``ca_cert`` file: the roots to trust for the hub's certificate."""

    path: Path
    pem: bytes
    certificates: tuple[CertificateSummary, ...]
    warnings: tuple[TlsWarning, ...]


@dataclass(frozen=True, slots=True)
class ClientIdentity:
    """A checked ``client_cert``/``client_key`` pair for mTLS: the key belongs to the
    certificate, which is valid now and made for client authentication."""

    certificate_path: Path
    key_path: Path
    chain_pem: bytes
    key_pem: bytes
    certificate: CertificateSummary
    warnings: tuple[TlsWarning, ...]


@dataclass(frozen=True, slots=True)
class TlsMaterial:
    """The PEM bytes for gRPC's channel credentials, each file read once and checked."""

    ca: CaBundle | None
    """``None``: gRPC's bundled public roots."""
    client: ClientIdentity | None
    """``None``: no client certificate (TLS without mTLS)."""

    @property
    def warnings(self) -> tuple[TlsWarning, ...]:
        return (self.ca.warnings if self.ca else ()) + (self.client.warnings if self.client else ())


def read_tls_material(
    ca_cert: Path | None,
    client_cert: Path | None,
    client_key: Path | None,
    *,
    now: datetime | None = None,
) -> TlsMaterial:
    """Read and check the TLS files a connection names; ``client_cert`` and ``client_key`` go
    together. Raises :class:`HubTlsError` for the first unusable file."""
    moment = now or datetime.now(UTC)
    if (client_cert is None) != (client_key is None):
        raise HubTlsError(
            "mTLS needs both a client certificate and its private key",
            fix="set both client_cert and client_key, or neither",
        )
    ca = read_ca_bundle(ca_cert, now=moment) if ca_cert is not None else None
    client = None
    if client_cert is not None and client_key is not None:
        client = read_client_identity(client_cert, client_key, now=moment)
    return TlsMaterial(ca=ca, client=client)


def read_ca_bundle(path: Path, *, now: datetime | None = None) -> CaBundle:
    """The certificates of a CA file: at least one, all parseable, at least one valid now, and
    no private key among them (a key there means the wrong file, or a CA key lying about)."""
    moment = now or datetime.now(UTC)
    what = "CA certificate"
    pem, _ = _read(path, what, _CA_FIX)
    blocks = _pem_blocks(pem)
    if any(label.endswith(b"PRIVATE KEY") for label, _ in blocks):
        raise HubTlsError(
            f"{what} {path}: holds a private key; a CA file holds certificates only",
            fix=f"{_CA_FIX}, and keep private keys out of it",
        )
    certificates = _certificates(path, what, blocks, _CA_FIX)
    if not certificates:
        raise HubTlsError(f"{what} {path}: {_no_certificate(blocks)}", fix=_CA_FIX)
    summaries = tuple(CertificateSummary.of(c) for c in certificates)
    current = [s for s in summaries if s.not_before <= moment <= s.not_after]
    if not current:
        raise HubTlsError(
            f"{what} {path}: {_not_valid_now(summaries, moment)}",
            fix=f"{_CA_FIX} (the forum's current one)",
        )
    warnings: list[TlsWarning] = []
    if len(current) < len(summaries):
        warnings.append(
            TlsWarning(
                f"{what} {path}: {len(summaries) - len(current)} of its {len(summaries)} "
                "certificates are not valid now",
                fix="remove the expired ones, or ask the forum for its current CA certificate",
            )
        )
    last = max(s.not_after for s in current)
    if last - moment < EXPIRY_WARNING:
        warnings.append(
            TlsWarning(
                f"{what} {path}: expires on {_day(last)}, {_in_days(last, moment)}",
                fix="ask the forum for its next CA certificate before then",
            )
        )
    return CaBundle(path=path, pem=pem, certificates=summaries, warnings=tuple(warnings))


def read_client_identity(
    certificate_path: Path, key_path: Path, *, now: datetime | None = None
) -> ClientIdentity:
    """A client certificate chain (leaf first; the file may hold its key as well) and its
    unencrypted private key: the key must be the leaf's, the leaf valid now and usable for
    client authentication. A key file others can read is a warning, not a refusal."""
    moment = now or datetime.now(UTC)
    what = "client certificate"
    chain_pem, _ = _read(certificate_path, what, _CLIENT_FIX)
    chain_blocks = _pem_blocks(chain_pem)
    certificates = _certificates(certificate_path, what, chain_blocks, _CLIENT_FIX)
    if not certificates:
        raise HubTlsError(
            f"{what} {certificate_path}: {_no_certificate(chain_blocks)}", fix=_CLIENT_FIX
        )
    leaf = certificates[0]
    summary = CertificateSummary.of(leaf)
    if moment < summary.not_before:
        raise HubTlsError(
            f"{what} {certificate_path}: not valid before {_day(summary.not_before)}",
            fix="check this machine's clock, or wait until the certificate is valid",
        )
    if summary.not_after < moment:
        raise HubTlsError(
            f"{what} {certificate_path}: expired on {_day(summary.not_after)}", fix=_RENEW_FIX
        )
    if not _for_client_authentication(leaf):
        raise HubTlsError(
            f"{what} {certificate_path}: is not for client authentication (its extended key "
            "usage lacks clientAuth), so the hub would refuse it",
            fix=f"{_RENEW_FIX}, made for client authentication",
        )

    key_pem, key_mode = _read(key_path, "client key", _CLIENT_FIX)
    key = _private_key(key_path, key_pem)
    if _public_der(key) != leaf.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ):
        raise HubTlsError(
            f"client key {key_path}: is not the private key of the client certificate "
            f"{certificate_path}",
            fix="set client_key to the key the certificate was issued for",
        )
    warnings: list[TlsWarning] = []
    if key_mode & 0o077:
        warnings.append(
            TlsWarning(
                f"client key {key_path} has permissions {stat.filemode(key_mode)}",
                fix=f"run: chmod 600 {key_path}",
            )
        )
    if summary.not_after - moment < EXPIRY_WARNING:
        warnings.append(
            TlsWarning(
                f"{what} {certificate_path}: expires on {_day(summary.not_after)}, "
                f"{_in_days(summary.not_after, moment)}",
                fix=f"{_RENEW_FIX} before then",
            )
        )
    return ClientIdentity(
        certificate_path=certificate_path,
        key_path=key_path,
        chain_pem=chain_pem,
        key_pem=key_pem,
        certificate=summary,
        warnings=tuple(warnings),
    )


# ---------------------------------------------------------------------------------- parsing


def _read(path: Path, what: str, fix: str) -> tuple[bytes, int]:
    """The file's bytes and mode; a missing, unreadable, special or oversized file is refused."""
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer before the type check refuses it.
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        raise HubTlsError(f"{what} {path}: no such file", fix=fix) from None
    except PermissionError:
        raise HubTlsError(
            f"{what} {path}: permission denied", fix="make it readable by this user"
        ) from None
    except OSError as error:
        raise HubTlsError(f"{what} {path}: cannot open ({error.strerror})", fix=fix) from None
    try:
        mode = os.fstat(descriptor).st_mode
        if not stat.S_ISREG(mode):
            raise HubTlsError(f"{what} {path}: not a regular file", fix=fix)
        raw = os.read(descriptor, MAX_PEM_FILE_BYTES + 1)
    except OSError as error:
        raise HubTlsError(f"{what} {path}: cannot read ({error.strerror})", fix=fix) from None
    finally:
        os.close(descriptor)
    if len(raw) > MAX_PEM_FILE_BYTES:
        raise HubTlsError(f"{what} {path}: too large to be a PEM file", fix=fix)
    return raw, mode


def _pem_blocks(pem: bytes) -> list[tuple[bytes, bytes]]:
    """Every ``-----BEGIN X-----`` … ``-----END X-----`` block as (label, block)."""
    return [(match.group(1), match.group(0)) for match in _PEM_BLOCK.finditer(pem)]


def _certificates(
    path: Path, what: str, blocks: list[tuple[bytes, bytes]], fix: str
) -> list[x509.Certificate]:
    certificates: list[x509.Certificate] = []
    for label, block in blocks:
        if label != b"CERTIFICATE":
            continue
        try:
            certificates.append(x509.load_pem_x509_certificate(block))
        except ValueError:
            raise HubTlsError(
                f"{what} {path}: certificate {len(certificates) + 1} is not a valid X.509 "
                "certificate",
                fix=fix,
            ) from None
    return certificates


def _no_certificate(blocks: list[tuple[bytes, bytes]]) -> str:
    if any(label.endswith(b"PRIVATE KEY") for label, _ in blocks):
        return "holds a private key but no certificate"
    if blocks:
        found = ", ".join(sorted({label.decode() for label, _ in blocks}))
        return f"holds no certificate (found PEM {found})"
    return "not a PEM certificate (no -----BEGIN CERTIFICATE----- block)"


def _private_key(path: Path, pem: bytes) -> PrivateKeyTypes:
    what = "client key"
    keys = [block for label, block in _pem_blocks(pem) if label.endswith(b"PRIVATE KEY")]
    if not keys:
        found = (
            "holds a certificate, not a private key"
            if b"CERTIFICATE" in pem
            else ("not a PEM private key (no -----BEGIN PRIVATE KEY----- block)")
        )
        raise HubTlsError(f"{what} {path}: {found}", fix=_CLIENT_FIX)
    try:
        return serialization.load_pem_private_key(keys[0], password=None)
    except TypeError:
        raise HubTlsError(
            f"{what} {path}: is encrypted with a passphrase; gRPC needs an unencrypted key",
            fix=f"decrypt a copy for this client: openssl pkey -in {path} -out NEW.key "
            "(then chmod 600 NEW.key)",
        ) from None
    except (ValueError, UnsupportedAlgorithm):
        raise HubTlsError(
            f"{what} {path}: cannot be read as a private key", fix=_CLIENT_FIX
        ) from None


def _public_der(key: PrivateKeyTypes) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _for_client_authentication(certificate: x509.Certificate) -> bool:
    try:
        usage = certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return True  # no restriction
    return any(
        oid in (ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE)
        for oid in usage
    )


def _not_valid_now(summaries: tuple[CertificateSummary, ...], now: datetime) -> str:
    if len(summaries) == 1:
        (only,) = summaries
        if now < only.not_before:
            return f"not valid before {_day(only.not_before)} (check this machine's clock)"
        return f"expired on {_day(only.not_after)}"
    return f"none of its {len(summaries)} certificates is valid now"


def _day(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def _in_days(moment: datetime, now: datetime) -> str:
    days = (moment - now) // timedelta(days=1)
    return "within a day" if days < 1 else f"in {days} day{'s' if days > 1 else ''}"
