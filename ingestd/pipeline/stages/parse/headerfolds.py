"""Header lines folded without leading white space, repaired before the stdlib parses them.

Some mailers wrap a long header value onto a new line that does not start
with a space or tab. To Python's parser that line is no header field, so it
ends the header block there: every header after it (often Message-ID, MIME
headers, the Content-Type with its boundary) is lost and read as body text.
When the lines that follow are still header fields, up to the blank line,
the stray line was a fold: it is indented so that it continues the field
before it, and a defect says so. When what follows reads as text, nothing is
changed (a message with no blank line between header and body).

A stray line is taken for a fold only when the next field is one mailers
really write (``Message-ID``, ``Content-Type``, ``X-…``) and a blank line
closes the block: contact-form mail whose body is "Name: John" / "Email: …"
lines right after the header looks like header fields too, and reading it
as such would lose the body.

A field name followed by white space before its colon (``Subject :``, RFC
5322's obsolete syntax, still sent by old mailers) also ends the stdlib's
header block. On the same evidence (its own name is a known one, or a known
field follows it) the white space is dropped, with a defect.
"""

from __future__ import annotations

import re

# What the stdlib's feed parser accepts as a header line (email.feedparser.headerRE).
_FIELD = re.compile(rb"(From |[\x21-\x39\x3b-\x7e]+:)")
_NAMED_FIELD = re.compile(rb"[A-Za-z][A-Za-z0-9_-]*[ \t]*:")
_LINE = re.compile(rb"[^\r\n]*(?:\r\n|\n|\r|$)")
_NAME = re.compile(rb"([A-Za-z][A-Za-z0-9_-]*)[ \t]*:")
_SPACED_NAME = re.compile(rb"([A-Za-z][A-Za-z0-9_-]*)[ \t]+:")

# Header fields that mail software writes (RFC 5322, 2045, 2369, 5321 trace
# fields and the common extensions); a form's "Name:" or "Email:" is none.
_KNOWN_NAMES = frozenset(
    b"""accept-language authentication-results auto-submitted autocrypt bcc cc comments
    date delivered-to disposition-notification-to dkim-signature domainkey-signature
    envelope-to errors-to feedback-id from importance in-reply-to keywords message-id
    mime-version organization precedence priority received received-spf references
    reply-to return-path return-receipt-to sender sensitivity subject thread-index
    thread-topic to user-agent""".split())
_KNOWN_PREFIXES = (b"x-", b"content-", b"list-", b"resent-", b"arc-")


def repair_folds(raw: bytes, limit: int) -> tuple[bytes, str | None]:
    """(raw with stray fold lines indented, the defect) — or (raw, None) if none needed.

    Only the first ``limit`` bytes are read: a longer header block is refused
    by the header limit anyway.
    """
    lines: list[bytes] = []
    closed = False
    for found in _LINE.finditer(raw, 0, min(len(raw), limit)):
        line = found.group()
        if not line:
            break
        if line in (b"\r\n", b"\n", b"\r"):
            closed = True
            break
        lines.append(line)
    if not closed:
        # Not closed within the limit (the header limit refuses it), or never
        # closed: then what follows the header is body text, not fields.
        return raw, None
    kinds = [_kind(line) for line in lines]
    if kinds[0] == "stray":
        return raw, None
    pairs = list(zip(lines, kinds, strict=True))
    strays = [at for at, kind in enumerate(kinds) if kind == "stray"]
    if strays and (any(line.startswith(b"--") for line in lines)
                   or not all(_known_field_follows(pairs, at) for at in strays)):
        # A MIME delimiter (the body began without a blank line), or text
        # after the header (a missing blank line, not a fold): leave it all.
        return raw, None
    spaced = [at for at, (line, kind) in enumerate(pairs)
              if kind == "field" and _spaced_known(pairs, at)]
    if not strays and not spaced:
        return raw, None
    repaired = b"".join(_repaired(line, kind, at in spaced)
                        for at, (line, kind) in enumerate(pairs))
    rest = raw[sum(map(len, lines)):]
    defects: list[str] = []
    if strays:
        defects.append(f"{len(strays)} header line(s) without leading white space read as folded")
    if spaced:
        defects.append(f"{len(spaced)} header field name(s) followed by white space before "
                     "the colon (obsolete syntax)")
    return repaired + rest, "; ".join(defects)


def _repaired(line: bytes, kind: str, spaced: bool) -> bytes:
    if kind == "stray":
        return b" " + line
    if spaced:
        return _SPACED_NAME.sub(rb"\1:", line, count=1)
    return line


def _spaced_known(pairs: list[tuple[bytes, str]], at: int) -> bool:
    """The field at ``at`` has white space before its colon, and is evidently a header field."""
    spaced = _SPACED_NAME.match(pairs[at][0])
    return spaced is not None and (_known(spaced.group(1).lower())
                                   or _known_field_follows(pairs, at))


def _known_field_follows(pairs: list[tuple[bytes, str]], at: int) -> bool:
    """The first field after the stray line at ``at`` (and its own folds) is a known one."""
    for line, kind in pairs[at + 1:]:
        if kind in ("stray", "continuation"):
            continue
        name = _NAME.match(line)
        return kind == "field" and name is not None and _known(name.group(1).lower())
    return False


def _known(name: bytes) -> bool:
    return name in _KNOWN_NAMES or name.startswith(_KNOWN_PREFIXES)


def _kind(line: bytes) -> str:
    if line[:1] in (b" ", b"\t"):
        return "continuation"
    if _NAMED_FIELD.match(line):
        return "field"
    # The stdlib takes any "word:" for a field; only real field names count as
    # evidence that headers go on after a stray line.
    return "other" if _FIELD.match(line) else "stray"
