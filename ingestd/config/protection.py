"""Settings of the built-in protection against auto-replies and our own mail coming back."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ingestd.addresses import normalise_address
from ingestd.config.sales import domain_list


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class AutoReplies(_Frozen):
    """Per mailbox: what an auto-reply (out of office, autoresponder) may do."""

    # true: an auto-reply with no ticket of its own opens one (off: it is ignored).
    open_tickets: bool = False
    # true: mailing-list headers (Precedence: list, List-Id, List-Unsubscribe) count too.
    list_headers: bool = False


class RateLimit(_Frozen):
    """Per mailbox: mail from one address beyond this many within the window is held
    (quarantined, ``loop``). Tickets and actions alike count: an auto-reply ping-pong on
    one ticket adds actions, not tickets. Agents are not limited."""

    new_tickets: int = Field(default=20, ge=1, le=100_000)
    per_seconds: int = Field(default=3600, ge=1, le=30 * 86_400)


ClosedTicketPolicy = Literal["reopen", "new_ticket", "reject"]
UnrelatedSenderPolicy = Literal["accept", "new_ticket", "hold"]


class OwnMail(_Frozen):
    """Mixed into the top-level settings: how our own mail is recognised when it comes back."""

    own_addresses: tuple[str, ...] = ()
    own_message_id_domains: tuple[str, ...] = ()

    @field_validator("own_addresses")
    @classmethod
    def _addresses(cls, values: tuple[str, ...]) -> tuple[str, ...]:
        for value in values:
            if value.count("@") != 1:
                raise ValueError(f"{value!r} is not an email address")
        return tuple(normalise_address(v) for v in values)

    @field_validator("own_message_id_domains")
    @classmethod
    def _domains(cls, values: tuple[str, ...]) -> tuple[str, ...]:
        return domain_list(values)
