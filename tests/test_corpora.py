"""Every message of the third-party corpora, in one `ingest` run: none lost, none stuck."""

from __future__ import annotations

import collections
import contextlib
import io
import json
from pathlib import Path

import sqlalchemy as sa

from ingestd.cli.main import main
from ingestd.config import load_settings
from ingestd.db.engine import make_engine
from ingestd.db.tables import INBOUND
from tests.conftest import write_config
from tests.corpora import manifest, require_corpora
from tests.processing_env import processing_config

FINAL = {"processed", "duplicate", "quarantined", "ignored"}


def test_every_corpus_message_is_accounted_for(tmp_path: Path) -> None:
    """Only noheaders files may be refused; every stored message ends in a final status."""
    root = require_corpora()
    files = manifest(root)
    config = processing_config(f"sqlite:///{tmp_path}/corpus.db")
    config["processing"]["limits"] = {}  # the documented defaults, not the tests' small ones
    path = write_config(tmp_path, config)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["ingest", "--json", "--config", str(path), "--mailbox", "support",
                     *(str(f.path) for f in files)])
    report = json.loads(out.getvalue())
    assert code in (0, 65), report  # 65: some input was not mail
    by_file: dict[str, list[dict[str, object]]] = collections.defaultdict(list)
    for result in report["results"]:
        by_file[str(result["origin"]).split("#", 1)[0]].append(result)

    refused_noheaders, taken_noheaders, problems = [], [], []
    corpus_of: dict[int, str] = {}
    for f in files:
        results = by_file.get(str(f.path), [])
        outcomes = {r["outcome"] for r in results}
        if "noheaders" in f.flags:
            (refused_noheaders if outcomes == {"refused"} else taken_noheaders).append(f.path)
            continue
        if not results or outcomes != {"stored"}:
            problems.append(f"{f.path}: {results}")
        for r in results:
            if r["id"] is not None:
                corpus_of[int(r["id"])] = f.corpus  # type: ignore[arg-type]
    assert problems == [], "mail-like files not stored:\n" + "\n".join(problems)

    engine = make_engine(load_settings(path).database)
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.select(INBOUND.c.id, INBOUND.c.status, INBOUND.c.reason)).all()
    finally:
        engine.dispose()
    stuck = [r for r in rows if r.status not in FINAL]
    assert stuck == [], f"messages left unfinished: {stuck[:20]}"
    assert all(r.reason for r in rows if r.status in ("duplicate", "quarantined"))

    table: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for r in rows:
        table[corpus_of.get(r.id, "noheaders-taken")][r.status] += 1
    quarantined = collections.Counter(r.reason for r in rows if r.status == "quarantined")
    print("\ncorpus outcomes (messages):")
    for corpus in sorted(table):
        print(f"  {corpus:<28} {dict(sorted(table[corpus].items()))}")
    print(f"noheaders refused: {len(refused_noheaders)}; taken as mail: {len(taken_noheaders)}")
    for p in taken_noheaders:
        print(f"  taken: {p.relative_to(root)}")
    print(f"quarantine reasons: {dict(quarantined)}")
