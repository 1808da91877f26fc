"""Whether a process of this host is still running (claims and files named by pid)."""

from __future__ import annotations

import os


def pid_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive
    return True
