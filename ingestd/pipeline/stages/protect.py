"""protect: signals read before any database work — our own mail coming back, bounces
(``ingestd/bounces``; recorded by the ``bounce`` stage) and auto-replies (RFC 3834 and the
conventions before it).

Our own mail (From one of ``own_addresses``, or a Message-ID under one of
``own_message_id_domains``) ends here: ignored, ``own-mail``. An auto-reply is
marked on the context; ``apply`` then lets it add an ``auto_reply`` action to
a ticket it belongs to, but never open a ticket (unless the mailbox's
``auto_replies.open_tickets`` says so) and never reopen a closed one.
``X-Auto-Response-Suppress`` is not a signal: it asks recipients not to
auto-reply and says nothing about the message itself.
"""

from __future__ import annotations

from email.message import Message
from email.parser import HeaderParser
from email.policy import compat32

import structlog

from ingestd.bounces import read_bounce
from ingestd.mailbytes import header_block
from ingestd.mailtext import bytes_text
from ingestd.pipeline.context import MessageContext, Outcome

log = structlog.get_logger("ingestd.protect")

_BULK_PRECEDENCE = {"bulk", "junk", "auto_reply"}
_ROBOT_LOCAL_PARTS = {"mailer-daemon", "postmaster", "mailer_daemon"}


def protect(ctx: MessageContext) -> Outcome | None:
    headers = HeaderParser(policy=compat32).parsestr(bytes_text(header_block(ctx.raw)))
    # A bounce first: our own outbound MTA's reports carry our Message-ID domain,
    # and are bounces of our mail, not our mail coming back.
    try:
        ctx.bounce = read_bounce(ctx.raw, null_sender=ctx.source == "smtp"
                                 and ctx.envelope_from is None)
    except Exception as error:
        # Mail the bounce reader cannot read is kept as ordinary mail (a ticket
        # or an auto-reply), never failed for it.
        log.warning("bounce.unreadable", id=ctx.inbound_id, error=repr(error)[:300])
        ctx.bounce = None
    if ctx.bounce is not None:
        return None  # a bounce is handled as one (stage ``bounce``), not as an auto-reply
    if own_mail(ctx, headers):
        return Outcome("ignored", "ignored", "own-mail")
    ctx.auto_reply = auto_reply_signal(headers, ctx.message.from_address,
                                       list_headers=ctx.mailbox.auto_replies.list_headers)
    return None


def own_mail(ctx: MessageContext, headers: Message) -> bool:
    settings = ctx.settings
    sender = (ctx.message.from_address or "").lower()
    if sender and sender in settings.own_addresses:
        return True
    message_id = (ctx.message.message_id or "").strip("<> ").lower()
    domain = message_id.rpartition("@")[2]
    return bool(domain) and domain in settings.own_message_id_domains


def auto_reply_signal(headers: Message, from_address: str | None, *,
                      list_headers: bool) -> str | None:
    """Why the message is an auto-reply (the header that says so), or None."""
    auto = _value(headers, "Auto-Submitted")
    if auto and auto.split(";")[0].strip().lower() != "no":
        return f"Auto-Submitted: {auto}"
    precedence = (_value(headers, "Precedence") or "").lower()
    if precedence in _BULK_PRECEDENCE or (list_headers and precedence == "list"):
        return f"Precedence: {precedence}"
    for name in ("X-Autoreply", "X-Autorespond", "X-AutoReply-From", "X-Mail-Autoreply"):
        if headers.get(name) is not None:
            return name
    # Apple's vacation responder marks its replies with this alone (no RFC 3834 header).
    if (_value(headers, "X-Apple-Action") or "").upper() == "VACATION":
        return "X-Apple-Action: VACATION"
    if list_headers:
        for name in ("List-Id", "List-Unsubscribe"):
            if headers.get(name) is not None:
                return name
    if (_value(headers, "Return-Path") or "").strip() == "<>":
        return "null return path"
    local = (from_address or "").partition("@")[0].lower()
    if local in _ROBOT_LOCAL_PARTS:
        return f"sender {from_address}"
    return None


def _value(headers: Message, name: str) -> str | None:
    value = headers.get(name)
    return " ".join(str(value).split()) if value is not None else None
