"""The interface of a pull source: connect, list what is new since a cursor, fetch raw bytes.

A source knows its provider's protocol and nothing about the database; the
poll (``poll.py``) knows the database and nothing about protocols. Between
them travel provider ids (strings), cursors (JSON-able dicts, stored per
folder) and raw bytes. Every source passes the same contract tests
(tests/pull_contract.py).

Copy semantics are part of the contract: a source never deletes, moves or
marks anything at the provider.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

# A source's own position in a folder, e.g. IMAP {"uidvalidity": 7, "last_uid": 42}.
Cursor = dict[str, Any]


@dataclass(frozen=True)
class Listed:
    """One message a listing found: its provider id, and the cursor that is
    valid once it and every message listed before it are stored (None: only
    the listing's final cursor is; Gmail and Graph cannot resume mid-listing)."""

    provider_id: str
    cursor: Cursor | None = None


@dataclass(frozen=True)
class Listing:
    """What is new in a folder, oldest first, and the cursor after all of it."""

    items: Sequence[Listed]
    cursor_after: Cursor
    # True when the listed ids are new names for possibly known mail (a new
    # IMAP UIDVALIDITY): the poll compares Message-ID and From before fetching.
    renamed: bool = False


@dataclass(frozen=True)
class MessageKeys:
    """The headers that identify a message across renamings."""

    message_id: str | None
    from_address: str | None


@dataclass(frozen=True)
class Fetched:
    """A fetched message; or, with ``too_large`` set to its size, one not fetched
    because it exceeds the mailbox's size limit (it stays at the provider)."""

    provider_id: str
    raw: bytes = field(repr=False)
    too_large: int | None = None


class PullConnection(Protocol):
    """One open session with a mailbox; closed by the poll when it is done."""

    def folders(self) -> Sequence[str]:
        """The folders (labels) to poll, as configured."""

    def baseline(self, folder: str) -> Cursor:
        """The cursor at this moment: the first connection imports nothing before it."""

    def list_new(self, folder: str, cursor: Cursor) -> Listing:
        """What arrived after ``cursor``; ``CursorLost`` when the cursor is no longer valid."""

    def list_since(self, folder: str, since: datetime) -> Listing:
        """What the folder holds that arrived at or after ``since`` (backfill, resync)."""

    def message_keys(self, folder: str, provider_ids: Sequence[str]) -> dict[str, MessageKeys]:
        """Message-ID and From of each id, read without fetching the whole message."""

    def fetch(self, folder: str, provider_ids: Sequence[str], max_bytes: int
              ) -> Iterator[Fetched]:
        """The raw bytes of each id that still exists, byte-exact; one over ``max_bytes``
        is not downloaded (``too_large``)."""

    def close(self) -> None:
        """Log out politely (may wait on the network)."""


class PullSource(Protocol):
    """A configured mailbox's way in; ``connect`` reads its secret each time."""

    kind: str

    def connect(self) -> PullConnection:
        """Raise ``CredentialsRejected`` (needs_reauth) or ``SourceUnavailable`` (retry)."""

    def abort(self) -> None:
        """Drop the connection being opened or in use, at once, from another thread: a
        stopping daemon must not wait for a server that stopped answering."""
