"""The ticket plan: what rules decided for the ticket, written by ``apply``."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class TicketPlan:
    ticket_type: str | None = None
    priority: str | None = None
    status: str | None = None
    category: str | None = None
    team: str | None = None
    tags: list[str] = field(default_factory=list)
    fields: dict[str, str] = field(default_factory=dict)
    # An agent by address, or the fewest-open agent of a team (chosen when written).
    agent_address: str | None = None
    assign_team: str | None = None
    updates_only: bool = False
    # A rule's `route`: the mailbox the ticket is made in (type and defaults from it).
    route: str | None = None
    # The rule that set each of these, for reasons and explain.
    set_by: dict[str, str] = field(default_factory=dict)

    @property
    def changes_ticket(self) -> bool:
        return any((self.priority, self.status, self.category, self.team, self.tags,
                    self.fields, self.agent_address, self.assign_team, self.ticket_type))


@dataclass(frozen=True)
class RuleVerdict:
    """One rule's decision on one message, in order (explain prints these)."""

    rule: str
    matched: bool
    why: str
