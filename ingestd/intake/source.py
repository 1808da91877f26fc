"""What every way in shares: the message as received, and the ``Source`` interface.

A source (SMTP, files and stdin, and next the IMAP / Gmail / Graph pulls)
turns what it received into ``NewMessage`` values, choosing each one's
source key, and makes them durable with ``commit_messages``: one
transaction holding the messages and, optionally, the source's checkpoint
(a pull's cursor), so a checkpoint never runs ahead of the mail it covers
and the mail never lands without it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar

from ingestd.errors import StorageConflict, StorageRejected
from ingestd.intake.headers import summary_headers
from ingestd.message_keys import content_key

if TYPE_CHECKING:
    import sqlalchemy as sa
    from sqlalchemy.engine import Engine

# Written in the same transaction as the messages it covers.
Checkpoint = Callable[["sa.Connection"], None]


@dataclass(frozen=True)
class NewMessage:
    """A message as a source received it, before it has an id."""

    source: str
    source_key: str
    mailbox: str
    raw: bytes = field(repr=False)
    envelope_from: str | None = None
    envelope_to: Sequence[str] = ()
    also_mailboxes: Sequence[str] = ()
    peer: str | None = None
    # Read once, where the message is made (an SMTP session, a file reader),
    # so that the one commit thread every sender waits on does no header work.
    subject: str | None = field(init=False, repr=False, compare=False)
    message_id: str | None = field(init=False, compare=False)

    def __post_init__(self) -> None:
        subject, message_id = summary_headers(self.raw)
        # Frozen: the dataclass's own __setattr__ refuses, even here.
        object.__setattr__(self, "subject", subject)
        object.__setattr__(self, "message_id", message_id)

    def row(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "source_key": self.source_key,
            "mailbox": self.mailbox,
            "also_mailboxes": list(self.also_mailboxes),
            "envelope_from": envelope_text(self.envelope_from),
            "envelope_to": [envelope_text(a) for a in self.envelope_to],
            "peer": self.peer,
            "message_id": self.message_id,
            "subject": self.subject,
            "size": len(self.raw),
            "received_at": datetime.now(UTC),
            "raw": self.raw,
        }


class Source:
    """A way in. Subclasses set ``kind`` and may key messages by a provider id."""

    kind: ClassVar[str]

    def message(self, raw: bytes, mailbox: str, *, provider_id: str | None = None,
                envelope_from: str | None = None, envelope_to: Sequence[str] = (),
                also_mailboxes: Sequence[str] = (), peer: str | None = None) -> NewMessage:
        """A ``NewMessage`` from this source, keyed by its provider id or else its bytes."""
        return NewMessage(
            source=self.kind, source_key=self.source_key(raw, mailbox, provider_id),
            mailbox=mailbox, raw=raw, envelope_from=envelope_from,
            envelope_to=tuple(envelope_to), also_mailboxes=tuple(also_mailboxes), peer=peer,
        )

    def source_key(self, raw: bytes, mailbox: str, provider_id: str | None) -> str:
        """The same bytes are the same message; pulls override this with their ids."""
        return content_key(raw)


def envelope_text(value: str | None) -> str | None:
    """An SMTP envelope address as text any database takes.

    aiosmtpd hands 8-bit addresses over with surrogate escapes and lets NUL
    through; neither can be stored (PostgreSQL refuses NUL in text), and one
    such sender must not fail the commit it shares with others.
    """
    if value is None:
        return None
    raw = value.encode("utf-8", "surrogateescape")
    return raw.decode("utf-8", "replace").replace("\x00", "")[:2000]


def commit_messages(engine: Engine, messages: Sequence[NewMessage],
                    checkpoint: Checkpoint | None = None) -> list[int]:
    """Store ``messages`` (and the checkpoint) in one transaction; return their ids.

    Either everything is committed or nothing is. Failures arrive translated:
    ``StorageRejected`` when a value of these messages was refused,
    ``StorageUnavailable`` when the database was.
    """
    # Here, not at the top: the files source stores through the driver alone
    # (db/direct.py) and must not pay for SQLAlchemy's statements at start-up.
    from ingestd import queue
    from ingestd.db.errors import translated

    if not messages and checkpoint is None:
        return []
    try:
        with translated("intake commit"):
            rows = [m.row() for m in messages]
            with engine.begin() as conn:
                ids = queue.insert(conn, rows)
                if checkpoint is not None:
                    checkpoint(conn)
    except StorageConflict as exc:
        # inbound_messages has no unique key to race on: a violated constraint
        # names a value of these messages (NOT NULL, a foreign key).
        raise StorageRejected(str(exc)) from exc
    from ingestd.metrics.counters import count_received

    count_received(rows)
    return ids
