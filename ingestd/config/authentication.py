"""Settings of sender authentication: which receiving MTAs' verdicts on a sender are believed."""

from __future__ import annotations

import ipaddress
from typing import Literal

from pydantic import BaseModel, ConfigDict, field_validator

from ingestd.networks import Network, address_in, parse_networks

AuthenticatedKind = Literal["agent", "user", "supplier"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SenderAuthentication(_Frozen):
    """Whether a From address must be proven (DMARC, or aligned DKIM) before it speaks for an
    agent, a user or a supplier. Off while ``require_for`` is empty: it needs the MTA's help."""

    # The authserv-ids (RFC 8601) of our own receiving MTAs, e.g. mx1.our-company.example.
    trusted_authserv_ids: tuple[str, ...] = ()
    # The addresses our MTAs connect to the SMTP listener from; anyone else could have
    # written the topmost Authentication-Results header themselves.
    trusted_relays: tuple[Network, ...] = ()
    require_for: tuple[AuthenticatedKind, ...] = ()
    # unknown: classified as an unknown sender (no user is made for it);
    # quarantine: held, reason unauthenticated-sender.
    on_fail: Literal["unknown", "quarantine"] = "unknown"
    # With no trusted Authentication-Results, check the DKIM signature ourselves (DNS).
    verify_dkim: bool = False
    # How long one DNS lookup of a DKIM key may take.
    dns_timeout_seconds: float = 5.0

    @field_validator("trusted_authserv_ids")
    @classmethod
    def _ids(cls, values: tuple[str, ...]) -> tuple[str, ...]:
        ids = []
        for value in values:
            text = value.strip().lower()
            if not text or any(ch.isspace() or ch in ";()\"" for ch in text):
                raise ValueError(f"{value!r} is not an authserv-id (a host name, as the MTA "
                                 "writes it first in Authentication-Results)")
            ids.append(text)
        return tuple(ids)

    @field_validator("trusted_relays", mode="before")
    @classmethod
    def _networks(cls, values: object) -> object:
        return parse_networks(values, strict=False)

    @field_validator("dns_timeout_seconds")
    @classmethod
    def _timeout(cls, value: float) -> float:
        if not 0.1 <= value <= 60:
            raise ValueError("must be between 0.1 and 60 seconds")
        return value

    @property
    def enabled(self) -> bool:
        return bool(self.require_for)

    def relay_trusted(self, peer: str | None) -> bool:
        """Whether an SMTP client at ``peer`` ("ip:port", "[v6]:port" or a bare ip) is ours."""
        address = peer_ip(peer)
        return address is not None and address_in(address, tuple(self.trusted_relays))


def peer_ip(peer: str | None) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The IP address of an SMTP peer as the inbound row stores it, or None."""
    text = (peer or "").strip()
    if not text:
        return None
    candidates = [text]
    if text.startswith("["):
        candidates.insert(0, text[1:].partition("]")[0])
    elif text.count(":") == 1:
        candidates.insert(0, text.partition(":")[0])
    elif text.count(":") > 1:
        # The SMTP listener stores an IPv6 client as "addr:port" without brackets: the
        # port comes off first ("::1:5000" is also a valid address on its own).
        candidates.insert(0, text.rpartition(":")[0])
    for candidate in candidates:
        try:
            address = ipaddress.ip_address(candidate)
        except ValueError:
            continue
        # An IPv4 client on a dual-stack socket is seen as ::ffff:a.b.c.d.
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            return address.ipv4_mapped
        return address
    return None


class AuthenticationSettings(_Frozen):
    """Mixed into the top-level settings."""

    sender_authentication: SenderAuthentication = SenderAuthentication()
