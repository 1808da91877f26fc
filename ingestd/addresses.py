"""Email address helpers shared by intake, config and the directory."""

from __future__ import annotations


def normalise_address(address: str) -> str:
    """Lower-case an address and strip surrounding angle brackets and space."""
    address = address.strip()
    if address.startswith("<") and address.endswith(">"):
        address = address[1:-1].strip()
    return address.lower()


def base_address(address: str) -> str:
    """The address without its ``+detail`` sub-address: ``a+x@b`` → ``a@b``."""
    address = normalise_address(address)
    local, at, domain = address.rpartition("@")
    if not at:
        return address
    local = local.split("+", 1)[0]
    return f"{local}@{domain}"


def domain_of(address: str) -> str:
    return normalise_address(address).rpartition("@")[2]
