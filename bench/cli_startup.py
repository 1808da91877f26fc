"""Start-up time of the ``ingestd`` command, against a baseline measured in the same run.

Usage (from the repository root, after ``pip install -e .`` into ``.venv``):

    .venv/bin/python bench/cli_startup.py [--runs N] [--json]

Each command runs N times as a fresh subprocess (the runs of the commands are
interleaved, so a burst of load elsewhere hits them all alike), after one
untimed warm-up run each:

* ``baseline``: ``python -c 'import sqlalchemy, pydantic, yaml'``, what merely
  loading the libraries a database command needs costs on this machine;
* ``ingestd --version`` and ``ingestd --help``;
* ``ingestd ingest --no-process --mailbox support -``: one small message on
  stdin into a SQLite file, as a Postfix pipe transport runs it per message.

Figures are medians (and minimums) in ms and, in parentheses, ratios to the
baseline of the same run; bench/README.md explains them. Not part of the tests.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from benchlib import ingestd_package, ingestd_revision

INSTALL = "python3 -m venv .venv && .venv/bin/pip install -e ."

# Targets from the issue (Foundation 4, defect 11).
VERSION_TARGET_MS = 300.0
HELP_TARGET_MS = 300.0
INGEST_OVER_BASELINE_MS = 150.0

CONFIG = """\
database:
  url: sqlite:///{db}
logging:
  level: warning
mailboxes:
  - name: support
    addresses: [support@example.com]
"""

MESSAGE = """\
From: Alice Smith <alice@acme.example>\r
To: support@example.com\r
Subject: Printer on floor 2 is broken\r
Date: Tue, 24 Nov 2026 10:00:00 +0000\r
Message-ID: <startup-{n}@acme.example>\r
\r
The printer jams on every page (run {n}).\r
"""


@dataclass
class Command:
    name: str
    argv: list[str]
    stdin: bool = False  # feed a fresh small message on stdin


@dataclass
class Figure:
    name: str
    median_ms: float
    min_ms: float
    ratio: float  # median / the baseline's median
    runs: int


@dataclass
class Target:
    what: str
    limit_ms: float
    measured_ms: float

    @property
    def met(self) -> bool:
        return self.measured_ms <= self.limit_ms


def ingestd_script() -> Path | None:
    """The ``ingestd`` console script installed beside this Python, if there is one."""
    script = Path(sys.executable).parent / "ingestd"
    return script if script.exists() else None


def require_installation() -> Path:
    """The ``ingestd`` script; exit 2 with what to run when the install is missing."""
    missing = [m for m in ("ingestd", "sqlalchemy", "pydantic", "yaml")
               if importlib.util.find_spec(m) is None]
    script = ingestd_script()
    if missing or script is None:
        where = Path(sys.executable).parent
        what = ", ".join(missing) if missing else f"the ingestd script in {where}"
        print(f"cli_startup.py: {what} not found for {sys.executable}.\n"
              f"Install ingestd first (from the repository root): {INSTALL}\n"
              "then run: .venv/bin/python bench/cli_startup.py", file=sys.stderr)
        sys.exit(2)
    return script


def commands(script: Path, config: Path) -> list[Command]:
    return [
        Command("baseline", [sys.executable, "-c", "import sqlalchemy, pydantic, yaml"]),
        Command("ingestd --version", [str(script), "--version"]),
        Command("ingestd --help", [str(script), "--help"]),
        Command("ingestd ingest --no-process -",
                [str(script), "ingest", "--config", str(config), "--no-process",
                 "--mailbox", "support", "-"], stdin=True),
    ]


class Runner:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.messages = 0

    def once(self, command: Command) -> float:
        """Run ``command`` once; seconds of wall time. Exits if it fails."""
        data = None
        if command.stdin:
            self.messages += 1
            data = MESSAGE.format(n=self.messages).encode()
        started = time.perf_counter()
        done = subprocess.run(command.argv, input=data, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, cwd=self.directory, check=False)
        elapsed = time.perf_counter() - started
        if done.returncode != 0:
            print(f"cli_startup.py: `{command.name}` exited {done.returncode}:\n"
                  f"{done.stderr.decode(errors='replace')[-2000:]}", file=sys.stderr)
            sys.exit(1)
        return elapsed


def measure(runs: int) -> list[Figure]:
    script = require_installation()
    with tempfile.TemporaryDirectory(prefix="ingestd-startup-") as tmp:
        directory = Path(tmp)
        config = directory / "ingestd.yaml"
        config.write_text(CONFIG.format(db=directory / "ingestd.db"))
        runner = Runner(directory)
        todo = commands(script, config)
        for command in todo:  # warm-up: file cache, .pyc files, the schema
            runner.once(command)
        samples: dict[str, list[float]] = {c.name: [] for c in todo}
        for _ in range(runs):
            for command in todo:
                samples[command.name].append(runner.once(command))
    base = statistics.median(samples["baseline"])
    return [
        Figure(name, statistics.median(s) * 1000, min(s) * 1000, statistics.median(s) / base,
               len(s))
        for name, s in samples.items()
    ]


def targets(figures: Sequence[Figure]) -> list[Target]:
    by_name = {f.name: f for f in figures}
    base = by_name["baseline"].median_ms
    return [
        Target("ingestd --version <= 300 ms", VERSION_TARGET_MS,
               by_name["ingestd --version"].median_ms),
        Target("ingestd --help <= 300 ms", HELP_TARGET_MS, by_name["ingestd --help"].median_ms),
        Target(f"ingest of one message <= baseline + {INGEST_OVER_BASELINE_MS:.0f} ms",
               base + INGEST_OVER_BASELINE_MS, by_name["ingestd ingest --no-process -"].median_ms),
    ]


def environment(runs: int) -> dict[str, object]:
    package = ingestd_package()
    return {
        "ingestd": ingestd_revision(package),
        "from": str(package or "?"),
        "runs": runs,
        "cpus": os.cpu_count(),
        "load average before": " ".join(Path("/proc/loadavg").read_text().split()[:3])
        if Path("/proc/loadavg").exists() else "?",
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def print_report(env: dict[str, object], figures: Sequence[Figure],
                 found: Sequence[Target]) -> None:
    print(", ".join(f"{key}: {value}" for key, value in env.items()))
    print()
    width = max(len(f.name) for f in figures)
    print(f"{'command':<{width}}  {'median ms':>14}  {'min ms':>8}")
    for f in figures:
        print(f"{f.name:<{width}}  {f.median_ms:>6.0f} ({f.ratio:.2f}x)  {f.min_ms:>8.0f}")
    print()
    print("(x): ratio to the baseline's median in this run, "
          "python -c 'import sqlalchemy, pydantic, yaml'.")
    print()
    for t in found:
        state = "met" if t.met else "NOT met"
        print(f"target {t.what}: {state} ({t.measured_ms:.0f} ms, limit {t.limit_ms:.0f} ms)")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15, help="timed runs per command (15)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    env = environment(args.runs)
    figures = measure(args.runs)
    found = targets(figures)
    if args.json:
        print(json.dumps({"environment": env, "figures": [asdict(f) for f in figures],
                          "targets": [{**asdict(t), "met": t.met} for t in found]}, indent=2))
    else:
        print_report(env, figures, found)
    return 0


if __name__ == "__main__":
    sys.exit(main())
