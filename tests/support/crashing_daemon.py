"""`ingestd run` with a parse stage that SIGKILLs the process on marked messages.

Stands in for what no test can summon on demand: a message that makes the
worker die (out of memory, a segfault in a C extension). Marked with
``X-Test-Kill: always`` it kills every time; ``once`` kills the first time
only (a flag file remembers). The pipeline is handed to the daemon, which
gives it to its workers: threads, or spawned processes (which unpickle
``killing_parse`` from this script, imported there as their main module).
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

from ingestd.cli.run import run_daemon
from ingestd.config import config_path, load_settings
from ingestd.pipeline.context import MessageContext, Outcome
from ingestd.pipeline.order import PIPELINE
from ingestd.pipeline.stages.parse import parse


def _die() -> None:
    # KILL_SCOPE=group takes the whole instance down (started in its own
    # session), the way a host dies; otherwise only this process dies.
    if os.environ.get("KILL_SCOPE") == "group":
        os.killpg(os.getpgid(0), signal.SIGKILL)
    os.kill(os.getpid(), signal.SIGKILL)


def killing_parse(ctx: MessageContext) -> Outcome | None:
    if b"X-Test-Hang: yes" in ctx.raw:
        time.sleep(3600)
    if b"X-Test-Kill: always" in ctx.raw:
        _die()
    if b"X-Test-Kill: once" in ctx.raw:
        flag = Path(os.environ["KILL_ONCE_FLAG"])
        if not flag.exists():
            flag.write_text("killed once")
            _die()
    return parse(ctx)


if __name__ == "__main__":
    # Invoked as `crashing_daemon.py run --config PATH`, like `ingestd run`.
    settings = load_settings(config_path(sys.argv[sys.argv.index("--config") + 1]))
    sys.exit(run_daemon(settings, PIPELINE.replacing("parse", killing_parse)))
