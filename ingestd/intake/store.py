"""The commit that makes a message durable, and group commit on top of it.

Nothing is acknowledged to a sender before ``store_messages`` has committed
the raw bytes and envelope. ``GroupCommitter`` lets many concurrent SMTP
sessions share one such commit: each session still waits for the commit that
holds its own message, so the promise does not weaken, but N messages cost
one fsync instead of N.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import sqlalchemy as sa
import structlog
from sqlalchemy.engine import Engine

from ingestd.db.models import utcnow
from ingestd.db.tables import INBOUND
from ingestd.errors import StorageUnavailable, first_line
from ingestd.intake.headers import summary_headers

log = structlog.get_logger("ingestd.intake")



# Built once: constructing the statement per batch cost a third of the commit's CPU.
_INSERT = sa.insert(INBOUND).returning(INBOUND.c.id, sort_by_parameter_order=True)


@dataclass(frozen=True)
class NewMessage:
    """A message as intake received it, before it has an id."""

    source: str
    mailbox: str
    raw: bytes
    envelope_from: str | None = None
    envelope_to: Sequence[str] = ()
    also_mailboxes: Sequence[str] = ()
    peer: str | None = None
    sha256: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "sha256", hashlib.sha256(self.raw).hexdigest())

    def row(self) -> dict[str, object]:
        subject, message_id = summary_headers(self.raw)
        return {
            "source": self.source,
            "source_key": f"sha256:{self.sha256}",
            "mailbox": self.mailbox,
            "also_mailboxes": list(self.also_mailboxes),
            "envelope_from": envelope_text(self.envelope_from),
            "envelope_to": [envelope_text(a) for a in self.envelope_to],
            "peer": self.peer,
            "message_id": message_id,
            "subject": subject,
            "size": len(self.raw),
            "received_at": utcnow(),
            "status": "pending",
            "attempts": 0,
            "raw": self.raw,
        }


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


def store_messages(engine: Engine, messages: Sequence[NewMessage]) -> list[int]:
    """Insert ``messages`` as pending rows in one transaction; return their ids.

    Either every message is committed or none is; any database failure is
    raised as ``StorageUnavailable``.
    """
    if not messages:
        return []
    rows = [m.row() for m in messages]
    try:
        with engine.begin() as conn:
            result = conn.execute(_INSERT, rows)
            ids = [row[0] for row in result]
    except (sa.exc.SQLAlchemyError, ValueError) as exc:
        # ValueError covers a driver refusing a value (UnicodeEncodeError and kin).
        raise StorageUnavailable(f"database refused the write: {first_line(exc)}") from exc
    return ids



class GroupCommitter:
    """Batches concurrent ``submit`` calls into shared commits.

    One writer task runs at a time: while a commit is in flight, new messages
    queue up and go into the next commit together. A batch is one
    transaction, so nothing is half-stored; when it fails, its messages are
    committed one by one, so a message the database refuses costs only its own
    sender a 451 (the database being down costs everyone one, as it must).
    """

    def __init__(
        self, engine: Engine, max_batch: int = 200, on_commit: Callable[[], None] | None = None
    ) -> None:
        self._engine = engine
        self._on_commit = on_commit
        self._max_batch = max_batch
        self._queue: list[tuple[NewMessage, asyncio.Future[int]]] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        # One thread: SQLite has one writer anyway, and commits stay in order.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="intake-commit")
        self.commits = 0
        self._busy = False

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="group-commit")

    async def stop(self) -> None:
        """Finish the messages already submitted, then stop."""
        if self._task is not None:
            # A batch in flight must also finish, so its senders get their 250.
            while self._queue or self._busy:
                await asyncio.sleep(0.01)
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self._executor.shutdown(wait=True)

    async def submit(self, message: NewMessage) -> int:
        """Return the id of ``message`` once it is committed."""
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._queue.append((message, future))
        self._wake.set()
        return await future

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                batch = self._queue[: self._max_batch]
                del self._queue[: self._max_batch]
                self._busy = True
                try:
                    if not await self._commit(batch) and len(batch) > 1:
                        # One bad message must not cost its batch-mates their 250:
                        # commit each alone, so only the bad one hears 451.
                        for entry in batch:
                            await self._commit([entry])
                finally:
                    self._busy = False

    async def _commit(self, batch: list[tuple[NewMessage, asyncio.Future[int]]]) -> bool:
        """Commit ``batch``; a lone message's failure is set on its future."""
        loop = asyncio.get_running_loop()
        try:
            ids = await loop.run_in_executor(
                self._executor, store_messages, self._engine, [m for m, _ in batch]
            )
        except Exception as exc:
            error = exc if isinstance(exc, StorageUnavailable) else StorageUnavailable(
                f"commit failed: {type(exc).__name__}"
            )
            if len(batch) == 1 and not batch[0][1].done():
                batch[0][1].set_exception(error)
            return False
        self.commits += 1
        if self._on_commit is not None:
            self._on_commit()
        for (_, future), row_id in zip(batch, ids, strict=True):
            if not future.done():
                future.set_result(row_id)
        return True
