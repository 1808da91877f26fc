"""`ingestd run` as a child process logging JSON lines to a file, for reload tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent.parent


def start_logged_daemon(config: dict[str, Any], directory: Path, write: Any
                        ) -> tuple[subprocess.Popen[bytes], Path, Path]:
    """(the process, its config file, its log file); ``write`` is tests.conftest.write_config."""
    config["logging"] = {"level": "info", "format": "json"}
    path = write(directory, config)
    log = directory / "daemon.log"
    with log.open("wb") as out:
        daemon = subprocess.Popen(
            [sys.executable, "-m", "ingestd", "run", "--config", str(path)], stdout=out,
            stderr=subprocess.STDOUT, cwd=directory,
            env={**os.environ, "PYTHONPATH": str(REPO)})
    return daemon, path, log


def events(log: Path, name: str) -> list[dict[str, Any]]:
    """Every logged event called ``name``, oldest first."""
    found = []
    for line in log.read_text(errors="replace").splitlines():
        if f'"{name}"' in line:
            try:
                found.append(json.loads(line))
            except ValueError:
                continue
    return found
