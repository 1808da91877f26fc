"""Does a rule's ``match`` hold for a message, and what did its regexes capture."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ingestd.rules.model import Condition, Test
from ingestd.rules.view import MessageView

# A regular expression sees at most this much of a value, for at most this long.
REGEX_TEXT_CHARS = 256 * 1024
REGEX_SECONDS = 0.25


class RegexTimeout(Exception):
    """A rule's regex ran out of time on this message; the rule does not match."""


_TEXT_FIELDS = ("mailbox", "from_address", "from_domain", "to", "cc", "to_or_cc", "subject",
                "body", "attachment_name", "sender_kind")


def holds(condition: Condition, view: MessageView, captures: dict[str, str]) -> tuple[bool, str]:
    """(whether every key of ``condition`` holds, why not / what matched)."""
    for name in _TEXT_FIELDS:
        test = getattr(condition, name)
        if test is not None and not passes(test, view.values(name), captures):
            return False, f"{_label(name)} {_describe(test)} does not hold"
    for header, test in (condition.headers or {}).items():
        if not passes(test, view.header(header), captures):
            return False, f"header {header} {_describe(test)} does not hold"
    if condition.vip is not None and condition.vip != view.vip:
        return False, f"vip is {view.vip}"
    if condition.has_attachment is not None and \
            condition.has_attachment != bool(view.attachments):
        return False, f"has_attachment is {bool(view.attachments)}"
    for part in condition.all or ():
        ok, why = holds(part, view, captures)
        if not ok:
            return False, why
    if condition.any is not None:
        reasons = []
        for part in condition.any:
            # A branch that fails keeps none of its captures.
            branch = dict(captures)
            ok, why = holds(part, view, branch)
            if ok:
                captures.update(branch)
                break
            reasons.append(why)
        else:
            return False, "none of any: " + "; ".join(reasons)
    if condition.not_ is not None:
        ok, _ = holds(condition.not_, view, {})
        if ok:
            return False, "its not: condition holds"
    return True, "matched"


def passes(test: Test, values: Sequence[str], captures: dict[str, str]) -> bool:
    """A test on several values holds if one value passes (negated: if none does)."""
    operator, negated, operand = test.operator
    hit = any(_one(test, operator, operand, value, captures) for value in values)
    return not hit if negated else hit


def _one(test: Test, operator: str, operand: Any, value: str,
         captures: dict[str, str]) -> bool:
    if operator == "matches":
        try:
            found = test.pattern.search(value[:REGEX_TEXT_CHARS], timeout=REGEX_SECONDS)
        except TimeoutError:
            # A pattern that backtracks without end on this text: no match, and it says so.
            raise RegexTimeout(operand) from None
        if found is None:
            return False
        captures.update({k: v for k, v in found.groupdict().items() if v is not None})
        return True
    text = value.casefold()
    if operator == "any_of":
        return text in {o.casefold() for o in operand}
    wanted = str(operand).casefold()
    if operator == "equals":
        return text == wanted
    if operator == "contains":
        return wanted in text
    if operator == "starts_with":
        return text.startswith(wanted)
    if operator == "ends_with":
        return text.endswith(wanted)
    raise AssertionError(f"unknown operator {operator}")


def _label(name: str) -> str:
    return "from" if name == "from_address" else name


def _describe(test: Test) -> str:
    operator, negated, operand = test.operator
    shown = operand
    return f"{'not_' if negated else ''}{operator} {shown!r}"
