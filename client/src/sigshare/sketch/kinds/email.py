"""E-mail addresses: canonical form is ``local@domain`` with a lower-case local part.

The local part is NFC-normalised and lower-cased with ``str.lower()`` (mailbox names are
case-insensitive in practice at every large provider); the domain is canonicalised by
:func:`sigshare.sketch.kinds.domain.canonical_domain`, so ``Alice@BÜCHER.de`` becomes
``alice@xn--bcher-kva.de``. Only the unquoted dot-atom syntax is accepted: exactly one ``@``,
no white space, control, invisible formatting or RFC 5322 special characters, no leading,
trailing or doubled dot; quoted local parts (``"a b"@x.com``) are refused as unsupported rather
than guessed at. The local part is at most 64 UTF-8 octets and the address at most 254 octets
(RFC 5321, measured on the lower-cased local part and the A-label domain).

With the forum-wide option ``provider_rules=True`` addresses that a provider delivers to the same
mailbox are merged. The table is deliberately short, limited to documented behaviour, and
matches the exact domain only (not country variants such as ``hotmail.co.uk``):

=================================================  =======================================
domain                                             rule
=================================================  =======================================
gmail.com, googlemail.com                          drop ``+tag``, remove dots; googlemail.com
                                                   becomes gmail.com
outlook.com, hotmail.com, live.com                 drop ``+tag``
icloud.com, me.com                                 drop ``+tag``
fastmail.com                                       drop ``+tag``
proton.me, protonmail.com                          drop ``+tag``
=================================================  =======================================

Yahoo's ``-`` disposable addresses use a separately chosen base name that cannot be derived
from the address, so they are left alone. The tag is kept when the part before ``+`` would not
be a valid local part on its own (empty, or ending with a dot), so the form stays idempotent.
"""

from __future__ import annotations

import re
import unicodedata
from typing import ClassVar

from sigshare.sketch.errors import RejectReason
from sigshare.sketch.kinds.base import Kind
from sigshare.sketch.kinds.domain import DomainError, canonical_domain

MAX_LOCAL_OCTETS = 64
MAX_ADDRESS_OCTETS = 254
_SPECIALS = frozenset('"(),:;<>[\\]')
_REFUSED_CATEGORIES = frozenset({"Cc", "Cf", "Cs"})
_ASCII_LOCAL = re.compile(r"[!#-\'*-+\-./0-9=?-Z^-~]+")
"""Printable ASCII without white space and the specials above: the common case, checked in one
match instead of a Unicode category lookup per character (ASCII has no Cf or Cs characters)."""

_DOTS_IGNORED = frozenset({"gmail.com"})
_PLUS_TAG_DOMAINS = frozenset(
    {
        "gmail.com",
        "outlook.com",
        "hotmail.com",
        "live.com",
        "icloud.com",
        "me.com",
        "fastmail.com",
        "proton.me",
        "protonmail.com",
    }
)
_DOMAIN_ALIASES = {"googlemail.com": "gmail.com"}


def _apply_provider_rules(local: str, domain: str) -> tuple[str, str]:
    domain = _DOMAIN_ALIASES.get(domain, domain)
    if domain in _DOTS_IGNORED:
        local = local.replace(".", "")
    base = local.partition("+")[0]
    # Keep the tag when the base alone would not be a valid local part (empty, trailing dot).
    if domain in _PLUS_TAG_DOMAINS and base and not base.endswith("."):
        local = base
    return local, domain


class EmailKind(Kind):
    name: ClassVar[str] = "email"
    code: ClassVar[int] = 1
    description: ClassVar[str] = (
        "E-mail address; canonical form: lower-case local part @ lower-case A-label domain"
    )

    def __init__(self, *, provider_rules: bool = False) -> None:
        self.provider_rules = provider_rules

    def _canonicalise(self, value: str) -> str:
        if value.startswith('"'):
            raise self.reject(RejectReason.BAD_SYNTAX, "quoted local parts are not supported")
        at_signs = value.count("@")
        if at_signs != 1:
            detail = "has no @ separator" if at_signs == 0 else "has more than one @"
            raise self.reject(RejectReason.BAD_SYNTAX, detail)
        raw_local, _, raw_domain = value.partition("@")
        if raw_local.isascii():  # NFC is the identity on ASCII
            local = raw_local.lower()
        else:
            local = unicodedata.normalize("NFC", unicodedata.normalize("NFC", raw_local).lower())
        self._check_local(local)
        try:
            domain = canonical_domain(raw_domain)
        except DomainError as error:
            raise self.reject(RejectReason.BAD_DOMAIN, f"domain part {error}") from None
        if len(local.encode()) + 1 + len(domain) > MAX_ADDRESS_OCTETS:
            raise self.reject(RejectReason.TOO_LONG, f"longer than {MAX_ADDRESS_OCTETS} octets")
        if self.provider_rules:
            local, domain = _apply_provider_rules(local, domain)
        return f"{local}@{domain}"

    def _check_local(self, local: str) -> None:
        if not local:
            raise self.reject(RejectReason.BAD_SYNTAX, "local part before @ is empty")
        if not (local.isascii() and _ASCII_LOCAL.fullmatch(local)) and any(
            char.isspace() or char in _SPECIALS or unicodedata.category(char) in _REFUSED_CATEGORIES
            for char in local
        ):
            raise self.reject(
                RejectReason.BAD_CHARACTERS,
                "local part contains white space, control, invisible or special characters",
            )
        if local.startswith(".") or local.endswith(".") or ".." in local:
            raise self.reject(
                RejectReason.BAD_SYNTAX, "local part has a leading, trailing or doubled dot"
            )
        if len(local.encode()) > MAX_LOCAL_OCTETS:
            raise self.reject(
                RejectReason.TOO_LONG, f"local part is longer than {MAX_LOCAL_OCTETS} octets"
            )
