"""Email address helpers shared by intake, config, the directory and the action lists."""

from __future__ import annotations

from collections.abc import Iterable


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


def joined_addresses(addresses: Iterable[str]) -> str | None:
    """Addresses as an action's address columns store them: each once, ", " between.

    ``split_addresses`` reads them back whole: a comma inside a quoted local
    part (``"smith, j"@example.com``) is no separator. An address that would
    not read back whole (a quote without its partner swallows the commas
    after it) loses its quotes.
    """
    kept = (a if _scan(a) == ([a], True) else a.replace('"', "") for a in addresses)
    return ", ".join(dict.fromkeys(a for a in kept if a)) or None


def split_addresses(stored: str | None) -> list[str]:
    """The addresses of a stored list, split at the commas that separate them.

    A comma in a quoted string, a comment or angle brackets belongs to the
    address (RFC 5322 3.4): ``"smith, j"@x``, ``a@x (Smith, J)``, or
    ``"Smith, J" <j@x>`` as an outgoing action's ``to`` may hold it.
    """
    return [a.strip() for a in _scan(stored or "")[0] if a.strip()]


def _scan(text: str) -> tuple[list[str], bool]:
    """(the pieces between separating commas, whether every quote and bracket closed)."""
    found, start, quoted, escaped, depth = [], 0, False, False, 0
    for at, char in enumerate(text):
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif not quoted and char in "(<":
            depth += 1
        elif not quoted and char in ")>":
            depth = max(depth - 1, 0)
        elif char == "," and not quoted and depth == 0:
            found.append(text[start:at])
            start = at + 1
    found.append(text[start:])
    return found, not quoted and not escaped and depth == 0
