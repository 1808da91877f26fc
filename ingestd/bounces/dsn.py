"""RFC 3464 delivery status notifications: the per-recipient fields.

A ``message/delivery-status`` part is a block of per-message fields and one
block per recipient (``Final-Recipient``, ``Action``, ``Status``,
``Diagnostic-Code``), separated by blank lines. Several vendors also paste
those fields into a text part; the same reader serves both.
"""

from __future__ import annotations

import re
from email.message import Message

from ingestd.bounces.report import FailedRecipient, status_in

_FIELD = re.compile(r"^([A-Za-z][A-Za-z0-9-]*)[ \t]*:[ \t]*(.*)$")
# No "@" inside either side: "a@a@a@..." must not be tried every way it splits.
_ADDRESS = re.compile(r"[^\s<>\"();,@]{1,64}@[^\s<>\"();,@]{1,255}\.[A-Za-z0-9-]+")
# Any other action (failed, delayed, a vendor's own word) reports a failure.
_SUCCESS_ACTIONS = {"delivered", "relayed", "expanded"}


def field_blocks(text: str) -> list[dict[str, str]]:
    """Blank-line separated blocks of ``Name: value`` fields (folds joined), names lower case."""
    blocks: list[dict[str, str]] = []
    current: dict[str, str] = {}
    last: str | None = None
    for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        if not line.strip():
            if current:
                blocks.append(current)
            current, last = {}, None
            continue
        if line[:1] in " \t" and last is not None:
            if len(current[last]) < 1000:  # a field's first 1000 characters say enough
                current[last] = (current[last] + " " + line.strip())[:1000]
            continue
        found = _FIELD.match(line)
        if found is None:
            continue
        last = found.group(1).lower()
        current.setdefault(last, found.group(2).strip()[:1000])
    if current:
        blocks.append(current)
    return blocks


def status_text(part: Message) -> str:
    """The fields of a delivery-status part as text, however the stdlib stored them."""
    payload = part.get_payload()
    if isinstance(payload, list):
        # The stdlib reads message/delivery-status into one Message per block.
        return "\n\n".join("\n".join(f"{k}: {v}" for k, v in block.items())
                           for block in payload if isinstance(block, Message))
    data = part.get_payload(decode=True)
    if isinstance(data, bytes):
        return data.decode("utf-8", "replace")
    return str(payload)


def dsn_recipients(text: str) -> tuple[list[FailedRecipient], bool]:
    """(the failed recipients, whether any recipient block was seen at all)."""
    failed: list[FailedRecipient] = []
    seen = False
    for block in field_blocks(text):
        address = _recipient(block)
        if address is None:
            continue
        seen = True
        action = block.get("action", "").split()[0].lower() if block.get("action") else ""
        if action in _SUCCESS_ACTIONS:
            continue
        status = _status(block, action)
        if status is None:
            continue
        if all(r.address != address for r in failed):
            # The status class decides hard / soft, also for "Action: failed"
            # with a 4.x.x: what a 4.x.x means for the address is temporary.
            # "expired" (SendGrid and others): the MTA gave up, whatever the class.
            failed.append(FailedRecipient(address, status, final=action == "expired"))
    return failed, seen


def _recipient(block: dict[str, str]) -> str | None:
    for name in ("final-recipient", "original-recipient", "x-actual-recipient"):
        value = block.get(name)
        if value:
            # "rfc822; user@example.com" (the address type may be missing)
            found = _ADDRESS.search(value.rpartition(";")[2] or value)
            if found is not None:
                return found.group().strip(".").lower()
    return None


def _status(block: dict[str, str], action: str) -> str | None:
    for name in ("status", "diagnostic-code", "x-postfix-diagnostic-code"):
        status = status_in(block.get(name, ""))
        if status is not None:
            if action == "delayed" and status.startswith("5"):
                return "4" + status[1:]
            return status
    diagnostic = block.get("diagnostic-code", "")
    reply = re.search(r"(?<!\d)([45])\d\d(?!\d)", diagnostic)
    if reply is not None:
        return f"{reply.group(1)}.0.0"
    # "expired" (SendGrid and others): given up after retrying, a timeout's class.
    if action in ("delayed", "expired"):
        return "4.0.0"
    return "5.0.0"
