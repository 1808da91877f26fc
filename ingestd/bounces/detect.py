"""Is this mail a bounce, and if so, which recipients failed: ``read_bounce``.

A bounce must look like one before anything is read from it: a
``multipart/report`` of delivery status, an ``X-Failed-Recipients`` header,
or a robot sender (MAILER-DAEMON, postmaster, a null return path, "Mail
Delivery System") together with a subject that reports a delivery problem.
A person's mail about an undelivered parcel is never taken for one. Then the
failed recipients are read from the most reliable source present: RFC 3464
fields, Exim's header, flufl.bounce's vendor detectors (Mailman's), and the
report's own prose; the last resort is the To of the returned message.
Abuse reports (ARF) and read receipts (MDN) are reports but not bounces; a
DSN that only says "delivered" is no failure.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Iterable
from email import message_from_bytes
from email.header import decode_header, make_header
from email.message import Message
from email.parser import HeaderParser
from email.policy import compat32
from email.utils import getaddresses

from flufl.bounce import all_failures

from ingestd.bounces.dsn import dsn_recipients, status_text
from ingestd.bounces.parts import (
    DSN_TYPES,
    body_as_text,
    header_text,
    message_ids,
    original_part,
    part_text,
    report_text,
    returned_headers,
)
from ingestd.bounces.report import Bounce, FailedRecipient
from ingestd.bounces.text import (
    ADDRESS,
    gave_up,
    has_written_status,
    report_addresses,
    status_near,
    status_of_report,
)
from ingestd.mailbytes import header_block
from ingestd.mailtext import bytes_text

_NOT_BOUNCES = {"feedback-report", "disposition-notification"}
# Local parts that only mail servers write from (Exchange: MicrosoftExchange<hex>).
# A display name ("Mail Delivery Team") proves nothing: anyone can write one.
_ROBOT_LOCAL_PART = re.compile(
    r"mailer[-_]?daemon|postmaster|mail[-_]?daemon|mdaemon|microsoftexchange[0-9a-f]*",
    re.IGNORECASE)
_BOUNCE_SUBJECT = re.compile(
    r"undeliver|not (?:be )?delivered|delivery (?:status|fail|notification|report|problem|"
    r"error|incomplete|delayed|has failed|to the following)|returned mail|return(?:ed)? to "
    r"sender|failure notice|mail delivery (?:fail|system|subsystem|problem|error)|"
    r"non[- ]?deliver|nondeliverable|delivery failure|could not (?:be )?deliver|"
    r"failed delivery|delivery failed|unzustellbar|mail system error|bounce|"
    r"permanent (?:error|failure)|delayed mail|warning: could not send|unable to deliver|"
    r"message (?:rejected|blocked|failed)|rejected|mailbox (?:is )?(?:full|unavailable)|"
    r"user unknown|no such user|error sending|mail could not|failed to deliver|"
    r"unsuccessful|not reachable|mail failure|send failure|returned message|delayed|"
    r"failed|failure|error|エラー|不達|配信",
    re.IGNORECASE)
_MAX_RECIPIENTS = 100
_READ_LIMIT = 256 * 1024
# flufl.bounce logs a traceback for a detector that trips over odd mail; we
# read the bounce another way then, and an error log line would mislead.
logging.getLogger("flufl.bounce").setLevel(logging.CRITICAL)


def read_bounce(raw: bytes, *, null_sender: bool = False) -> Bounce | None:
    """The bounce ``raw`` is, or None when it is not a (failure) bounce.

    ``null_sender``: the envelope sender was ``<>`` (known over SMTP), as RFC 5321
    wants for every bounce.
    """
    headers = HeaderParser(policy=compat32).parsestr(bytes_text(header_block(raw)))
    content_type = headers.get_content_type()
    report_type = str(headers.get_param("report-type", "") or "").lower()
    if content_type == "multipart/report" and report_type in _NOT_BOUNCES:
        return None
    dsn_report = content_type == "multipart/report" and report_type in (
        "delivery-status", "global-delivery-status")
    untyped_report = content_type == "multipart/report" and not report_type
    # Exim's header is only believed from a robot: anyone can write it.
    failed_header = str(headers.get("X-Failed-Recipients") or "")[:4096]
    robot = _robot_sender(headers, null_sender)
    if not (dsn_report or (robot and (failed_header or untyped_report
                                      or _BOUNCE_SUBJECT.search(_subject(headers))))):
        return None
    failed_header = failed_header if robot else ""
    # The report comes before the returned message, which may be large: the
    # vendor detectors scan every body line, so only the start is read.
    message = message_from_bytes(raw[:_READ_LIMIT], policy=compat32)
    recipients, read_as, success_only = _recipients(message, headers, failed_header)
    if success_only or not recipients:
        return None
    original = original_part(message) or returned_headers(message)
    return Bounce(
        recipients=tuple(recipients[:_MAX_RECIPIENTS]),
        original_message_ids=message_ids(message, original),
        original_subject=header_text(original, "Subject") if original is not None else None,
        read_as=read_as,
    )


def _robot_sender(headers: Message, null_sender: bool) -> bool:
    """A null return path, or a From only mail servers use (MAILER-DAEMON, postmaster)."""
    return_path = str(headers.get("Return-Path") or "").strip()[:1000]
    if null_sender or return_path == "<>":
        return True
    # Return-Path: <MAILER-DAEMON@host>: the envelope sender, as the last MTA wrote it.
    local = return_path.strip("<>").rpartition("@")[0] if "@" in return_path else ""
    return bool(_ROBOT_LOCAL_PART.fullmatch(local)) or _robot_from(headers)


def _robot_from(headers: Message) -> bool:
    """From MAILER-DAEMON, postmaster (and the like), or the null address itself."""
    sender = str(headers.get("From") or "")[:1000]
    if re.search(r"<\s*>", sender):
        return True  # From: MAILER-DAEMON <>
    for _, address in getaddresses([sender]):
        local = address.rpartition("@")[0] if "@" in address else address
        if _ROBOT_LOCAL_PART.fullmatch(local.strip()):
            return True
    return False


def _subject(headers: Message) -> str:
    value = str(headers.get("Subject") or "")
    with contextlib.suppress(Exception):
        return str(make_header(decode_header(value)))
    return value


def _recipients(message: Message, headers: Message, failed_header: str
                ) -> tuple[list[FailedRecipient], str, bool]:
    """(failed recipients, how they were read, whether the report is of successes only)."""
    report = report_text(message)
    dsn_seen = False
    for part in [*message.walk(), body_as_text(message)]:
        kind = part.get_content_type()
        text = status_text(part) if kind in DSN_TYPES else None
        if text is None and kind == "text/plain":
            payload = part_text(part)
            if re.search(r"^Final-Recipient:", payload, re.IGNORECASE | re.MULTILINE):
                text = payload
        if text is None:
            continue
        found, seen = dsn_recipients(text)
        dsn_seen = dsn_seen or seen
        if found:
            return _with_report_status(found, report), "dsn", False
    if dsn_seen:
        return [], "dsn", True
    exclude = _own_addresses(headers, message)
    if failed_header:
        addresses = [a.lower() for a in ADDRESS.findall(failed_header)]
        if addresses:
            return _statused(addresses, report), "x-failed-recipients", False
    vendor = _vendor(message)
    if vendor:
        permanent, temporary = vendor
        vendor_found = [a for a in [*permanent, *temporary] if a not in exclude]
        if vendor_found:
            return _statused(vendor_found, report), "vendor", False
    # The bounce may go to the very address that failed (a test to oneself,
    # an alias), or name a postmaster: when nothing else is named, only the
    # bounce's own From is left out.
    returned = original_part(message) or returned_headers(message)
    if returned is None and not has_written_status(report) and not _robot_from(headers):
        # Prose naming addresses, with neither a server's answer, nor the returned
        # message, nor a MAILER-DAEMON to vouch for it: nothing shows a delivery
        # failed (a notice sent with a null return path, a newsletter).
        return [], "text", False
    named = (report_addresses(report, exclude)
             or report_addresses(report, _bounce_from(headers), robots=True))
    if named:
        ends = [offset for _, offset in named[1:]] + [len(report)]
        whole, final = status_of_report(report), gave_up(report)
        return ([_recipient(address, status_near(report, offset, end), whole, final)
                 for (address, offset), end in zip(named, ends, strict=True)], "text", False)
    if returned is not None:
        to = [a.lower() for _, a in getaddresses([str(returned.get("To") or "")[:4096]])
              if "@" in a]
        to = [a for a in to if a not in exclude]
        if to:
            return _statused(to[:1], report), "text", False
    return [], "text", False


def _with_report_status(found: list[FailedRecipient], report: str) -> list[FailedRecipient]:
    """DSN recipients whose Status was missing take what the prose says about them."""
    result = []
    for recipient in found:
        if recipient.status in ("5.0.0", "4.0.0"):
            at = report.lower().find(recipient.address)
            near = status_near(report, at, at + 600) if at >= 0 else None
            if near is not None and near[0] == recipient.status[0]:
                recipient = FailedRecipient(recipient.address, near, recipient.final)
        result.append(recipient)
    return result


def _statused(addresses: list[str], report: str) -> list[FailedRecipient]:
    result: list[FailedRecipient] = []
    lowered = report.lower()
    whole, final = status_of_report(report), gave_up(report)
    for address in list(dict.fromkeys(addresses))[:_MAX_RECIPIENTS]:
        at = lowered.find(address)
        status = status_near(report, at, at + 600) if at >= 0 else None
        # flufl.bounce calls a report "temporary" on weak evidence; the
        # report's own words decide, as for any other address.
        result.append(_recipient(address, status, whole, final))
    return result


def _recipient(address: str, status: str | None, whole: str, final: bool) -> FailedRecipient:
    """A status written for the address decides; else the report's, and whether it gave up."""
    if status is not None:
        return FailedRecipient(address, status)
    return FailedRecipient(address, whole, final=final)


def _vendor(message: Message) -> tuple[list[str], list[str]] | None:
    """flufl.bounce's detectors (permanent, temporary), addresses decoded and lower case."""
    # A detector that trips over odd mail must not stop the bounce being read otherwise.
    with contextlib.suppress(Exception):
        temporary, permanent = all_failures(message)
        return (sorted(_decoded(permanent)), sorted(_decoded(temporary)))
    return None


def _decoded(addresses: Iterable[bytes | str]) -> set[str]:
    out = set()
    for address in addresses:
        text = address.decode("utf-8", "replace") if isinstance(address, bytes) else address
        found = ADDRESS.search(text)
        if found is not None:
            out.add(found.group().lower().rstrip("."))
    return out


def _bounce_from(headers: Message) -> set[str]:
    return {a.lower() for _, a in getaddresses([str(headers.get("From") or "")]) if "@" in a}


def _own_addresses(headers: Message, message: Message) -> set[str]:
    """Who the bounce is from and to (the original sender): never a failed recipient."""
    fields = [str(headers.get(name) or "") for name in ("From", "To", "Sender", "Reply-To")]
    original = original_part(message)
    if original is not None:
        fields += [str(original.get(name) or "") for name in ("From", "Sender", "Return-Path")]
    return {a.lower() for _, a in getaddresses(fields) if "@" in a}

