"""What every benchmark prints about the code it measured (imported by the scripts beside it)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
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


def daemon_command(tree: Path | None, config: Path) -> tuple[list[str], dict[str, str]]:
    """argv and environment of ``ingestd run``, from this venv or from checkout ``tree``."""
    env = dict(os.environ)
    if tree is None:
        return [sys.executable, "-m", "ingestd", "run", "--config", str(config)], env
    env["PYTHONPATH"] = str(tree)
    code = (f"import sys; sys.path.insert(0, {str(tree)!r}); "
            "from ingestd.cli.main import main; sys.exit(main(sys.argv[1:]))")
    return [sys.executable, "-c", code, "run", "--config", str(config)], env
