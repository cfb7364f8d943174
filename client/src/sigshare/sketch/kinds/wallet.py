"""Cryptocurrency wallet addresses, in the canonical spelling of their encoding.

* EVM (Ethereum and compatible chains): ``0x`` + 40 hex digits, lower-cased. The EIP-55
  mixed-case checksum is a spelling of the same address, so it is dropped (``0X`` accepted).
* Bitcoin bech32/bech32m (BIP-173/BIP-350), ``bc1…`` mainnet and ``tb1…`` testnet: lower-cased.
  These are case-insensitive but must not mix case, so a mixed-case spelling is refused.
* Base58 (Bitcoin legacy ``1…``/``3…``, Solana, Tron ``T…`` and similar): 25 to 64 characters of
  the Bitcoin Base58 alphabet, case preserved since Base58 is case-sensitive.

Anything else is ``BAD_SYNTAX``. Checksums (EIP-55, bech32, Base58Check) are not verified: the
goal is one spelling per address, not proof that an address exists, and a mistyped address
only fails to match. Members who want that assurance validate before submitting.
"""

from __future__ import annotations

import re
from typing import ClassVar

from sigshare.sketch.errors import RejectReason
from sigshare.sketch.kinds.base import Kind

_EVM = re.compile(r"0[xX][0-9a-fA-F]{40}")
# hrp "bc"/"tb", separator "1", then 6..87 data characters: 90 characters in all (BIP-173).
_BECH32 = re.compile(r"(?:bc|tb)1[qpzry9x8gf2tvdw0s3jn54khce6mua7l]{6,87}")
_BECH32_ANY_CASE = re.compile(_BECH32.pattern, re.IGNORECASE)
_BASE58 = re.compile(r"[1-9A-HJ-NP-Za-km-z]{25,64}")


class WalletKind(Kind):
    name: ClassVar[str] = "wallet"
    code: ClassVar[int] = 9
    description: ClassVar[str] = (
        "Crypto wallet address; canonical form: lower-case EVM 0x or bech32, Base58 as issued"
    )

    def _canonicalise(self, value: str) -> str:
        if _EVM.fullmatch(value):
            return "0x" + value[2:].lower()
        if _BECH32_ANY_CASE.fullmatch(value):
            if value in (value.lower(), value.upper()):
                return value.lower()
            if not _BASE58.fullmatch(value):
                raise self.reject(
                    RejectReason.BAD_SYNTAX, "bech32 address mixes upper and lower case"
                )
        if _BASE58.fullmatch(value):
            return value
        raise self.reject(
            RejectReason.BAD_SYNTAX, "not an EVM (0x...), bech32 (bc1.../tb1...) or Base58 address"
        )
