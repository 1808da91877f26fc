"""Reading ``Authentication-Results`` header fields (RFC 8601), tolerantly.

A field that cannot be read (an unclosed comment or quoted string) does not
count, and never raises. Inside a readable field, a piece that is not a
``method=result`` statement is skipped: Exchange Online writes bare domains
between its statements (``header.d=none;outlook.com; dmarc=pass``), and a
strict reader would throw its whole verdict away. ``authres`` (the PyPI
parser) was judged and not used: it raises on exactly such fields and on
several other real ones, and ships no type information.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

FIELD = "authentication-results"

# property = value, with the white space RFC 8601 allows around "=".
_STATEMENT = re.compile(r'([A-Za-z0-9_.\-/]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^\s"]+)')


@dataclass(frozen=True)
class MethodResult:
    """One ``method=result`` statement and its properties (``header.d``, ``smtp.mailfrom``)."""

    method: str  # lower case, without a version: "dkim"
    result: str  # lower case: "pass"
    properties: dict[str, str] = field(default_factory=dict)  # keys in lower case

    def domain(self) -> str | None:
        """The domain a DKIM or DMARC statement is about: ``header.d``, else the domain of
        ``header.i`` (Gmail writes only that), else ``header.from``."""
        for key in ("header.d", "header.i", "header.from"):
            value = self.properties.get(key)
            if value:
                domain = value.rpartition("@")[2].strip().rstrip(".").lower()
                if domain and domain != "none":
                    return domain
        return None

    def __str__(self) -> str:
        domain = self.properties.get("header.d") or self.properties.get("header.i")
        return f"{self.method}={self.result}" + (f" header.d={domain}" if domain else "")


@dataclass(frozen=True)
class AuthenticationResults:
    """One readable ``Authentication-Results`` field."""

    authserv_id: str | None  # lower case; None when the field names none (Exchange Online)
    results: tuple[MethodResult, ...]

    @property
    def writer(self) -> str:
        return self.authserv_id or "(no authserv-id)"


def topmost_fields(headers: Iterable[tuple[str, str]]) -> list[str]:
    """The values of the topmost run of adjacent ``Authentication-Results`` fields.

    A receiving MTA prepends its fields (RFC 8601 section 5), so only the
    first run from the top can be its own; anything further down was there
    before it, and may have been written by the sender.
    """
    values: list[str] = []
    for name, value in headers:
        if name.strip().lower() == FIELD:
            values.append(value)
        elif values:
            break
    return values


def parse(value: str) -> AuthenticationResults | None:
    """One field's value, or None when it cannot be read."""
    text = _without_comments(value)
    if text is None:
        return None
    pieces = [p.strip() for p in _split_outside_quotes(text, ";")]
    if not pieces or not pieces[0]:
        return None
    authserv_id: str | None = None
    if _STATEMENT.search(pieces[0]) is None:
        # authserv-id [version]; the version says nothing we need.
        authserv_id = _unquoted(pieces[0].split()[0]).lower().rstrip(".")
        pieces = pieces[1:]
    results = tuple(r for r in (_statement(p) for p in pieces) if r is not None)
    if authserv_id is None and not results:
        return None
    return AuthenticationResults(authserv_id, results)


def parse_all(values: Sequence[str]) -> list[AuthenticationResults]:
    return [r for r in (parse(v) for v in values) if r is not None]


def _statement(piece: str) -> MethodResult | None:
    matches = list(_STATEMENT.finditer(piece))
    if not matches or matches[0].start() != 0:
        return None  # "none", a bare domain, or words we cannot place
    method = matches[0].group(1).split("/")[0].lower()
    result = _unquoted(matches[0].group(2)).lower()
    if not method or not result:
        return None
    properties: dict[str, str] = {}
    for match in matches[1:]:
        key = match.group(1).lower()
        properties.setdefault(key, _unquoted(match.group(2)))
    return MethodResult(method, result, properties)


def _unquoted(value: str) -> str:
    if len(value) >= 2 and value.startswith('"') and value.endswith('"'):
        return re.sub(r"\\(.)", r"\1", value[1:-1])
    return value


def _without_comments(value: str) -> str | None:
    """``value`` with (nested) comments blanked out; None when a comment or a quoted
    string is never closed."""
    out: list[str] = []
    depth = 0
    quoted = False
    escaped = False
    for ch in value:
        if escaped:
            escaped = False
            if depth == 0:
                out.append(ch)
            continue
        if ch == "\\" and (quoted or depth):
            escaped = True
            if depth == 0:
                out.append(ch)
            continue
        if quoted:
            out.append(ch)
            if ch == '"':
                quoted = False
            continue
        if ch == "(":
            depth += 1
        elif ch == ")" and depth:
            depth -= 1
            if depth == 0:
                out.append(" ")
        elif depth == 0:
            if ch == '"':
                quoted = True
            out.append(ch)
    if depth or quoted:
        return None
    return " ".join("".join(out).split())


def _split_outside_quotes(text: str, separator: str) -> list[str]:
    pieces: list[str] = []
    current: list[str] = []
    quoted = escaped = False
    for ch in text:
        if escaped:
            escaped = False
        elif ch == "\\" and quoted:
            escaped = True
        elif ch == '"':
            quoted = not quoted
        elif ch == separator and not quoted:
            pieces.append("".join(current))
            current = []
            continue
        current.append(ch)
    pieces.append("".join(current))
    return pieces
