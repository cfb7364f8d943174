"""Registry of indicator kinds.

A new kind is one module with a :class:`Kind` subclass plus one line in ``KIND_TYPES``.
"""

from __future__ import annotations

from typing import Any

from sigshare.sketch.errors import UnknownKindError
from sigshare.sketch.kinds.base import MAX_RAW_LENGTH, BatchResult, Kind, canonicalise_batch
from sigshare.sketch.kinds.device_id import DeviceIdKind
from sigshare.sketch.kinds.domain import DomainKind
from sigshare.sketch.kinds.email import EmailKind
from sigshare.sketch.kinds.ip import IpKind, IpPrefixKind
from sigshare.sketch.kinds.payment import PaymentFingerprintKind
from sigshare.sketch.kinds.phone import PhoneKind
from sigshare.sketch.kinds.username import UsernameKind
from sigshare.sketch.kinds.wallet import WalletKind

KIND_TYPES: dict[str, type[Kind]] = {
    kind.name: kind
    for kind in (
        EmailKind,
        PhoneKind,
        IpKind,
        IpPrefixKind,
        DomainKind,
        PaymentFingerprintKind,
        DeviceIdKind,
        UsernameKind,
        WalletKind,
    )
}
KIND_NAMES: tuple[str, ...] = tuple(KIND_TYPES)
_BY_CODE: dict[int, type[Kind]] = {kind.code: kind for kind in KIND_TYPES.values()}
assert len(_BY_CODE) == len(KIND_TYPES), "kind wire codes must be unique"


def get_kind(name: str, **options: Any) -> Kind:
    """Return the kind called ``name``, configured with forum-wide ``options``."""
    try:
        kind_type = KIND_TYPES[name]
    except KeyError:
        raise UnknownKindError(name, list(KIND_NAMES)) from None
    return kind_type(**options)


def kind_name_for_code(code: int) -> str:
    """Name of the kind with wire code ``code`` (used by the byte formats)."""
    try:
        return _BY_CODE[code].name
    except KeyError:
        raise UnknownKindError(f"code {code}", list(KIND_NAMES)) from None


__all__ = [
    "KIND_NAMES",
    "KIND_TYPES",
    "MAX_RAW_LENGTH",
    "BatchResult",
    "Kind",
    "canonicalise_batch",
    "get_kind",
    "kind_name_for_code",
]
