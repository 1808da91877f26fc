"""What every benchmark prints about the code it measured (imported by the scripts beside it)."""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import platform
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any


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


REPO = Path(__file__).resolve().parent.parent


def load_file(name: str, path: Path) -> ModuleType:
    """A module of this checkout, imported by its path.

    For a process whose ``ingestd`` comes from another checkout (``--tree``),
    which may not have the module: only ``ingestd`` should come from there.
    """
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while it runs
    spec.loader.exec_module(module)
    return module


def corpus_messages() -> tuple[Path, list[Any], int]:
    """(the corpora's root, every message ``ingest`` takes from their manifest, pieces refused).

    Files flagged ``noheaders`` are skipped; ``tests/corpus_quality.py`` says how
    the files are split. Exits when the corpora are not there.
    """
    corpora = load_file("bench_corpora", REPO / "tests" / "corpora.py")
    root = corpora.corpora_root()
    if root is None:
        sys.exit("third-party corpora not found: ../shared/corpora or $INGESTD_CORPORA")
    quality = load_file("bench_corpus_quality", REPO / "tests" / "corpus_quality.py")
    messages, refused = quality.corpus_messages(corpora.manifest(root))
    return root, messages, refused


def run_child(script: str, tree: Path, args: Sequence[str]) -> Any:
    """The JSON that ``script --child ARGS`` prints, run with ``ingestd`` from checkout ``tree``."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    done = subprocess.run([sys.executable, script, "--child", *args],
                          env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.exit(f"{Path(script).name}: measuring {tree} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout)


def is_checkout(tree: Path) -> bool:
    return (tree / "ingestd" / "pipeline" / "stages" / "parse" / "__init__.py").exists()


def quiet_mail_parser() -> None:
    """mail-parser logs a warning for every content type it does not handle itself."""
    logging.getLogger("mailparser").setLevel(logging.ERROR)


def run_environment(package: Path | None) -> dict[str, object]:
    """What a report's first line says: the commit measured and where from, the machine, now."""
    loadavg = Path("/proc/loadavg")
    return {
        "ingestd": ingestd_revision(package),
        "from": str(package or "?"),
        "cpus": os.cpu_count(),
        "load average before": " ".join(loadavg.read_text().split()[:3])
        if loadavg.exists() else "?",
        "python": platform.python_version(),
    }
