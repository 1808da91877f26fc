"""What every benchmark prints about the code it measured (imported by the scripts beside it)."""

from __future__ import annotations

import importlib.util
import subprocess
from pathlib import Path


def ingestd_package(tree: Path | None = None) -> Path | None:
    """The ``ingestd`` package measured: the one in ``tree``, else the one this Python imports."""
    if tree is not None:
        return tree / "ingestd"
    spec = importlib.util.find_spec("ingestd")
    return Path(spec.origin).parent if spec and spec.origin else None


def ingestd_revision(package: Path | None) -> str:
    """The commit ``package`` comes from, "+dirty" when its files differ from it."""
    if package is None:
        return "unknown"
    try:
        head = subprocess.run(["git", "-C", str(package), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, check=True).stdout.strip()
        changed = subprocess.run(["git", "-C", str(package), "status", "--porcelain", "--", "."],
                                 capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+dirty" if changed else "")
