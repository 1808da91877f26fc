"""Bounce reading measured on sisimai's set of emails (third-party, outside the repository).

The denominator (issue 22): the ``maildir/bsd`` files whose ``expected-bounces.json``
entries have a status starting with 4 or 5 — key ``lhost-postfix`` + ``02`` is the file
``lhost-postfix-02.eml``; keys without a file and files without a key are left out. The
``rfc3834-*`` files have entries too, but they are auto-replies (and must come out as
such), so they are not counted as bounces to detect. Reported (``pytest -s``): bounces
detected, failed recipients found, the hard / soft call against the class of the expected
status (paired per file as multisets: the expectations carry no addresses), non-bounces in
``maildir/not/`` taken for bounces, ARF reports taken for bounces.

Asserted against floors (today's figures minus a small margin), so that a change that
reads fewer bounces fails here; every file still missed is printed with its name.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from email.parser import BytesHeaderParser
from email.policy import compat32
from pathlib import Path

import pytest

from ingestd.bounces import read_bounce
from ingestd.pipeline.stages.protect import auto_reply_signal
from tests.corpora import require_corpora

SISIMAI = Path("sisimai-set-of-emails")
# Measured 2026-12-04: (agreed, out of).
MEASURED = {"detected": (520, 531), "found": (548, 559), "class": (536, 548)}
MARGIN = 0.01
# A "mailbox full" notice that reads as a bounce to a person (postmaster, null return
# path, "email bounce notification", the failed address named): sisimai files it under
# not-bounces after a bug report; ingestd records it as a bounce, which loses nothing.
READ_AS_BOUNCE_ON_PURPOSE = {"rb-issue-368-bug.eml"}


def _expected(root: Path) -> list[tuple[Path, list[str]]]:
    table = json.loads((root / "expected-bounces.json").read_text())
    files = []
    for key, entries in table.items():
        for number, expected in entries.items():
            path = root / "maildir" / "bsd" / f"{key}-{number}.eml"
            statuses = [e["status"] for e in expected if e["status"][:1] in ("4", "5")]
            if path.exists() and statuses and not key.startswith("rfc3834"):
                files.append((path, statuses))
    return sorted(files)


def test_bounces_in_the_sisimai_corpus() -> None:
    root = require_corpora() / SISIMAI
    if not (root / "expected-bounces.json").exists():
        pytest.skip(f"sisimai corpus not found under {root}")
    started = time.perf_counter()
    files = recipients = detected = found = right = paired = 0
    missed, wrong = [], []
    for path, statuses in _expected(root):
        files += 1
        recipients += len(statuses)
        bounce = read_bounce(path.read_bytes())
        if bounce is None:
            missed.append(path.name)
            continue
        detected += 1
        ours = Counter("5" if r.hard else "4" for r in bounce.recipients)
        theirs = Counter(s[0] for s in statuses)
        count = min(len(bounce.recipients), len(statuses))
        found += count
        agreed = min(sum((ours & theirs).values()), count)
        right += agreed
        paired += count
        if agreed < count:
            wrong.append(f"{path.name} ours {sorted(r.status for r in bounce.recipients)} "
                         f"expected {sorted(statuses)}")
    not_bounces = [p.name for p in sorted((root / "maildir" / "not").glob("*.eml"))
                   if read_bounce(p.read_bytes()) is not None]
    arf = [p.name for p in sorted((root / "maildir" / "bsd").glob("arf-*.eml"))
           if read_bounce(p.read_bytes()) is not None]
    auto_replies = sorted((root / "maildir" / "bsd").glob("rfc3834-*.eml"))
    not_auto = [p.name for p in auto_replies if read_bounce(p.read_bytes()) is not None
                or auto_reply_signal(BytesHeaderParser(policy=compat32).parsebytes(
                    p.read_bytes()), None, list_headers=False) is None]
    print(f"\nsisimai: {files} bounce files, {recipients} failed recipients "
          f"({time.perf_counter() - started:.1f} s)")
    print(f"  bounces detected:          {detected}/{files}")
    print(f"  failed recipients found:   {found}/{recipients}")
    print(f"  hard/soft as expected:     {right}/{paired} ({100 * right / max(paired, 1):.1f}%)")
    print(f"  not/ taken for bounces:    {not_bounces}")
    print(f"  ARF taken for bounces:     {arf}")
    print(f"  rfc3834 not auto-replies:  {not_auto} of {len(auto_replies)}")
    print("  missed: " + ", ".join(missed))
    print("  hard/soft differs:\n    " + "\n    ".join(wrong))

    assert set(not_bounces) <= READ_AS_BOUNCE_ON_PURPOSE
    assert arf == [] and not_auto == [] and auto_replies
    for name, value, total in (("detected", detected, files), ("found", found, recipients),
                               ("class", right, paired)):
        agreed, out_of = MEASURED[name]
        assert value / total >= agreed / out_of - MARGIN, (
            f"{name}: {value}/{total}, below {agreed}/{out_of} measured minus {MARGIN}")
