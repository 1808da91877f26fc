"""Read the whole directory back out, in the shape ``directory import`` reads.

Lists are sorted in Python, not by ORDER BY, because SQLite and PostgreSQL
collate text differently and the output should be byte-identical on both.
Every key is written, defaults included, so a reader sees the whole record.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import sqlalchemy as sa
import yaml
from sqlalchemy.engine import Connection, Engine

from ingestd.db.engine import is_postgres, read_only
from ingestd.db.tables import (
    AGENTS,
    CLIENT_DOMAINS,
    CLIENTS,
    SITES,
    SUPPLIER_ADDRESSES,
    SUPPLIERS,
    USERS,
)

Record = dict[str, Any]


def export_directory(engine: Engine) -> Record:
    """Clients (with domains, sites, users), agents and suppliers as plain values."""
    with read_only(engine) as conn:
        if is_postgres(engine):
            # One snapshot for all the SELECTs, so a user added meanwhile cannot
            # point at a site that this export did not see.
            conn = conn.execution_options(isolation_level="REPEATABLE READ")
        return {
            "clients": _clients(conn),
            "agents": _agents(conn),
            "suppliers": _suppliers(conn),
        }


def to_yaml(directory: Record) -> str:
    return yaml.safe_dump(directory, sort_keys=False, allow_unicode=True, width=100)


def _clients(conn: Connection) -> list[Record]:
    domains = _grouped(conn, sa.select(CLIENT_DOMAINS.c.client_id, CLIENT_DOMAINS.c.domain))
    sites = _sites_by_client(conn)
    clients = [
        {"name": row.name, "domains": sorted(domains[row.id]), "vip": row.vip,
         "sites": sites[row.id]}
        for row in conn.execute(sa.select(CLIENTS.c.id, CLIENTS.c.name, CLIENTS.c.vip))
    ]
    return sorted(clients, key=lambda c: c["name"])


def _sites_by_client(conn: Connection) -> dict[int, list[Record]]:
    users = _users_by_site(conn)
    sites: dict[int, list[Record]] = defaultdict(list)
    for row in conn.execute(sa.select(SITES.c.id, SITES.c.client_id, SITES.c.name)):
        sites[row.client_id].append({"name": row.name, "users": users[row.id]})
    for listing in sites.values():
        listing.sort(key=lambda s: s["name"])
    return sites


def _users_by_site(conn: Connection) -> dict[int, list[Record]]:
    # Every user, those ingestd created for unknown senders too: this is a
    # backup of the directory, not only of what was imported.
    query = sa.select(USERS.c.site_id, USERS.c.name, USERS.c.email, USERS.c.vip)
    users: dict[int, list[Record]] = defaultdict(list)
    for row in conn.execute(query):
        users[row.site_id].append({"name": row.name, "email": row.email, "vip": row.vip})
    for listing in users.values():
        listing.sort(key=lambda u: u["email"])
    return users


def _agents(conn: Connection) -> list[Record]:
    agents = [
        {"name": row.name, "email": row.email, "team": row.team, "admin": row.admin,
         "active": row.active}
        for row in conn.execute(sa.select(AGENTS))
    ]
    return sorted(agents, key=lambda a: a["email"])


def _suppliers(conn: Connection) -> list[Record]:
    query = sa.select(SUPPLIER_ADDRESSES.c.supplier_id, SUPPLIER_ADDRESSES.c.kind,
                      SUPPLIER_ADDRESSES.c.value)
    listed: dict[str, dict[int, list[str]]] = {"email": defaultdict(list),
                                               "domain": defaultdict(list)}
    for row in conn.execute(query):
        # The contract has only these two kinds; anything else has no place in the file.
        if row.kind in listed:
            listed[row.kind][row.supplier_id].append(row.value)
    emails, domains = listed["email"], listed["domain"]
    suppliers = [
        {"name": row.name, "emails": sorted(emails[row.id]), "domains": sorted(domains[row.id])}
        for row in conn.execute(sa.select(SUPPLIERS.c.id, SUPPLIERS.c.name))
    ]
    return sorted(suppliers, key=lambda s: s["name"])


def _grouped(conn: Connection, query: sa.Select[Any]) -> dict[int, list[Any]]:
    """``SELECT owner_id, value`` as {owner_id: [value, ...]}."""
    grouped: dict[int, list[Any]] = defaultdict(list)
    for owner_id, value in conn.execute(query):
        grouped[owner_id].append(value)
    return grouped
