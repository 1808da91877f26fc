"""Passwords and tokens: read from a file or an environment variable, when needed, never logged."""

from __future__ import annotations

import os
from pathlib import Path

from ingestd.errors import CredentialsRejected


def read_secret(file: Path | None, env: str | None, what: str) -> str:
    """The secret, read now (a rotated file is picked up on the next connection).

    A missing or empty secret is ``CredentialsRejected``: nothing the
    server does can fix it, a person must, and the mailbox says so
    (needs_reauth) instead of retrying.
    """
    if file is not None:
        try:
            value = file.read_text(encoding="utf-8")
        except OSError as exc:
            raise CredentialsRejected(f"{what} file {file}: {exc.strerror or exc}") from exc
        except UnicodeDecodeError as exc:
            raise CredentialsRejected(f"{what} file {file}: not UTF-8 text") from exc
        source = f"{what} file {file}"
    elif env is not None:
        value = os.environ.get(env, "")
        source = f"environment variable {env}"
    else:
        raise CredentialsRejected(f"no {what} configured")
    # Editors and `echo` add a final newline; no password ends in one.
    value = value.rstrip("\r\n")
    if not value:
        raise CredentialsRejected(f"{source} is empty or unset")
    return value
