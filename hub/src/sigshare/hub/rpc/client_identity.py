"""Binding a client certificate to the principal whose bearer credential rides on it (mTLS).

With ``serve --client-ca`` every client proves two things: a certificate the forum's CA signed
(checked in the TLS handshake) and a bearer credential (checked by the interceptor). Without a
binding, one member's credential would be accepted over another member's certificate. The
policy decides whether the certificate may carry the principal's credential:

- by default, the certificate's subject common name or one of its DNS or URI subject
  alternative names equals the principal's name;
- with a map file (``serve --client-identity-map FILE``), only the map counts: a JSON object
  from certificate identities to a principal name or a list of them. Identities are written
  ``subject:<subject as gRPC renders it, e.g. CN=acme-gw,O=Acme>``, ``cn:<common name>``,
  ``dns:<DNS SAN>`` or ``uri:<URI SAN>``; the certificate may carry the credentials of every
  principal any of its identities maps to.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from sigshare.hub.domain import is_valid_name
from sigshare.hub.errors import InvalidArgumentError

IDENTITY_KINDS = ("subject", "cn", "dns", "uri")
MAX_MAP_BYTES = 1 << 20


@dataclass(frozen=True, slots=True)
class CertificateIdentity:
    """What the TLS layer verified about the client's certificate."""

    subject: tuple[str, ...] = ()
    common_names: tuple[str, ...] = ()
    dns_names: tuple[str, ...] = ()
    uris: tuple[str, ...] = ()

    def identities(self) -> tuple[str, ...]:
        """Every identity in the map file's notation, in a stable order."""
        return (
            *(f"subject:{v}" for v in self.subject),
            *(f"cn:{v}" for v in self.common_names),
            *(f"dns:{v}" for v in self.dns_names),
            *(f"uri:{v}" for v in self.uris),
        )


@dataclass(frozen=True, slots=True)
class ClientIdentityPolicy:
    """Which principals a client certificate may act for (see the module's docstring)."""

    mapping: Mapping[str, frozenset[str]] | None = None
    """Identity → principal name; ``None``: the certificate's own names (the default rule)."""

    def allows(self, certificate: CertificateIdentity, principal: str) -> bool:
        if self.mapping is None:
            names = {*certificate.common_names, *certificate.dns_names, *certificate.uris}
            return principal in names
        return any(principal in self.mapping.get(i, ()) for i in certificate.identities())

    @classmethod
    def from_file(cls, path: Path) -> ClientIdentityPolicy:
        """Read a map file; :class:`InvalidArgumentError` naming the file and the bad entry."""
        try:
            with path.open("rb") as stream:
                raw = stream.read(MAX_MAP_BYTES + 1)
        except OSError as error:
            raise InvalidArgumentError(f"cannot read the client identity map: {error}") from None
        if len(raw) > MAX_MAP_BYTES:
            raise InvalidArgumentError(f"{path}: the client identity map exceeds 1 MiB")
        try:
            document = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as error:
            raise InvalidArgumentError(f"{path} is not JSON: {error}") from None
        if not isinstance(document, dict) or not document:
            raise InvalidArgumentError(
                f"{path}: expected a non-empty JSON object of identity → principal name"
            )
        mapping: dict[str, frozenset[str]] = {}
        for identity, target in document.items():
            kind, separator, value = identity.partition(":")
            if not separator or kind not in IDENTITY_KINDS or not value:
                kinds = ", ".join(f"{k}:" for k in IDENTITY_KINDS)
                raise InvalidArgumentError(
                    f"{path}: identity {identity!r} must start with one of {kinds}"
                )
            names = [target] if isinstance(target, str) else target
            if (
                not isinstance(names, list)
                or not names
                or not all(isinstance(n, str) and is_valid_name(n) for n in names)
            ):
                raise InvalidArgumentError(
                    f"{path}: {identity!r} maps to {target!r}, not a principal name or a "
                    "list of them"
                )
            mapping[identity] = frozenset(names)
        return cls(mapping=mapping)
