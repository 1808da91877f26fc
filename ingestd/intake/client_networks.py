"""Which clients may talk to the SMTP door at all: ``smtp.allowed_networks``."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from ingestd.networks import Network, address_in

REPLY_NOT_ALLOWED = b"554 5.7.1 Connections from %s are not accepted here\r\n"


class ClientNetworks:
    """The allowed networks; none given: every client is allowed."""

    def __init__(self, networks: Iterable[Network]) -> None:
        self._networks = tuple(networks)

    def allows(self, host: str) -> bool:
        if not self._networks:
            return True
        try:
            return address_in(ipaddress.ip_address(host), self._networks)
        except ValueError:
            return False
