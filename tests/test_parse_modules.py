"""The parse package's layout: processing does not import intake; old import paths still work."""

from __future__ import annotations

import subprocess
import sys

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
