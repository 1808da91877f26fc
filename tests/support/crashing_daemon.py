"""`ingestd run` with a parse stage that SIGKILLs the process on marked messages.

Stands in for what no test can summon on demand: a message that makes the
worker die (out of memory, a segfault in a C extension). Marked with
``X-Test-Kill: always`` it kills every time; ``once`` kills the first time
only (a flag file remembers). Worker processes run this module too (spawn
imports the parent's main script), so the patch reaches them.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import ingestd.worker
from ingestd.cli.main import main
from ingestd.pipeline.context import MessageContext, Outcome
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


ingestd.worker.PREPARE = (("parse", killing_parse), *ingestd.worker.PREPARE[1:])

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
