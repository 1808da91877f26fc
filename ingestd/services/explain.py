"""``explain``: what processing would do with a message, decision by decision, writing nothing.

The same stages run as in a worker. The database stages run inside a
transaction that is always rolled back (with a stand-in inbound row for the
keys that refer to one), so users it would create, dedupe keys, tickets and
actions are seen by the later stages and then vanish: nothing is written.
"""

from __future__ import annotations

import ipaddress
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Engine

from ingestd import queue
from ingestd.config.settings import IngestdSettings
from ingestd.db.errors import translated
from ingestd.errors import LimitExceeded, NotFound
from ingestd.intake.source import NewMessage
from ingestd.message_keys import content_key
from ingestd.pipeline.context import MessageContext, Outcome, normalised_envelope
from ingestd.pipeline.runner import Pipeline, run_stages


def explain(engine: Engine, settings: IngestdSettings, mailbox_name: str, raw: bytes,
            now: datetime, pipeline: Pipeline | None = None, *, as_new: bool = False,
            envelope_from: str | None = None, peer: str | None = None) -> dict[str, Any]:
    """Every decision for ``raw`` delivered to ``mailbox_name``, in order, as a record.

    ``as_new``: skip the duplicate check, for "why did this stored message become that?".
    ``peer``: the IP address it came from over SMTP (sender authentication trusts the
    topmost Authentication-Results only from a trusted relay). Without it the message is
    judged as the mailbox's own pulls would be, or for an SMTP mailbox as a file an admin
    imports with ``ingest``.
    """
    from ingestd.pipeline.order import PIPELINE

    pipeline = pipeline or PIPELINE
    mailbox = settings.mailbox(mailbox_name)
    if mailbox is None:
        raise NotFound(f"no mailbox named {mailbox_name!r} in the configuration")
    ctx = MessageContext(inbound_id=0, raw=raw, source_key=content_key(raw), mailbox=mailbox,
                         settings=settings, now=now, skip_dedupe=as_new,
                         envelope_from=normalised_envelope(envelope_from),
                         source=_source(mailbox.source, peer), peer=_as_stored(peer))
    try:
        outcome = run_stages(ctx, pipeline.prepare)
    except LimitExceeded as exc:
        outcome = Outcome("quarantined", "quarantined", f"limit: {exc.which}")
    if outcome is None:
        outcome = _decide_and_forget(engine, ctx, pipeline)
    return _record(ctx, outcome)


def _source(mailbox_source: str, peer: str | None) -> str:
    if peer is not None:
        return "smtp"
    return mailbox_source if mailbox_source != "smtp" else "file"


def _as_stored(peer: str | None) -> str | None:
    """An IP address given to explain, as the SMTP listener stores a client: "ip:port"."""
    if peer is None:
        return None
    try:
        return f"{ipaddress.ip_address(peer.strip().strip('[]'))}:0"
    except ValueError:
        return peer


def _decide_and_forget(engine: Engine, ctx: MessageContext, pipeline: Pipeline) -> Outcome:
    stand_in = NewMessage(source="explain", source_key=ctx.source_key, mailbox=ctx.mailbox.name,
                          raw=ctx.raw)
    with translated("explain"), engine.connect() as conn:
        transaction = conn.begin()
        try:
            ctx.inbound_id = queue.insert(conn, [stand_in.row()])[0]
            ctx.conn = conn
            outcome = run_stages(ctx, pipeline.decide)
        finally:
            ctx.conn = None
            transaction.rollback()
    assert outcome is not None, "the last stage always decides"
    return outcome


def _record(ctx: MessageContext, outcome: Outcome) -> dict[str, Any]:
    parsed = ctx.parsed
    record: dict[str, Any] = {"mailbox": ctx.mailbox.name}
    if parsed is not None:
        record["parse"] = {
            "subject": parsed.subject, "from": parsed.from_address,
            "from_name": parsed.from_name, "sender_header": parsed.sender_header,
            "message_id": parsed.message_id, "attachments": len(parsed.attachments),
            "text_chars": len(parsed.text), "defects": list(parsed.defects),
        }
    record["auto_reply"] = ctx.auto_reply
    bounce = ctx.bounce
    record["bounce"] = ({
        "read_as": bounce.read_as,
        "failed": [{"address": r.address, "status": r.status, "hard": r.hard}
                   for r in bounce.recipients],
        "original_message_ids": list(bounce.original_message_ids),
    } if bounce is not None else None)
    record["tag"] = ({"text": ctx.tag.text, "ticket_id": ctx.tag.ticket_id,
                      "where": ctx.tag.where} if ctx.tag is not None else None)
    record["authentication"] = ({"verified": ctx.sender_verified, "why": ctx.sender_check}
                                if ctx.sender_check is not None else None)
    sender = ctx.sender
    record["sender"] = ({"kind": sender.kind, "address": sender.address,
                         "user_created": sender.user_created, "verified": sender.verified}
                        if sender is not None else None)
    record["notes"] = list(ctx.notes)
    record["rules"] = [{"rule": v.rule, "matched": v.matched, "why": v.why}
                       for v in ctx.verdicts]
    plan = ctx.plan
    record["plan"] = {k: v for k, v in {
        "type": plan.ticket_type, "priority": plan.priority, "status": plan.status,
        "category": plan.category, "team": plan.team, "tags": plan.tags or None,
        "fields": plan.fields or None, "assign_agent": plan.agent_address,
        "assign_team": plan.assign_team, "route": plan.route}.items() if v is not None}
    # Ids of rows made inside the rolled-back transaction mean nothing outside it.
    made_here = outcome.result in ("ticket_created", "inbox_item")
    record["outcome"] = {
        "result": outcome.result, "status": outcome.status, "reason": outcome.reason,
        "ticket_id": None if made_here else outcome.ticket_id,
        "duplicate_of": outcome.duplicate_of,
    }
    return record
