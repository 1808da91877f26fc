"""The files source: .eml files, directories, mbox files and stdin into intake.

Messages are committed in batches (one fsync per batch; a failure loses no
more than a retry of that batch). Once a commit has failed, nothing more is
attempted in this run: the rest is reported ``not_stored`` and the caller
exits 75, so an MTA keeps the mail and delivers it again (what an earlier
batch committed is then absorbed by dedupe).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from ingestd.errors import IngestdError
from ingestd.intake.files import FileMessage, Refusal, expand_paths, split_stream
from ingestd.intake.source import NewMessage, Source
from ingestd.logs import get_logger

# Stores messages as pending rows in one transaction and returns their ids.
Commit = Callable[[Sequence[NewMessage]], list[int]]

log = get_logger("ingestd.ingest")

# A batch holds at most this many messages or bytes: few commits, bounded memory.
BATCH_MESSAGES = 100
BATCH_BYTES = 8 * 1024 * 1024


@dataclass(slots=True)
class InputResult:
    """What became of one input (a file, one message of an mbox, stdin)."""

    origin: str
    outcome: str  # stored | refused | unreadable | not_stored
    id: int | None = None
    reason: str | None = None
    # After processing: ticket_created | action_added | inbox_item | duplicate | ignored |
    # quarantined | pending (left for the daemon) | processed (by another worker)
    processed: str | None = None
    ticket_id: int | None = None


class FileSource(Source):
    kind = "file"


class StdinSource(Source):
    kind = "stdin"


@dataclass(frozen=True)
class Unreadable:
    origin: str
    reason: str


def read_inputs(paths: Sequence[str]) -> Iterator[FileMessage | Refusal | Unreadable]:
    """Every message in ``paths`` (files, directories, mbox files, ``-``), streamed."""
    for path in expand_paths(list(paths)):
        if path == "-":
            yield from split_stream("-", sys.stdin.buffer)
            continue
        assert isinstance(path, Path)
        try:
            stream = path.open("rb")
        except OSError as exc:
            yield Unreadable(str(path), exc.strerror or str(exc))
            continue
        with stream:
            try:
                yield from split_stream(str(path), stream)
            except OSError as exc:
                # Read failed half-way (an I/O error, a directory named like a file).
                yield Unreadable(str(path), exc.strerror or str(exc))


class FileIntake:
    """Stores what ``read_inputs`` yields for one mailbox, in batches."""

    def __init__(self, commit: Commit, mailbox: str, *, envelope_from: str | None = None,
                 envelope_to: Sequence[str] = ()) -> None:
        self._commit = commit
        self._mailbox = mailbox
        self._envelope_from = envelope_from
        self._envelope_to = tuple(envelope_to)
        self._sources = {"file": FileSource(), "stdin": StdinSource()}
        self._batch: list[tuple[NewMessage, InputResult]] = []
        self._batch_bytes = 0
        self.failure: IngestdError | None = None

    def store(self, inputs: Iterable[FileMessage | Refusal | Unreadable]
              ) -> Iterator[InputResult]:
        """Each input's result, in input order, once it is settled (stored or not)."""
        for item in inputs:
            if isinstance(item, Unreadable):
                yield from self._settled(InputResult(item.origin, "unreadable",
                                                     reason=item.reason))
                continue
            if isinstance(item, Refusal):
                log.info("intake.refused", origin=item.origin, reason=item.reason)
                yield from self._settled(InputResult(item.origin, "refused",
                                                     reason=item.reason))
                continue
            from_stdin = item.origin == "-" or item.origin.startswith("-#")
            source = self._sources["stdin" if from_stdin else "file"]
            message = source.message(item.raw, self._mailbox, envelope_from=self._envelope_from,
                                     envelope_to=self._envelope_to)
            self._batch.append((message, InputResult(item.origin, "pending")))
            self._batch_bytes += len(item.raw)
            if len(self._batch) >= BATCH_MESSAGES or self._batch_bytes >= BATCH_BYTES:
                yield from self._flush()
        yield from self._flush()

    def _settled(self, result: InputResult) -> Iterator[InputResult]:
        # Results come out in input order: what waits in the batch goes first.
        yield from self._flush()
        yield result

    def _flush(self) -> Iterator[InputResult]:
        batch, self._batch, self._batch_bytes = self._batch, [], 0
        if not batch:
            return
        if self.failure is None:
            try:
                ids = self._commit([m for m, _ in batch])
            except IngestdError as exc:
                self.failure = exc
            else:
                for (message, result), row_id in zip(batch, ids, strict=True):
                    result.outcome, result.id = "stored", row_id
                    # debug: `ingest` reports counts itself, and an MTA runs it per message.
                    log.debug("intake.stored", id=row_id, source=message.source,
                             mailbox=self._mailbox, size=len(message.raw), outcome="stored",
                             origin=result.origin)
        for _, result in batch:
            if self.failure is not None and result.outcome != "stored":
                result.outcome, result.reason = "not_stored", str(self.failure)
            yield result
