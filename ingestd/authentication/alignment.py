"""DMARC's relaxed identifier alignment: do two domains belong to one organisation?"""

from __future__ import annotations

from functools import lru_cache

from publicsuffixlist import PublicSuffixList


@lru_cache(maxsize=1)
def _suffixes() -> PublicSuffixList:
    # The list ships inside the package: no network, and loaded once.
    return PublicSuffixList()


def organisational_domain(domain: str) -> str | None:
    """The registrable part of ``domain`` (``mail.example.co.uk`` → ``example.co.uk``);
    None for a public suffix itself (``co.uk``), which no one can authenticate for."""
    text = domain.strip().rstrip(".").lower()
    if not text:
        return None
    registrable: str | None = _suffixes().privatesuffix(text)
    return registrable


def aligned(signed: str | None, author: str | None) -> bool:
    """Relaxed alignment (RFC 7489 3.1): equal, or sharing the organisational domain."""
    if not signed or not author:
        return False
    signed, author = signed.rstrip(".").lower(), author.rstrip(".").lower()
    if signed == author:
        return organisational_domain(author) is not None
    organisation = organisational_domain(author)
    return organisation is not None and organisation == organisational_domain(signed)
