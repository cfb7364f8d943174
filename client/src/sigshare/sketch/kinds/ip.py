"""IP addresses and the /24 (IPv4) or /48 (IPv6) networks that contain them.

``ip``: the canonical form is what :mod:`ipaddress` prints: dotted quad for IPv4, RFC 5952
compressed lower-case text for IPv6 (``2001:DB8:0:0::1`` becomes ``2001:db8::1``). An
IPv4-mapped IPv6 address (``::ffff:192.0.2.1``) is the IPv4 host it maps, so it becomes
``192.0.2.1``. Octets with leading zeros (``010.0.0.1``) are refused, as :mod:`ipaddress` does,
because tools disagree on whether they are octal. Zone ids (``fe80::1%eth0``) only make sense on
one host and CIDR notation names a network, so both are refused; brackets are refused too.

``ip_prefix``: the input is an address or a network (host bits allowed, ``strict=False``); the
canonical form is the containing /24 or /48 as ``198.51.100.0/24`` or ``2001:db8:1::/48``, the
usual granularity of an allocation to one customer. A network wider than that (``10.0.0.0/8``)
does not name one /24 and is refused with ``PREFIX_TOO_SHORT``. IPv4-mapped IPv6 addresses and
networks inside ``::ffff:0:0/96`` are treated as the IPv4 ones.
"""

from __future__ import annotations

import ipaddress
from typing import ClassVar

from sigshare.sketch.errors import RejectReason
from sigshare.sketch.kinds.base import Kind

IPV4_PREFIX = 24
IPV6_PREFIX = 48
_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def _unmap(network: IpNetwork) -> IpNetwork:
    """Return the IPv4 network an IPv4-mapped IPv6 network stands for, else ``network``."""
    if isinstance(network, ipaddress.IPv6Network) and network.subnet_of(_MAPPED):
        low_bits = int(network.network_address) & 0xFFFFFFFF
        return ipaddress.IPv4Network((low_bits, network.prefixlen - 96))
    return network


class IpKind(Kind):
    name: ClassVar[str] = "ip"
    code: ClassVar[int] = 3
    description: ClassVar[str] = (
        "IP address; canonical form: IPv4 dotted quad or compressed lower-case IPv6"
    )

    def _canonicalise(self, value: str) -> str:
        if "%" in value:
            raise self.reject(RejectReason.BAD_ADDRESS, "zone ids (after %) are not accepted")
        if "/" in value:
            raise self.reject(
                RejectReason.BAD_ADDRESS, "CIDR notation names a network; use the ip_prefix kind"
            )
        try:
            address = ipaddress.ip_address(value)
        except ValueError:
            raise self.reject(RejectReason.BAD_ADDRESS, "not an IPv4 or IPv6 address") from None
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(address)


class IpPrefixKind(Kind):
    name: ClassVar[str] = "ip_prefix"
    code: ClassVar[int] = 4
    description: ClassVar[str] = (
        "IP network; canonical form: the containing IPv4 /24 or IPv6 /48 in CIDR notation"
    )

    def _canonicalise(self, value: str) -> str:
        if "%" in value:
            raise self.reject(RejectReason.BAD_ADDRESS, "zone ids (after %) are not accepted")
        try:
            network = _unmap(ipaddress.ip_network(value, strict=False))
        except ValueError:
            raise self.reject(
                RejectReason.BAD_ADDRESS, "not an IPv4 or IPv6 address or CIDR network"
            ) from None
        target = IPV4_PREFIX if network.version == 4 else IPV6_PREFIX
        if network.prefixlen < target:
            raise self.reject(
                RejectReason.PREFIX_TOO_SHORT,
                f"network is wider than a /{target}, so it does not name a single /{target}",
            )
        return str(network.supernet(new_prefix=target))
