"""Human-readable bounce reports: the failed addresses and the status written near them.

Many MTAs (qmail, Exim, OpenSMTPD, Lotus Notes, DragonFly, hosted services)
write no RFC 3464 fields, only prose with the failed address and the remote
server's answer. The report ends where the returned message begins; an
address in the report, other than the bounce's own sender and recipients,
is a failed recipient, and the status is the enhanced code (or SMTP reply
code) written after it, before the next address.
"""

from __future__ import annotations

import re

from ingestd.bounces.report import status_in

# The look-behind holds every local-part character: a match starts only where a
# run of them starts, so a long run without "@" costs one scan, not one per character.
ADDRESS = re.compile(r"(?<![A-Za-z0-9!#$%&'*+/=?^_`{|}~.-])[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]"
                     r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]{0,64}@"
                     r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.){1,20}[A-Za-z]{2,24}"
                     r"(?![\w-])")
# Where the returned message (or its headers) starts in the report's text.
_RETURNED = re.compile(
    r"^[ \t>]*(?:[-=_*#~]{2,}[ \t]*)?(?:"
    r"(?:a )?copy of (?:the |your )?(?:original )?message"
    r"|(?:original|returned|undelivered|unsent|bounced)[ \t-]+(?:message|e-?mail|mail)"
    r"|(?:message|original) headers?(?: follows?)?"
    r"|headers of the original"
    r"|below (?:is|this line)"
    r"|the (?:text|headers) of (?:the|your) message"
    r"|this is a copy of the message"
    r")[^\n]*$|^(?:Received|Return-Path|DKIM-Signature|Message-ID):[ \t]",
    re.IGNORECASE | re.MULTILINE)
_ROBOT_LOCAL_PARTS = ("mailer-daemon", "mailer_daemon", "mailerdaemon", "postmaster",
                      "mail-daemon", "maildelivery", "bounce", "bounces", "noreply", "no-reply",
                      "root", "daemon")
_REPLY_CODE = re.compile(r"(?<![\w.#])([45])[0-5]\d(?=[ -][^\d]|$)", re.MULTILINE)
_GAVE_UP = re.compile(
    r"permanent (?:error|failure|fatal)|not going to try again|(?:gave|given) up|"
    r"retry time(?:out)? (?:exceeded|not reached)|too long in (?:the )?queue|"
    r"queue too long|delivery time expired|message expired|has expired|"
    r"could not be delivered|returned below", re.IGNORECASE)
_SOFT_WORDS = re.compile(
    r"temporar|delay|deferr|will (?:be )?retr|retry|try(?:ing)? again|still trying|"
    r"not yet been delivered|has not been delivered yet|queued", re.IGNORECASE)


def report_section(text: str) -> str:
    """The report before the returned message (all of it when no returned message is found)."""
    found = _RETURNED.search(text, 1)
    return text[:found.start()] if found is not None else text


def report_addresses(report: str, exclude: set[str], *, robots: bool = False,
                     limit: int = 100) -> list[tuple[str, int]]:
    """(address, offset) of each address named in the report, first appearance, in order.

    ``robots``: postmaster and MAILER-DAEMON addresses count too.
    """
    found: list[tuple[str, int]] = []
    seen = set(exclude)
    for match in ADDRESS.finditer(report):
        address = match.group().lower().rstrip(".")
        line_start = report.rfind("\n", 0, match.start()) + 1
        line = report[line_start:match.start()].lower()
        if (address in seen or (_robot(address) and not robots)
                or _not_an_address(line, report, match)):
            continue
        seen.add(address)
        found.append((address, match.start()))
        if len(found) >= limit:
            break
    return found


def status_near(report: str, start: int, end: int) -> str | None:
    """The status written for the address at ``start``: its line and up to ``end``
    (at most a few hundred characters either way: a report of one endless line
    must not be read once per address)."""
    line_start = max(report.rfind("\n", max(0, start - 300), start) + 1, start - 300)
    return _written_status(report[max(line_start, 0):min(end, start + 800)])


def has_written_status(report: str) -> bool:
    """A status code or an SMTP reply code appears in the report."""
    return _written_status(report) is not None


def _written_status(text: str) -> str | None:
    """An enhanced status code in ``text``, else the class of an SMTP reply code."""
    status = status_in(text)
    if status is not None:
        return status
    reply = _REPLY_CODE.search(text)
    return f"{reply.group(1)}.0.0" if reply is not None else None


def gave_up(report: str) -> bool:
    """The report says delivery was abandoned (whatever status class it quotes)."""
    return bool(_GAVE_UP.search(report))


def status_of_report(report: str) -> str:
    """The class a report as a whole gives, when no address carries its own status."""
    written = _written_status(report)
    if written is not None:
        return written
    return "4.0.0" if _SOFT_WORDS.search(report) else "5.0.0"


def _robot(address: str) -> bool:
    return address.partition("@")[0] in _ROBOT_LOCAL_PARTS


def _not_an_address(line: str, report: str, match: re.Match[str]) -> bool:
    """A Message-ID, a URL's query or a host's log token, not someone's mailbox."""
    if re.search(r"(message-id|in-reply-to|references|\bid)\s*[:=]?\s*<?$", line):
        return True
    before = report[max(0, match.start() - 1):match.start()]
    return before in ("/", "=", "?", "&")
