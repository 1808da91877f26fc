"""What a matching rule does: it fills the ticket plan (``ignore`` and ``route`` are
returned to the stage, which ends processing or changes the mailbox)."""

from __future__ import annotations

import re

from ingestd.rules.model import Action, Rule
from ingestd.rules.plan import TicketPlan

_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
# A mapped field keeps at most this much text (a marker pair that spans the whole body).
_FIELD_CHARS = 2000


def apply_actions(rule: Rule, plan: TicketPlan, captures: dict[str, str], body: str
                  ) -> tuple[bool, str | None]:
    """Apply ``rule``'s actions to ``plan``; (ignore the message?, mailbox to route to)."""
    ignore = False
    route: str | None = None
    for action in rule.actions:
        kind = action.kind
        if kind == "ignore":
            ignore = bool(action.ignore)
        elif kind == "route":
            route = action.route
        else:
            _plan(action, plan, captures, body)
        plan.set_by[kind] = rule.name
    return ignore, route


def _plan(action: Action, plan: TicketPlan, captures: dict[str, str], body: str) -> None:
    if action.set_type is not None:
        plan.ticket_type = action.set_type
    elif action.set_priority is not None:
        plan.priority = action.set_priority
    elif action.set_status is not None:
        plan.status = action.set_status
    elif action.set_category is not None:
        plan.category = action.set_category
    elif action.set_team is not None:
        plan.team = action.set_team
    elif action.add_tags is not None:
        plan.tags.extend(t for t in action.add_tags if t not in plan.tags)
    elif action.set_field is not None:
        spec = action.set_field
        if spec.value is not None:
            value: str | None = fill(spec.value, captures)
        else:
            assert spec.start is not None and spec.end is not None
            value = between(body, spec.start, spec.end)
        if value is not None:
            plan.fields[spec.name] = value[:_FIELD_CHARS]
    elif action.assign is not None:
        if action.assign.agent is not None:
            plan.agent_address, plan.assign_team = action.assign.agent.lower(), None
        else:
            plan.assign_team, plan.agent_address = action.assign.team, None
    elif action.updates_only:
        plan.updates_only = True


def fill(template: str, captures: dict[str, str]) -> str:
    """``{name}`` replaced by the named capture (an unknown name becomes empty)."""
    return _PLACEHOLDER.sub(lambda m: captures.get(m.group(1), ""), template)


def between(body: str, start: str, end: str) -> str | None:
    """The text between the first ``start`` and the next ``end`` (case-insensitive), trimmed;
    None when either marker is missing."""
    # Searched in the body itself: case folding changes lengths ("ß" → "ss"), so positions
    # found in a folded copy would cut the original in the wrong place.
    opening = re.search(re.escape(start), body, re.IGNORECASE)
    if opening is None:
        return None
    closing = re.compile(re.escape(end), re.IGNORECASE).search(body, opening.end())
    if closing is None:
        return None
    return body[opening.end():closing.start()].strip()
