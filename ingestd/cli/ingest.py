"""``ingestd ingest``: feed .eml files, directories, mbox files or stdin through intake.

Exit codes follow sysexits so an MTA pipe transport does the right thing. An
MTA bounces the mail on 1, 64 and 78 (Postfix maps EX_USAGE and EX_CONFIG to
permanent failures), so only the input's own faults are permanent here:

* 0  everything stored (and processed, unless ``--no-process``)
* 65 some input was not mail                          (the input's fault)
* 66 a file argument could not be read                (the input's fault)
* 75 anything else: storage failed, an invalid configuration, an outdated
     schema, an unknown ``--mailbox``, a bug — the MTA keeps the mail and retries
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from dataclasses import asdict
from typing import TYPE_CHECKING

from ingestd.cli import exits
from ingestd.cli.common import CommandFailed, add_config_option

if TYPE_CHECKING:
    from collections.abc import Mapping

    from ingestd.config.settings import IngestdSettings
    from ingestd.intake.file_source import InputResult
    from ingestd.workers.inline import Processed


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
    """Run the command; every failure that is not the input's own exits 75."""
    try:
        return _ingest(args)
    except CommandFailed as exc:
        if exc.code in (exits.DATAERR, exits.NOINPUT, exits.TEMPFAIL):
            raise
        raise CommandFailed(exits.TEMPFAIL, f"{exc} (exit 75: the MTA keeps the mail)") from exc
    except Exception as exc:
        # A bug, or an error class nobody foresaw: the mail must not bounce for it.
        raise CommandFailed(
            exits.TEMPFAIL,
            f"ingest failed: {type(exc).__name__}: {exc} (exit 75: the MTA keeps the mail)",
        ) from exc


def _ingest(args: argparse.Namespace) -> int:
    # What runs before the mail is durable stays light (an MTA may run this
    # once per message): the driver stores it; SQLAlchemy, Alembic and the
    # parser load only for what comes after (creating a schema, processing).
    from ingestd.cli.common import settings_from
    from ingestd.db.direct import direct_store
    from ingestd.intake.file_source import FileIntake, read_inputs
    from ingestd.logs import configure_logging

    settings = settings_from(args)
    configure_logging(settings.logging, to_stderr=True, deferred=True)
    mailbox = settings.mailbox(args.mailbox)
    if mailbox is None:
        known = ", ".join(m.name for m in settings.mailboxes) or "none configured"
        raise CommandFailed(exits.USAGE, f"unknown mailbox {args.mailbox!r} (known: {known})")
    report = Report(keep_all=args.json)
    with direct_store(settings.database) as store:
        if store.revision() != _schema_head():
            _ensure_schema(settings)  # creates an empty database, or refuses an old one
        intake = FileIntake(lambda messages: store.insert([m.row() for m in messages]),
                            mailbox.name, envelope_from=args.envelope_from,
                            envelope_to=args.envelope_to)
        for result in intake.store(read_inputs(args.paths)):
            report.add(result)
    if not args.no_process and report.stored_ids:
        from ingestd.cli.common import database
        from ingestd.workers.inline import process_now

        # Processing logs through structlog everywhere: set it up for real now.
        configure_logging(settings.logging, to_stderr=True)
        with database(settings) as engine:
            run = process_now(engine, settings, report.stored_ids)
        report.processed(run.results)
    return report.print(as_json=args.json)


def _schema_head() -> str:
    from ingestd.db.schema import HEAD

    return HEAD


def _ensure_schema(settings: IngestdSettings) -> None:
    from ingestd.cli.common import database

    with database(settings):
        pass


# "processed": settled by another worker (a running daemon) while this run worked.
PROCESSED = ("ticket_created", "action_added", "inbox_item", "processed", "duplicate",
             "ignored", "quarantined", "pending")


class Report:
    """Counts for every input; the full list only for ``--json`` (memory stays bounded)."""

    def __init__(self, keep_all: bool) -> None:
        self._keep_all = keep_all
        self.counts: Counter[str] = Counter()
        self.kept: list[InputResult] = []
        self.stored_ids: list[int] = []
        self.processed_counts: Counter[str] = Counter()

    def add(self, result: InputResult) -> None:
        self.counts[result.outcome] += 1
        if result.outcome == "stored" and result.id is not None:
            self.stored_ids.append(result.id)
        if self._keep_all or result.outcome != "stored":
            self.kept.append(result)

    def processed(self, results: Mapping[int, Processed]) -> None:
        for row_id in self.stored_ids:
            found = results.get(row_id)
            self.processed_counts[found.status if found else "pending"] += 1
        for result in self.kept:
            if result.outcome == "stored" and result.id is not None:
                found = results.get(result.id)
                result.processed = found.status if found else "pending"
                result.ticket_id = found.ticket_id if found else None

    def print(self, as_json: bool) -> int:
        counts = {k: self.counts[k] for k in ("stored", "refused", "unreadable", "not_stored")}
        if as_json:
            from ingestd.cli.common import print_json

            print_json({**counts, "processed": {k: self.processed_counts[k] for k in PROCESSED},
                        "results": [asdict(r) for r in self.kept]})
        else:
            print(
                f"stored {counts['stored']}, refused {counts['refused']} (not mail), "
                f"unreadable {counts['unreadable']}, not stored {counts['not_stored']}"
            )
            if self.processed_counts:
                print("processed: " + ", ".join(f"{k.replace('_', ' ')} {self.processed_counts[k]}"
                                                 for k in PROCESSED))
            for r in self.kept:
                if r.outcome != "stored":
                    print(f"{r.origin}: {r.outcome}: {r.reason}", file=sys.stderr)
        if counts["not_stored"]:
            return exits.TEMPFAIL
        if counts["unreadable"]:
            return exits.NOINPUT
        if counts["refused"]:
            return exits.DATAERR
        return exits.OK
