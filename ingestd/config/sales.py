"""Settings of sales mailboxes: opportunity matching, My Inbox, and whose domains are whose.

Separate from ``settings.py`` because only sales mailboxes (Halo's agents'
own mailboxes) use them; ``settings`` imports these models into the shape of
``ingestd.yaml``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

# Domains anyone can have an address at: a shared domain says nothing about
# which customer wrote, so it never matches by domain.
DEFAULT_FREE_MAIL_DOMAINS = (
    "gmail.com", "googlemail.com", "outlook.com", "hotmail.com", "live.com", "msn.com",
    "yahoo.com", "icloud.com", "me.com", "aol.com", "gmx.com", "gmx.de", "web.de",
    "proton.me", "protonmail.com", "yandex.com", "mail.com",
)


class Matching(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    # false: unmatched mail waits in the owner's My Inbox instead of making tickets.
    enabled: bool = True
    type: Literal["address_and_subject", "domain"] = "address_and_subject"
    # The ticket type matched, and made when nothing matches; absent: the
    # mailbox's ticket_type.
    match_to: str | None = Field(default=None, min_length=1, max_length=64)


def domain_list(values: tuple[str, ...]) -> tuple[str, ...]:
    """Lower-case domains without a leading ``@`` or trailing dot; each must look like one."""
    domains = []
    for value in values:
        domain = value.strip().lstrip("@").rstrip(".").lower()
        if not domain or "." not in domain or any(ch.isspace() or ch == "@" for ch in domain):
            raise ValueError(f"{value!r} is not a domain")
        domains.append(domain)
    return tuple(dict.fromkeys(domains))


class DomainLists(BaseModel):
    """Mixed into the top-level settings: the two domain lists domain matching consults."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # Our own domains: mail from a colleague never matches a customer's opportunity.
    agent_domains: tuple[str, ...] = ()
    free_mail_domains: tuple[str, ...] = DEFAULT_FREE_MAIL_DOMAINS

    @field_validator("agent_domains", "free_mail_domains")
    @classmethod
    def _domains(cls, values: tuple[str, ...]) -> tuple[str, ...]:
        return domain_list(values)
