"""Which clients may talk to the SMTP door at all: ``smtp.allowed_networks``."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from ingestd.config.listeners import Network

REPLY_NOT_ALLOWED = b"554 5.7.1 Connections from %s are not accepted here\r\n"


class ClientNetworks:
    """The allowed networks; none given: every client is allowed."""

    def __init__(self, networks: Iterable[Network]) -> None:
        self._networks = tuple(networks)

    def allows(self, host: str) -> bool:
        if not self._networks:
            return True
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        candidates: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = [address]
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            # A dual-stack socket reports an IPv4 client as ::ffff:a.b.c.d; the
            # admin wrote a.b.c.d/n.
            candidates.append(address.ipv4_mapped)
        return any(candidate in network for candidate in candidates
                   for network in self._networks if candidate.version == network.version)
