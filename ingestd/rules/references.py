"""Teams and agents the rules name, checked against the directory in the database.

They live in the database, which may still be empty when the rules are
written, so an unknown one is a warning at start-up and an error only for
``ingestd check --strict``.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from ingestd.db.tables import AGENTS
from ingestd.rules.model import Rule


def unknown_references(conn: sa.Connection, rules: Sequence[Rule]) -> list[str]:
    """One sentence per team or agent address a rule names that the directory lacks."""
    teams = {str(t).casefold() for t in conn.execute(
        sa.select(AGENTS.c.team).where(AGENTS.c.active.is_(True), AGENTS.c.team.is_not(None))
    ).scalars()}
    agents = {str(a).casefold() for a in conn.execute(
        sa.select(AGENTS.c.email).where(AGENTS.c.active.is_(True))).scalars()}
    problems = []
    for rule in rules:
        for action in rule.actions:
            assign = action.assign
            if assign is None:
                continue
            if assign.team is not None and assign.team.casefold() not in teams:
                problems.append(f"{rule.source}: rule {rule.name!r} assigns to team "
                                f"{assign.team!r}, which has no active agent")
            if assign.agent is not None and assign.agent.casefold() not in agents:
                problems.append(f"{rule.source}: rule {rule.name!r} assigns to "
                                f"{assign.agent}, who is not an active agent")
    return problems
