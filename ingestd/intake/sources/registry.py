"""The pull source a mailbox's settings name."""

from __future__ import annotations

from ingestd.config.settings import Mailbox
from ingestd.intake.sources.pull import PullSource


def source_for(mailbox: Mailbox) -> PullSource:
    """The source of a pulled mailbox (settings validation guarantees its block is there)."""
    if mailbox.source == "imap" and mailbox.imap is not None:
        from ingestd.intake.sources.imap import ImapSource

        return ImapSource(mailbox.imap)
    if mailbox.source == "gmail" and mailbox.gmail is not None:
        from ingestd.intake.sources.gmail import GmailSource

        return GmailSource(mailbox.gmail)
    if mailbox.source == "graph" and mailbox.graph is not None:
        from ingestd.intake.sources.graph import GraphSource

        return GraphSource(mailbox.graph)
    raise ValueError(f"mailbox {mailbox.name}: source {mailbox.source} cannot be pulled")


def batch_size(mailbox: Mailbox) -> int:
    if mailbox.imap is not None:
        return mailbox.imap.fetch_batch
    if mailbox.gmail is not None:
        return mailbox.gmail.fetch_batch
    if mailbox.graph is not None:
        return mailbox.graph.fetch_batch
    return 25
