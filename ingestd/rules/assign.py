"""Assignment to the available agent of a team with the fewest open tickets.

Available means active. Ties go to the lowest agent id, so the choice is
deterministic. Two workers assigning at once on PostgreSQL would both count
before either writes; the team's agent rows are locked first (FOR UPDATE),
so assignments are serial (all active agents' rows: a team is matched by its
name case-insensitively, which SQL cannot do for every script) and the counts never drift apart by
more than one. SQLite serialises writers anyway.
"""

from __future__ import annotations

import sqlalchemy as sa

from ingestd.db.tables import AGENTS, TICKETS

A = AGENTS.c
T = TICKETS.c


def fewest_open_agent(db: sa.Connection, team: str) -> int | None:
    """The id of the active agent of ``team`` (case-insensitive) with the fewest open
    tickets; None when the team has no active agent."""
    # Compared in Python: SQLite's lower() folds ASCII letters only ("Équipe").
    members = (sa.select(A.id, A.team).where(A.active.is_(True), A.team.is_not(None))
               .order_by(A.id))
    if db.dialect.name == "postgresql":
        members = members.with_for_update()
    wanted = team.casefold()
    agent_ids = [int(row.id) for row in db.execute(members)
                 if str(row.team).casefold() == wanted]
    if not agent_ids:
        return None
    counts: dict[int, int] = dict(db.execute(
        sa.select(T.agent_id, sa.func.count()).where(T.status == "open",
                                                     T.agent_id.in_(agent_ids))
        .group_by(T.agent_id)).all())
    return min(agent_ids, key=lambda agent: (int(counts.get(agent, 0)), agent))


def agent_by_address(db: sa.Connection, address: str) -> int | None:
    """An active agent's id by address; None when there is none."""
    wanted = address.casefold()
    for row in db.execute(sa.select(A.id, A.email).where(A.active.is_(True))):
        if str(row.email).casefold() == wanted:
            return int(row.id)
    return None
