"""``ingestd ingest``: feed .eml files, directories, mbox files or stdin through intake.

Exit codes follow sysexits so an MTA pipe transport does the right thing:
0 everything stored, 75 storage failed (the MTA keeps the mail and retries),
65 some input was not mail, 66 an input could not be read, 64 bad usage.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import sqlalchemy as sa
import structlog
from sqlalchemy.engine import Engine

from ingestd.cli import exits
from ingestd.cli.common import (
    CommandFailed,
    add_config_option,
    database,
    print_json,
    settings_from,
)
from ingestd.config.settings import IngestdSettings
from ingestd.db.engine import read_only
from ingestd.db.tables import INBOUND
from ingestd.errors import StorageUnavailable
from ingestd.intake.files import FileMessage, Refusal, expand_paths, split_input
from ingestd.intake.store import NewMessage, store_messages
from ingestd.logs import configure_logging
from ingestd.worker import Worker, worker_identity

log = structlog.get_logger("ingestd.ingest")

# Commit in batches: one fsync per batch, and a failure loses no more than a retry.
BATCH_MESSAGES = 100
BATCH_BYTES = 32 * 1024 * 1024


@dataclass
class InputResult:
    origin: str
    outcome: str  # stored | refused | unreadable | not_stored
    id: int | None = None
    reason: str | None = None
    # After processing: ticket_created | action_added | duplicate | quarantined | pending
    processed: str | None = None
    ticket_id: int | None = None


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "ingest", help="store .eml files, directories, mbox files or stdin (-) as inbound mail"
    )
    add_config_option(parser)
    parser.add_argument("--mailbox", required=True, help="the configured mailbox they arrived at")
    parser.add_argument("paths", nargs="+", metavar="PATH", help="file, directory, mbox, or -")
    parser.add_argument("--envelope-from", help="envelope sender to record (MTA pipe use)")
    parser.add_argument(
        "--envelope-to", action="append", default=[], help="envelope recipient to record"
    )
    parser.add_argument("--json", action="store_true", help="print per-input results as JSON")
    parser.add_argument(
        "--no-process", action="store_true",
        help="store only; leave the messages pending for the daemon's workers",
    )
    parser.set_defaults(func=ingest)


def ingest(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    configure_logging(settings.logging, to_stderr=True)
    mailbox = settings.mailbox(args.mailbox)
    if mailbox is None:
        known = ", ".join(m.name for m in settings.mailboxes) or "none configured"
        raise CommandFailed(exits.USAGE, f"unknown mailbox {args.mailbox!r} (known: {known})")
    results: list[InputResult] = []
    with database(settings) as engine:
        batch: list[tuple[FileMessage, InputResult]] = []
        batch_bytes = 0
        failed: StorageUnavailable | None = None

        def flush() -> None:
            nonlocal batch, batch_bytes, failed
            if not batch:
                return
            if failed is None:
                messages = [
                    NewMessage(
                        source="stdin" if item.origin == "-" else "file",
                        mailbox=mailbox.name,
                        raw=item.raw,
                        envelope_from=args.envelope_from,
                        envelope_to=args.envelope_to,
                    )
                    for item, _ in batch
                ]
                try:
                    ids = store_messages(engine, messages)
                except StorageUnavailable as exc:
                    failed = exc
                else:
                    for (item, result), row_id, message in zip(batch, ids, messages, strict=True):
                        result.outcome, result.id = "stored", row_id
                        log.info("intake.stored", id=row_id, source=message.source,
                                 mailbox=mailbox.name, size=len(item.raw), outcome="stored",
                                 origin=item.origin)
            if failed is not None:
                for _, result in batch:
                    result.outcome, result.reason = "not_stored", str(failed)
            batch, batch_bytes = [], 0

        for item in _inputs(args.paths):
            if isinstance(item, InputResult):
                results.append(item)
                continue
            if isinstance(item, Refusal):
                results.append(InputResult(item.origin, "refused", reason=item.reason))
                log.info("intake.refused", origin=item.origin, reason=item.reason)
                continue
            result = InputResult(item.origin, "pending")
            results.append(result)
            batch.append((item, result))
            batch_bytes += len(item.raw)
            if len(batch) >= BATCH_MESSAGES or batch_bytes >= BATCH_BYTES:
                flush()
        flush()
        if not args.no_process:
            _process(engine, settings, results)
    return _report(results, args.json)


def _process(engine: Engine, settings: IngestdSettings, results: list[InputResult]) -> None:
    """Run what this invocation stored through the pipeline, here and now."""
    by_id = {r.id: r for r in results if r.outcome == "stored" and r.id is not None}
    for result in by_id.values():
        result.processed = "pending"
    _run_worker(engine, settings, by_id)
    # What this run did not settle itself: a daemon's worker may have processed it,
    # or the claim quarantined it (attempts used up); report what the log says.
    unsettled = [i for i, r in by_id.items() if r.processed == "pending"]
    if unsettled:
        with read_only(engine) as conn:
            for row in conn.execute(sa.select(INBOUND.c.id, INBOUND.c.status, INBOUND.c.ticket_id)
                                    .where(INBOUND.c.id.in_(unsettled))):
                by_id[row.id].processed = row.status
                by_id[row.id].ticket_id = row.ticket_id


def _run_worker(engine: Engine, settings: IngestdSettings,
                by_id: dict[int, InputResult]) -> None:
    worker = Worker(engine, settings, worker_identity())
    remaining = sorted(by_id)
    while remaining:
        # A short id list keeps the claiming query cheap however much was stored.
        chunk = remaining[:64]
        try:
            done = worker.run_once(only_ids=chunk)
        except Exception as exc:
            # The database went away: what is left stays pending for the daemon.
            log.warning("ingest.processing_stopped", error=str(exc)[:300])
            return
        if done is None:
            # Nothing in the chunk is claimable: finished, or leased by a daemon's worker.
            del remaining[: len(chunk)]
            continue
        row_id, outcome = done
        if outcome.result != "failed":
            by_id[row_id].processed = outcome.result
            by_id[row_id].ticket_id = outcome.ticket_id
            remaining.remove(row_id)


def _inputs(paths: list[str]) -> Iterator[FileMessage | Refusal | InputResult]:
    for path in expand_paths(paths):
        if path == "-":
            yield from split_input("-", sys.stdin.buffer.read())
            continue
        assert isinstance(path, Path)
        try:
            data = path.read_bytes()
        except OSError as exc:
            yield InputResult(str(path), "unreadable", reason=exc.strerror or str(exc))
            continue
        yield from split_input(str(path), data)


# "processed": settled by another worker (a running daemon) while this run worked.
PROCESSED = ("ticket_created", "action_added", "processed", "duplicate", "ignored",
             "quarantined", "pending")


def _report(results: list[InputResult], as_json: bool) -> int:
    counts = {k: sum(r.outcome == k for r in results)
              for k in ("stored", "refused", "unreadable", "not_stored")}
    processed = {k: sum(r.processed == k for r in results) for k in PROCESSED}
    if as_json:
        print_json({**counts, "processed": processed, "results": [asdict(r) for r in results]})
    else:
        print(
            f"stored {counts['stored']}, refused {counts['refused']} (not mail), "
            f"unreadable {counts['unreadable']}, not stored {counts['not_stored']}"
        )
        if any(r.processed for r in results):
            print("processed: " + ", ".join(f"{k.replace('_', ' ')} {v}"
                                             for k, v in processed.items()))
        for r in results:
            if r.outcome != "stored":
                print(f"{r.origin}: {r.outcome}: {r.reason}", file=sys.stderr)
    if counts["not_stored"]:
        return exits.TEMPFAIL
    if counts["unreadable"]:
        return exits.NOINPUT
    if counts["refused"]:
        return exits.DATAERR
    return exits.OK
