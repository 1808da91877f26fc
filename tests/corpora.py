"""Where the third-party corpora live, and their manifest (see ../shared/corpora/INDEX.md)."""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def corpora_root() -> Path | None:
    candidates = [os.environ.get("INGESTD_CORPORA"), REPO.parent / "shared" / "corpora",
                  "/work/shared/corpora"]
    for candidate in candidates:
        if candidate and (Path(candidate) / "manifest.tsv").exists():
            return Path(candidate)
    return None


def require_corpora() -> Path:
    root = corpora_root()
    if root is None:
        pytest.skip("third-party corpora not found: ../shared/corpora (or $INGESTD_CORPORA) "
                    "is absent, as in a user's fresh clone")
    return root


@dataclass(frozen=True)
class CorpusFile:
    corpus: str
    path: Path
    flags: frozenset[str]


def manifest(root: Path) -> list[CorpusFile]:
    with (root / "manifest.tsv").open(newline="") as handle:
        return [
            CorpusFile(row["corpus"], root / row["path"],
                       frozenset(f for f in (row["flags"] or "").split(",") if f))
            for row in csv.DictReader(handle, delimiter="\t")
        ]
