"""The parse package's layout: processing does not import intake; old import paths still work."""

from __future__ import annotations

import subprocess
import sys
from email.parser import BytesParser
from email.policy import compat32

import pytest

from tests.conftest import REPO


def test_parse_does_not_import_intake() -> None:
    """Importing the parse stage loads no ingestd.intake module."""
    code = ("import sys, ingestd.pipeline.stages.parse\n"
            "print(','.join(m for m in sys.modules if m.startswith('ingestd.intake')))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                         text=True, check=True)
    assert out.stdout.strip() == ""


def test_header_helpers_are_shared() -> None:
    """header_length and header_block are one implementation, importable from both places."""
    from ingestd import mailbytes
    from ingestd.intake import headers

    assert headers.header_length is mailbytes.header_length
    assert headers.header_block is mailbytes.header_block
    raw = b"Subject: x\r\nFrom: a@b\r\n\r\nbody"
    assert mailbytes.header_length(raw, 1024) == len(b"Subject: x\r\nFrom: a@b")
    assert mailbytes.header_block(raw) == b"Subject: x\r\nFrom: a@b"
    assert mailbytes.header_length(b"X: " + b"a" * 5000, 1024) == 1025


def test_public_names_of_the_parse_stage() -> None:
    """The names other modules import from the parse stage are all still there."""
    from ingestd.pipeline.stages import parse as stage

    for name in ("parse", "parse_message", "clean_text", "safe_filename", "sanitise_html"):
        assert callable(getattr(stage, name))
    assert stage.safe_filename("../../etc/passwd") == "passwd"
    assert stage.clean_text("a\x00b") == "ab"


@pytest.mark.parametrize("raw", [
    b"Subject: x\rFrom: a@b\r\rbody\rmore",  # old Mac mail: CR only
    b"Subject: x\r\nFrom: a@b\r\n\r\nbody",
    b"Subject: x\nFrom: a@b\n\nbody",
    b"Subject: x\nFrom: a@b\r\n\nbody",  # mixed line ends, as relays leave them
    b"Subject: x\r\nFrom: a@b\n\r\nbody",
    b"Subject: x\r\nFrom: a@b\r\n\rbody",
    b"Subject: x\nFrom: a@b\n\rbody",
    b"Subject: x\r\nFrom: a@b\r\r\nbody",  # CR CR LF: a CR line, then an empty CRLF line
], ids=["cr", "crlf", "lf", "crlf-after-lf", "lf-then-crlf", "crlf-then-cr", "lf-then-cr",
        "cr-cr-lf"])
def test_the_header_block_ends_where_the_stdlib_parser_ends_it(raw: bytes) -> None:
    """Any line end followed by an empty line ends it (CRLF, LF or a lone CR, in any mix)."""
    from ingestd import mailbytes

    fields = raw[:raw.index(b"a@b") + 3]
    assert mailbytes.header_length(raw, 1024) == len(fields)
    assert mailbytes.header_block(raw) == fields
    parsed = BytesParser(policy=compat32).parsebytes(raw)
    assert (parsed["From"], str(parsed.get_payload()).startswith("body")) == ("a@b", True)


def test_a_crlf_line_end_alone_does_not_end_the_header_block() -> None:
    """The CR of a CRLF is no line end of its own: CRLF then a field is no blank line."""
    from ingestd import mailbytes

    raw = b"Subject: x\r\nFrom: a@b\r\nTo: c@d\r\n\r\nbody"
    assert mailbytes.header_block(raw) == b"Subject: x\r\nFrom: a@b\r\nTo: c@d"
    assert mailbytes.header_length(b"X: 1\r\n" * 400, 1024) == 1025
