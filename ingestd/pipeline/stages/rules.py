"""rules: the admins' rules, in order, after ``match`` and before ``apply``.

A rule applies when its mailbox scope and ``when`` fit and its ``match``
holds; its actions fill the ticket plan ``apply`` writes. ``ignore`` ends
processing (status ``ignored``, reason ``rule:<name>``); ``route`` moves the
message to another mailbox (its ticket type and mailbox; earlier stages are
not run again); ``stop`` ends the list. The context's own mailbox never changes (a retried
attempt starts from it again). After the last rule, a plan marked
``updates_only`` that would open a new ticket is quarantined (``updates-only``).
Mail bound for My Inbox makes no ticket, so rules are not applied to it.
"""

from __future__ import annotations

import sqlalchemy as sa
import structlog

from ingestd.db.tables import CLIENTS, USERS
from ingestd.pipeline.context import MessageContext, Outcome
from ingestd.rules.actions import apply_actions
from ingestd.rules.conditions import REGEX_SECONDS, RegexTimeout, holds
from ingestd.rules.model import Rule
from ingestd.rules.plan import RuleVerdict
from ingestd.rules.view import MessageView

log = structlog.get_logger("ingestd.rules")


def apply_rules(ctx: MessageContext) -> Outcome | None:
    rules = ctx.settings.rules
    if not rules or ctx.to_inbox:
        return None
    sender = ctx.sender
    assert sender is not None, "classify runs before rules"
    new_ticket = ctx.ticket_id is None
    view = MessageView(ctx.mailbox.name, ctx.message, ctx.raw, sender.kind,
                       is_vip(ctx.db, sender.user_id, sender.client_id))
    for rule in rules:
        if rule.mailboxes and ctx.mailbox.name not in rule.mailboxes:
            ctx.verdicts.append(RuleVerdict(rule.name, False, "another mailbox's rule"))
            continue
        if rule.when == "new_ticket" and not new_ticket:
            ctx.verdicts.append(RuleVerdict(rule.name, False, "for new tickets; this updates "
                                                              f"#{ctx.ticket_id}"))
            continue
        if rule.when == "update" and new_ticket:
            ctx.verdicts.append(RuleVerdict(rule.name, False, "for updates; this opens a ticket"))
            continue
        captures: dict[str, str] = {}
        try:
            matched, why = holds(rule.match, view, captures)
        except RegexTimeout as exc:
            matched, why = False, (f"regex {exc.args[0]!r} gave up after {REGEX_SECONDS} s on "
                                   "this message")
            log.warning("rules.regex_timeout", rule=rule.name, pattern=str(exc.args[0]),
                        inbound_id=ctx.inbound_id)
        ctx.verdicts.append(RuleVerdict(rule.name, matched, why))
        if not matched:
            continue
        ignore, route = apply_actions(rule, ctx.plan, captures, ctx.message.text)
        if ignore:
            _not_run(ctx, rules, rule.name, "ignored")
            return Outcome("ignored", "ignored", f"rule:{rule.name}")
        if route is not None and route != view.mailbox:
            if new_ticket:
                ctx.notes.append(f"routed to {route} by rule:{rule.name}")
                ctx.plan.route = route
                view.mailbox = route
            else:
                ctx.notes.append(f"route to {route} by rule:{rule.name} not applied: "
                                 f"this updates #{ctx.ticket_id}")
        if rule.stop:
            _not_run(ctx, rules, rule.name, "stopped")
            break
    if ctx.plan.updates_only and ctx.ticket_id is None:
        return Outcome("quarantined", "quarantined", "updates-only")
    applied = [v.rule for v in ctx.verdicts if v.matched]
    if applied:
        ctx.notes.append("rules: " + ", ".join(applied))
    return None


def _not_run(ctx: MessageContext, rules: tuple[Rule, ...], by: str, how: str) -> None:
    """The rules after one that ended the list, listed as not run (explain shows them)."""
    seen = {v.rule for v in ctx.verdicts}
    for rule in rules:
        if rule.name not in seen:
            ctx.verdicts.append(RuleVerdict(rule.name, False, f"not run: {how} by {by}"))


def is_vip(db: sa.Connection, user_id: int | None, client_id: int | None) -> bool:
    """A VIP user, or a user of a VIP client."""
    if user_id is not None and db.execute(
            sa.select(USERS.c.vip).where(USERS.c.id == user_id)).scalar():
        return True
    return bool(client_id is not None and db.execute(
        sa.select(CLIENTS.c.vip).where(CLIENTS.c.id == client_id)).scalar())
