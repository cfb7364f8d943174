"""Test certificates made with ``cryptography``: a CA and leaf certificates it signs, written as
PEM files (private keys mode 0600) for the hub's and the members' TLS options; a forum's set of
them (:func:`issue_forum_pki`) and a hub serving TLS or mTLS with it (:func:`tls_hub`)."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from sqlalchemy import Engine

from sigshare.hub.rpc.app import build_hub
from sigshare.hub.rpc.server import TlsConfig, parse_listen

ORGANIZATION = "sigshare tests"


@dataclass(frozen=True)
class Issued:
    """A certificate and its private key, as PEM files."""

    cert: Path
    key: Path


def subject(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _write(
    directory: Path, stem: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey
) -> Issued:
    issued = Issued(cert=directory / f"{stem}.crt", key=directory / f"{stem}.key")
    issued.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    issued.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    issued.key.chmod(0o600)
    return issued


def issue_ca(
    directory: Path,
    stem: str,
    now: datetime,
    *,
    not_before: datetime | None = None,
    not_after: datetime | None = None,
) -> tuple[Issued, x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A self-signed CA named ``<stem> root``, valid from ``not_before`` (default: a day before
    ``now``) to ``not_after`` (default: 30 days after ``now``): its files
    ``<stem>.crt``/``<stem>.key``, its certificate and its key (to sign leaves)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = subject(f"{stem} root")
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1) if not_before is None else not_before)
        .not_valid_after(now + timedelta(days=30) if not_after is None else not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return _write(directory, stem, cert, key), cert, key


def issue_leaf(
    directory: Path,
    stem: str,
    *,
    issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey],
    usage: x509.ObjectIdentifier,
    not_before: datetime,
    not_after: datetime,
    san: list[x509.GeneralName] | None = None,
) -> Issued:
    """A certificate for common name ``stem`` signed by ``issuer`` (certificate, key), for
    ``usage`` (server or client authentication), with the subject alternative names ``san``."""
    issuer_cert, issuer_key = issuer
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject(stem))
        .issuer_name(issuer_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
    )
    if san:
        builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
    return _write(directory, stem, builder.sign(issuer_key, hashes.SHA256()), key)


@dataclass(frozen=True)
class ForumPki:
    """A forum's TLS material for a hub on loopback and one member, and a stranger's."""

    ca: Issued
    server: Issued
    """For 127.0.0.1 and localhost, signed by ``ca``."""
    client: Issued
    """The member's client certificate, signed by ``ca``."""
    expired_server: Issued
    """Like ``server``, but it expired a day before ``now``."""
    other_ca: Issued
    other_client: Issued
    """A well-formed client certificate from ``other_ca``: one the hub must not accept."""


def issue_forum_pki(directory: Path, now: datetime, *, member: str = "member") -> ForumPki:
    """A forum CA with a server certificate and a client certificate for ``member`` (valid from
    an hour before ``now`` for four weeks, so no check warns of their expiry), an expired server
    certificate, and an unrelated CA with a client certificate."""
    ca, ca_cert, ca_key = issue_ca(directory, "forum-ca", now)
    other_ca, other_cert, other_key = issue_ca(directory, "other-ca", now)
    start, end = now - timedelta(hours=1), now + timedelta(days=28)
    hub_names: list[x509.GeneralName] = [
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        x509.DNSName("localhost"),
    ]
    return ForumPki(
        ca=ca,
        server=issue_leaf(
            directory,
            "hub",
            issuer=(ca_cert, ca_key),
            usage=ExtendedKeyUsageOID.SERVER_AUTH,
            san=hub_names,
            not_before=start,
            not_after=end,
        ),
        expired_server=issue_leaf(
            directory,
            "hub-expired",
            issuer=(ca_cert, ca_key),
            usage=ExtendedKeyUsageOID.SERVER_AUTH,
            san=hub_names,
            not_before=now - timedelta(days=30),
            not_after=now - timedelta(days=1),
        ),
        client=issue_leaf(
            directory,
            member,
            issuer=(ca_cert, ca_key),
            usage=ExtendedKeyUsageOID.CLIENT_AUTH,
            not_before=start,
            not_after=end,
        ),
        other_ca=other_ca,
        other_client=issue_leaf(
            directory,
            "stranger",
            issuer=(other_cert, other_key),
            usage=ExtendedKeyUsageOID.CLIENT_AUTH,
            not_before=start,
            not_after=end,
        ),
    )


@contextmanager
def tls_hub(engine: Engine, pki: ForumPki, *, require_client_certificate: bool) -> Iterator[str]:
    """A started hub over ``engine`` on a free loopback port with ``pki``'s server certificate,
    requiring a client certificate from ``pki.ca`` if asked (mTLS); yields its target."""
    tls = TlsConfig(
        certificate=pki.server.cert,
        private_key=pki.server.key,
        client_ca=pki.ca.cert if require_client_certificate else None,
    )
    server = build_hub(engine, parse_listen("127.0.0.1:0"), tls=tls, max_workers=4)
    server.server.start()
    try:
        yield f"127.0.0.1:{server.port}"
    finally:
        server.stop(0)


def issuer(issued: Issued) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """The certificate and key of a CA's files, to sign more leaves with (:func:`issue_leaf`)."""
    key = serialization.load_pem_private_key(issued.key.read_bytes(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return x509.load_pem_x509_certificate(issued.cert.read_bytes()), key
