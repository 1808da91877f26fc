"""What ``parse_message`` loses on real mail, counted per corpus (issue 16's measures).

Not a test: ``tests/test_corpus_quality.py`` asserts ceilings on these counts
and ``bench/corpus_quality.py`` prints them, also for another checkout. For
that, this file imports nothing but the standard library and ``ingestd`` at
run time: the bench loads it by path in a process whose ``ingestd`` comes
from the other checkout, which may have no such file.

Messages are what ``ingestd ingest`` would take from each manifest file
(mbox files split, a byte-order mark removed); files flagged ``noheaders``
are skipped, and messages ``parse_message`` refuses under the default
``ProcessingLimits`` are counted apart, as the worker quarantines them.
"""

from __future__ import annotations

import email
import hashlib
import html
import re
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, fields
from email.message import Message
from pathlib import Path
from typing import Protocol

BODY_TYPES = ("text/plain", "text/html")
FALLBACK_NAME = "attachment.bin"
REPLACEMENT = "\ufffd"


class CorpusFileLike(Protocol):
    """A manifest row (``tests.corpora.CorpusFile``), not imported: see the docstring."""

    @property
    def corpus(self) -> str: ...
    @property
    def path(self) -> Path: ...
    @property
    def flags(self) -> frozenset[str]: ...


@dataclass(frozen=True)
class CorpusMessage:
    corpus: str
    origin: str  # the file, "path#N" for the Nth message of an mbox file
    raw: bytes


@dataclass
class Quality:
    """One corpus's counts; the columns of the table, in order."""

    messages: int = 0  # parsed (the counts below are over these)
    over_limit: int = 0  # refused by parse_message with LimitExceeded
    no_sender: int = 0  # a From header, but from_address is None
    fffd_subject: int = 0  # U+FFFD characters, not messages
    fffd_name: int = 0
    fffd_body: int = 0
    fffd_filename: int = 0
    empty_body: int = 0  # text empty (or white space) although a body part has words
    bin_untyped: int = 0  # attachment.bin from a part without Content-Type
    bin_typed: int = 0  # attachment.bin from a part with one

    def add(self, other: Quality) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))


COLUMNS = {
    "messages": "msgs", "over_limit": "limit", "no_sender": "no sender",
    "fffd_subject": "FFFD subj", "fffd_name": "FFFD name", "fffd_body": "FFFD body",
    "fffd_filename": "FFFD file", "empty_body": "empty body",
    "bin_untyped": ".bin untyped", "bin_typed": ".bin typed",
}
TOTAL = "total"
LEGEND = """\
msgs: messages parsed (the rest of each column counts over these); limit: refused with
LimitExceeded; no sender: a From header but no address read; FFFD: U+FFFD characters in
subjects, From names, body text, attachment filenames; empty body: no text although a
text/plain or text/html body part has words; .bin: attachments named attachment.bin, from
parts without a Content-Type (untyped) or with one (typed)."""


def corpus_messages(files: Iterable[CorpusFileLike]) -> tuple[list[CorpusMessage], int]:
    """The messages in ``files`` as ``ingest`` splits them, and how many pieces it refused.

    Files flagged ``noheaders`` are skipped (``ingest`` refuses them as not mail).
    """
    from ingestd.intake.files import FileMessage, split_input

    found: list[CorpusMessage] = []
    refused = 0
    for f in files:
        if "noheaders" in f.flags:
            continue
        for piece in split_input(str(f.path), f.path.read_bytes()):
            if isinstance(piece, FileMessage):
                found.append(CorpusMessage(f.corpus, piece.origin, piece.raw))
            else:
                refused += 1
    return found, refused


def count(messages: Iterable[CorpusMessage]) -> dict[str, Quality]:
    """Per corpus (and ``total``), what the ``ingestd`` on ``sys.path`` loses."""
    from ingestd.config.settings import ProcessingLimits
    from ingestd.errors import LimitExceeded
    from ingestd.pipeline.stages.parse import parse_message

    limits = ProcessingLimits()
    table: dict[str, Quality] = {}
    for message in messages:
        row = table.setdefault(message.corpus, Quality())
        try:
            parsed = parse_message(message.raw, limits)
        except LimitExceeded:
            row.over_limit += 1
            continue
        except Exception as exc:
            exc.add_note(f"parsing {message.origin}")
            raise
        row.messages += 1
        row.no_sender += parsed.from_address is None and has_from_header(message.raw)
        row.fffd_subject += parsed.subject.count(REPLACEMENT)
        row.fffd_name += (parsed.from_name or "").count(REPLACEMENT)
        row.fffd_body += parsed.text.count(REPLACEMENT)
        row.fffd_filename += sum(a.filename.count(REPLACEMENT) for a in parsed.attachments)
        fallback = [a.sha256 for a in parsed.attachments if a.filename == FALLBACK_NAME]
        empty = not parsed.text.strip()
        if empty or fallback:  # the stdlib's tree only where a count needs it
            tree = email.message_from_bytes(message.raw)
            row.empty_body += empty and has_words(tree)
            if fallback:
                untyped = untyped_payloads(tree)
                row.bin_untyped += sum(digest in untyped for digest in fallback)
                row.bin_typed += sum(digest not in untyped for digest in fallback)
    total = Quality()
    for row in table.values():
        total.add(row)
    return {**dict(sorted(table.items())), TOTAL: total}


_HEADER_END = re.compile(rb"\r?\n\r?\n|\r\r")
_FROM_FIELD = re.compile(rb"(?:^|[\r\n])From[ \t]*:", re.IGNORECASE)


def has_from_header(raw: bytes) -> bool:
    """Whether the raw header block has a From field.

    Read on the bytes, not the stdlib's tree: a header line folded without
    leading white space ends Python's header block, and a From field after it
    is still one the sender wrote.
    """
    end = _HEADER_END.search(raw)
    return _FROM_FIELD.search(raw[: end.start() if end else len(raw)]) is not None


def has_words(tree: Message) -> bool:
    """Whether a body part of ``tree`` holds words: the body must then not be empty.

    Decided here on the stdlib's own tree (compat32), independently of the
    parser measured. A body part is a text/plain or text/html part that is not
    ``Content-Disposition: attachment``, anywhere in the message's own
    multipart tree but not inside an enclosed message (message/*: that is
    another message, an attachment, RFC 8621 4.1.4). It holds words when its
    payload, transfer-decoded and charset-decoded (Latin-1 for charsets Python
    does not know, so no byte is lost), has a non-white-space character; for
    HTML, outside tags, comments, scripts and style sheets, since markup alone
    (an empty table, an image) rightly renders to no text.

    A message that is one fragment of another (top-level ``message/partial``,
    RFC 2046 5.2.2) has no body of its own: the fragment is kept whole as an
    attachment, and its text only means something once the fragments are
    joined, which ingestd does not do.
    """
    if tree.get_content_type() == "message/partial":
        return False
    stack = [tree]
    while stack:
        part = stack.pop()
        if part is not tree and part.get_content_maintype() == "message":
            continue
        payload = part.get_payload()
        if isinstance(payload, list):
            stack.extend(p for p in payload if isinstance(p, Message))
            continue
        kind = part.get_content_type()
        if kind not in BODY_TYPES or part.get_content_disposition() == "attachment":
            continue
        text = _decoded(part)
        if kind == "text/html":
            text = html.unescape(_MARKUP.sub(" ", text))
        if text.strip():
            return True
    return False


_MARKUP = re.compile(r"<!--.*?(?:-->|$)|<(script|style)\b.*?(?:</\1\s*>|$)|<[^>]*>?",
                     re.IGNORECASE | re.DOTALL)


def _decoded(part: Message) -> str:
    data = part.get_payload(decode=True)
    if not isinstance(data, bytes):
        return ""
    try:
        return data.decode(part.get_content_charset() or "ascii", "replace")
    except (LookupError, UnicodeError, ValueError):
        return data.decode("latin-1")


def untyped_payloads(tree: Message) -> set[str]:
    """sha256 of the decoded payload of every part with no (or a blank) Content-Type.

    An attachment is matched to its part by content: the parsers measured
    differ in how they list parts, not in what a part's bytes decode to.
    """
    return {hashlib.sha256(data).hexdigest() for part in tree.walk()
            if not str(part.get("Content-Type", "")).strip()
            and isinstance(data := part.get_payload(decode=True), bytes)}


def to_json(table: dict[str, Quality]) -> dict[str, dict[str, int]]:
    return {corpus: asdict(row) for corpus, row in table.items()}


def from_json(data: dict[str, dict[str, int]]) -> dict[str, Quality]:
    return {corpus: Quality(**row) for corpus, row in data.items()}


def format_table(table: dict[str, Quality]) -> str:
    """One line per corpus and a total line, a column per count."""
    width = max(len(corpus) for corpus in [*table, "corpus"])
    lines = [f"{'corpus':<{width}}  " + "  ".join(f"{h:>{len(h)}}" for h in COLUMNS.values())]
    for corpus, row in table.items():
        values = asdict(row)
        lines.append(f"{corpus:<{width}}  " + "  ".join(
            f"{values[key]:>{len(h)}}" for key, h in COLUMNS.items()))
    return "\n".join(lines)


def format_side_by_side(before: dict[str, Quality], after: dict[str, Quality]) -> str:
    """Every count as ``before → after``, one line per corpus."""
    corpora = [c for c in after if c != TOTAL] + [c for c in before if c not in after]
    corpora = [*sorted(set(corpora)), TOTAL]
    cells = {c: {key: f"{asdict(before.get(c, Quality()))[key]}→"
                      f"{asdict(after.get(c, Quality()))[key]}" for key in COLUMNS}
             for c in corpora}
    widths = {key: max(len(h), *(len(cells[c][key]) for c in corpora))
              for key, h in COLUMNS.items()}
    width = max(len(c) for c in [*corpora, "corpus"])
    lines = [f"{'corpus':<{width}}  " + "  ".join(f"{h:>{widths[k]}}"
                                                  for k, h in COLUMNS.items())]
    lines += [f"{c:<{width}}  " + "  ".join(f"{cells[c][k]:>{widths[k]}}" for k in COLUMNS)
              for c in corpora]
    return "\n".join(lines)


def messages_with(messages: Iterable[CorpusMessage], what: str) -> Iterator[str]:
    """Origins of the messages counted in column ``what`` (for looking at them)."""
    for message in messages:
        if getattr(count([message])[TOTAL], what):
            yield message.origin
