"""Text that may go into any database column, whatever bytes it came from."""

from __future__ import annotations


def clean_text(value: object) -> str:
    """Text safe for any database: valid UTF-8, no NUL."""
    text = value if isinstance(value, str) else str(value)
    return text.encode("utf-8", "replace").decode("utf-8").replace("\x00", "")
