"""Domain names: canonical form is the lower-case ASCII (A-label, punycode) name, no trailing dot.

The value is mapped with UTS #46 (case folding, width folding, ideographic full stops become
``.``) using STD3 rules, then encoded with IDNA 2008 by the ``idna`` package. ``BÜCHER.de``,
``bücher.de.`` and ``xn--bcher-kva.de`` all become ``xn--bcher-kva.de``: members that received
the Unicode form and members that received the punycode form produce the same string.

Refused (all ``BAD_DOMAIN``): IP literals (use the ``ip`` kind), a numeric last label (browsers
read such names as IPv4 addresses), a single label such as ``localhost``, empty labels, labels
longer than 63 octets, names longer than 253 octets, and anything IDNA 2008 disallows (including
``_`` and other non-LDH ASCII, so URLs and e-mail addresses are refused rather than guessed at).

:func:`canonical_domain` is the one implementation; the ``email`` kind reuses it for the part
after ``@``.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from typing import ClassVar

import idna

from sigshare.sketch.errors import RejectReason
from sigshare.sketch.kinds.base import Kind

MAX_LABEL_OCTETS = 63
MAX_NAME_OCTETS = 253


class DomainError(ValueError):
    """A value is not a domain name. The message says why and never contains the value."""


def _is_ip_literal(value: str) -> bool:
    try:
        ipaddress.ip_address(value.removeprefix("[").removesuffix("]"))
    except ValueError:
        return False
    return True


def _a_label_length(label: str) -> int:
    """Octets of the A-label ``idna`` would produce (it uses the same Punycode codec)."""
    return len(label) if label.isascii() else len("xn--") + len(label.encode("punycode"))


_LDH_NAME = re.compile(
    r"(?=.{1,253}$)(?:(?!-)(?![a-z0-9-]{2}--)[a-z0-9-]{1,63}(?<!-)\.)+"
    r"(?!-)(?![a-z0-9-]{2}--)(?=[a-z0-9-]*[a-z-])[a-z0-9-]{1,63}(?<!-)"
)
"""Lower-case LDH names whose labels need no IDNA processing: no leading or trailing hyphen, no
``--`` in positions 3-4 (which would make ``xn--`` labels, to be decoded and checked), at least
two labels, a last label that is not all digits. For these, IDNA 2008 with UTS #46 is the
identity after lower-casing — and it costs ~50 µs per name, the bulk of canonicalising an
e-mail address."""


@functools.lru_cache(maxsize=1 << 16)
def canonical_domain(value: str) -> str:
    """Return the lower-case A-label form of ``value`` or raise :class:`DomainError`.

    Cached: the domains of a member's e-mail addresses repeat heavily.
    """
    if value.isascii():
        lowered = value.lower().removesuffix(".")
        if _LDH_NAME.fullmatch(lowered):
            return lowered
    return _canonical_domain_idna(value)


def _canonical_domain_idna(value: str) -> str:
    if _is_ip_literal(value):
        raise DomainError("is an IP address literal, not a name")
    try:
        mapped = idna.uts46_remap(value, std3_rules=True)
    except idna.IDNAError:
        raise DomainError("contains characters that are not allowed in a domain name") from None
    mapped = mapped.removesuffix(".")
    labels = mapped.split(".")
    if any(not label for label in labels):
        raise DomainError("has an empty label")
    if len(labels) < 2:
        raise DomainError("is a single label; a registrable domain name needs at least one dot")
    lengths = [_a_label_length(label) for label in labels]
    if max(lengths) > MAX_LABEL_OCTETS:
        raise DomainError(f"has a label longer than {MAX_LABEL_OCTETS} octets")
    if sum(lengths) + len(lengths) - 1 > MAX_NAME_OCTETS:
        raise DomainError(f"is longer than {MAX_NAME_OCTETS} octets")
    if labels[-1].isascii() and labels[-1].isdigit():
        raise DomainError("has a numeric last label, so it would be read as an IP address")
    try:
        encoded = idna.encode(mapped, uts46=True, std3_rules=True)
    except idna.IDNAError:
        raise DomainError("is not a valid IDNA 2008 domain name") from None
    return encoded.decode("ascii").lower()


class DomainKind(Kind):
    name: ClassVar[str] = "domain"
    code: ClassVar[int] = 5
    description: ClassVar[str] = (
        "Domain name; canonical form: lower-case IDNA 2008 A-label (punycode), no trailing dot"
    )

    def _canonicalise(self, value: str) -> str:
        try:
            return canonical_domain(value)
        except DomainError as error:
            raise self.reject(RejectReason.BAD_DOMAIN, f"domain {error}") from None
