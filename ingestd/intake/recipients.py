"""Which configured mailbox an envelope recipient belongs to."""

from __future__ import annotations

from dataclasses import dataclass

from ingestd.addresses import base_address
from ingestd.config.settings import IngestdSettings


@dataclass(frozen=True)
class MailboxAddresses:
    """Address → mailbox lookup, keeping the configuration's mailbox order."""

    owner: dict[str, str]
    order: dict[str, int]

    @classmethod
    def from_settings(cls, settings: IngestdSettings) -> MailboxAddresses:
        owner: dict[str, str] = {}
        order: dict[str, int] = {}
        for position, mailbox in enumerate(settings.mailboxes):
            order[mailbox.name] = position
            for address in mailbox.addresses:
                owner[address] = mailbox.name
        return cls(owner, order)

    def mailbox_for(self, address: str) -> str | None:
        """The mailbox for ``address`` (any case, any ``+detail``), or None."""
        return self.owner.get(base_address(address))

    def assign(self, recipients: list[str]) -> tuple[str, list[str]]:
        """(primary, others): the first-configured mailbox among ``recipients``."""
        names = {m for r in recipients if (m := self.mailbox_for(r)) is not None}
        if not names:
            raise ValueError("no recipient belongs to a configured mailbox")
        ordered = sorted(names, key=self.order.__getitem__)
        return ordered[0], ordered[1:]
