"""Which addresses outbound requests may reach: the policy of the SSRF guard.

Every request to a URL someone configured (HTTP targets, `http` and `sync` steps,
providers' token, base and trigger URLs) goes through `cronlink.http_client`, which asks
`EgressPolicy.refusal` about every address before it connects to it. By default only
public addresses pass. `allow_private_networks` opens loopback, private, link-local and
carrier-grade NAT space (development, the sandbox); cloud metadata, multicast, unspecified
and reserved addresses stay refused unless their network is listed in `private_networks`.

The ranges are listed here rather than left to `ipaddress.is_global`: its tables were
wrong in some Python releases (CVE-2024-4032) and it does not say which kind an address
is; `is_global` only catches what the list leaves out.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address, ip_network
from typing import NamedTuple

from cronlink.errors import ConfigError

IPAddress = IPv4Address | IPv6Address
Network = IPv4Network | IPv6Network

ALLOW_PRIVATE_ENV = "CRONLINK_ALLOW_PRIVATE_NETWORKS"
PRIVATE_NETWORKS_ENV = "CRONLINK_PRIVATE_NETWORKS"
_FLAGS = {"1": True, "true": True, "yes": True, "on": True,
          "0": False, "false": False, "no": False, "off": False}  # fmt: skip


class Kind(NamedTuple):
    what: str
    private: bool
    """Opened by `allow_private_networks`; the others only by `private_networks`."""


_METADATA = Kind("a cloud metadata address", private=False)
_LOOPBACK = Kind("a loopback address", private=True)
_PRIVATE = Kind("a private address", private=True)
_LINK_LOCAL = Kind("a link-local address", private=True)
_SHARED = Kind("a carrier-grade NAT (shared) address", private=True)
_MULTICAST = Kind("a multicast address", private=False)
_UNSPECIFIED = Kind("the unspecified address", private=False)
_RESERVED = Kind("a reserved address", private=False)
_NOT_GLOBAL = Kind("not a globally routable address", private=False)

# The first match wins: the metadata services sit inside link-local and unique-local space.
_RANGES: tuple[tuple[Network, Kind], ...] = tuple(
    (ip_network(cidr), kind)
    for cidr, kind in (
        ("169.254.169.254/32", _METADATA),  # AWS, GCP, Azure, OpenStack, DigitalOcean
        ("169.254.170.2/32", _METADATA),  # AWS ECS task credentials
        ("100.100.100.200/32", _METADATA),  # Alibaba Cloud
        ("fd00:ec2::254/128", _METADATA),  # AWS over IPv6
        ("0.0.0.0/32", _UNSPECIFIED),
        ("::/128", _UNSPECIFIED),
        ("127.0.0.0/8", _LOOPBACK),
        ("::1/128", _LOOPBACK),
        ("10.0.0.0/8", _PRIVATE),
        ("172.16.0.0/12", _PRIVATE),
        ("192.168.0.0/16", _PRIVATE),
        ("fc00::/7", _PRIVATE),  # unique local
        ("fec0::/10", _PRIVATE),  # site-local, deprecated but still routed by some
        ("64:ff9b:1::/48", _PRIVATE),  # local-use NAT64
        ("100.64.0.0/10", _SHARED),
        ("169.254.0.0/16", _LINK_LOCAL),
        ("fe80::/10", _LINK_LOCAL),
        ("224.0.0.0/4", _MULTICAST),
        ("ff00::/8", _MULTICAST),
        ("0.0.0.0/8", _RESERVED),  # "this network"
        ("192.0.0.0/24", _RESERVED),
        ("192.0.2.0/24", _RESERVED),
        ("198.18.0.0/15", _RESERVED),
        ("198.51.100.0/24", _RESERVED),
        ("203.0.113.0/24", _RESERVED),
        ("240.0.0.0/4", _RESERVED),  # and the broadcast address
        ("::/8", _RESERVED),  # IPv4-compatible ::a.b.c.d among others
        ("100::/64", _RESERVED),
        ("2001:db8::/32", _RESERVED),
    )
)
_NAT64 = ip_network("64:ff9b::/96")
_LABEL = re.compile(r"(?!-)[A-Za-z0-9_-]{1,63}(?<!-)")
"""A host name's label (letters, digits, hyphens inside; `_` too, as some internal names
have; an internationalised name arrives here already in its `xn--` form)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class EgressPolicy:
    """Which non-public addresses outbound requests may reach (public ones always may)."""

    allow_private: bool = False
    networks: tuple[Network, ...] = ()
    """Networks reachable whatever their kind (`private_networks`)."""

    def refusal(self, address: IPAddress) -> str | None:
        """Why `address` may not be reached, with how to allow it; None when it may."""
        for reached in _reached(address):
            if any(reached in network for network in self.networks):
                continue
            kind = kind_of(reached)
            if kind is None or (kind.private and self.allow_private):
                continue
            what = kind.what if reached == address else f"it maps {reached}, {kind.what}"
            return f"{what}; {_HINT_PRIVATE if kind.private else _HINT_LISTED}"
        return None


LOOPBACK = EgressPolicy(networks=(IPv4Network("127.0.0.0/8"),))
"""IPv4 loopback and nothing else private: the demo's (and the tests') way to the sandbox."""

_HINT_PRIVATE = (
    f"set allow_private_networks = true in cronlink.toml (or {ALLOW_PRIVATE_ENV}=1), or add "
    "its network to private_networks, to allow it"
)
_HINT_LISTED = "add its network to private_networks in cronlink.toml to allow it"


def kind_of(address: IPAddress) -> Kind | None:
    """What kind of non-public address `address` is; None for a public one."""
    for network, kind in _RANGES:
        if address in network:
            return kind
    return None if address.is_global else _NOT_GLOBAL


def _reached(address: IPAddress) -> tuple[IPAddress, ...]:
    """The addresses a connection to `address` ends up at: the IPv4 address inside a
    mapped, NAT64, 6to4 or Teredo IPv6 address (every one must be allowed), else itself."""
    if not isinstance(address, IPv6Address):
        return (address,)
    if address.ipv4_mapped is not None:
        return (address.ipv4_mapped,)
    if address in _NAT64:
        return (IPv4Address(int(address) & 0xFFFFFFFF),)
    if address.sixtofour is not None:
        return (address.sixtofour,)
    if address.teredo is not None:
        return address.teredo
    return (address,)


def ip_literal(host: str) -> IPAddress | None:
    """The address `host` spells out, in any form the system resolver reads as one
    (`10.0.0.1`, `::1`, `fe80::1%eth0`, and the old `127.1`, `0177.0.0.1`, `0x7f000001`,
    `2130706433`); None for a name."""
    bare = host.strip("[]").rstrip(".")
    if ":" in bare:
        bare = bare.partition("%")[0]  # the zone of a link-local address
    try:
        return ip_address(bare)
    except ValueError:
        pass
    try:
        return IPv4Address(socket.inet_aton(bare))
    except OSError:
        return None


def host_refusal(host: str) -> str | None:
    """Why `host`, not an IP address, is no host name to resolve (a percent-encoded
    `%31%32%37.0.0.1`, a space, an empty label); None for a valid one. Such a host is
    refused before any resolver sees it: resolvers differ in what they make of it."""
    name = host[:-1] if host.endswith(".") else host
    if 0 < len(name) <= 253 and all(_LABEL.fullmatch(label) for label in name.split(".")):
        return None
    return "it is neither an IP address nor a valid host name"


def parse_networks(texts: Iterable[str]) -> tuple[Network, ...]:
    """`10.1.0.0/16`, `fd12::/64` or a single address; ValueError names a bad entry."""
    networks = []
    for text in texts:
        try:
            networks.append(ip_network(text.strip(), strict=False))
        except ValueError:
            raise ValueError(f"{text!r} is not an IP network like 10.1.0.0/16") from None
    return tuple(networks)


def policy_from(
    allow_private: bool, networks: Iterable[str], env: Mapping[str, str]
) -> EgressPolicy:
    """The policy of the file's two keys, each replaced by its environment variable
    (`CRONLINK_ALLOW_PRIVATE_NETWORKS=1`, `CRONLINK_PRIVATE_NETWORKS="10.1.0.0/16,…"`)."""
    flag = env.get(ALLOW_PRIVATE_ENV, "").strip().lower()
    if flag:
        if flag not in _FLAGS:
            raise ConfigError(f"{ALLOW_PRIVATE_ENV}: {flag!r} is not 1 or 0 (true or false)")
        allow_private = _FLAGS[flag]
    where, listed = "private_networks", env.get(PRIVATE_NETWORKS_ENV)
    if listed is not None:
        where, networks = PRIVATE_NETWORKS_ENV, listed.replace(",", " ").split()
    try:
        return EgressPolicy(allow_private=allow_private, networks=parse_networks(networks))
    except ValueError as error:
        raise ConfigError(f"{where}: {error}") from None
