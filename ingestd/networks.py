"""IP networks in settings (``smtp.allowed_networks``, ``trusted_relays``) and whether a
client's address is in them."""

from __future__ import annotations

import ipaddress

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(values: object, *, strict: bool) -> object:
    """A settings list of addresses / CIDR networks as networks (a pydantic ``before``
    validator's work); anything but a list is left for pydantic to refuse.

    ``strict``: host bits set ("10.0.0.1/8") is an error, not 10.0.0.0/8.
    """
    if not isinstance(values, list | tuple):
        return values
    networks = []
    for value in values:
        try:
            networks.append(ipaddress.ip_network(str(value).strip(), strict=strict))
        except ValueError as exc:
            raise ValueError(f"{value!r} is not an IP address or CIDR network ({exc})") from exc
    return tuple(networks)


def address_in(address: Address, networks: tuple[Network, ...]) -> bool:
    """``address`` in one of ``networks``; an IPv4 client seen on a dual-stack socket as
    ::ffff:a.b.c.d matches the a.b.c.d/n the admin wrote."""
    candidates: list[Address] = [address]
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        candidates.append(address.ipv4_mapped)
    return any(candidate in network for candidate in candidates
               for network in networks if candidate.version == network.version)
