"""Apply a validated directory file to the database.

Everything happens in one transaction: a failure half-way leaves the
directory as it was. Rows are matched on their natural keys and updated in
place, so ids that tickets point at survive, and nothing absent from the
file is deleted: users that ingestd created for unknown senders, or that the
helpdesk added itself, are not the file's to remove.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine, Row

from ingestd.db.errors import translated
from ingestd.db.models import utcnow
from ingestd.db.tables import (
    AGENTS,
    CLIENT_DOMAINS,
    CLIENTS,
    SITES,
    SUPPLIER_ADDRESSES,
    SUPPLIERS,
    USERS,
)
from ingestd.directory.document import (
    AgentEntry,
    ClientEntry,
    DirectoryDocument,
    SiteEntry,
    SupplierEntry,
    UserEntry,
)

# A row of any width (Row is generic over its column types in SQLAlchemy 2.1).
DbRow = Row[*tuple[Any, ...]]

# The kinds the summary counts, in the order it prints them.
KINDS = ("clients", "sites", "users", "agents", "suppliers")
Outcome = Literal["added", "updated", "unchanged"]

# Well under SQLite's and PostgreSQL's limits on bound parameters per statement.
_IN_CHUNK = 500


@dataclass
class Tally:
    added: int = 0
    updated: int = 0
    unchanged: int = 0


@dataclass
class ImportSummary:
    """What an import did, per kind of entry in the file."""

    tallies: dict[str, Tally] = field(default_factory=lambda: {k: Tally() for k in KINDS})

    def record(self, kind: str, outcome: Outcome) -> None:
        tally = self.tallies[kind]
        setattr(tally, outcome, getattr(tally, outcome) + 1)

    def as_dict(self) -> dict[str, dict[str, int]]:
        return {kind: asdict(tally) for kind, tally in self.tallies.items()}

    def lines(self) -> list[str]:
        return [
            f"{kind}: {t.added} added, {t.updated} updated, {t.unchanged} unchanged"
            for kind, t in self.tallies.items()
        ]


def import_directory(engine: Engine, directory: DirectoryDocument) -> ImportSummary:
    """Upsert ``directory`` in one transaction; a storage error if it fails (nothing changed)."""
    with translated("database refused the import, nothing was changed"), engine.begin() as conn:
        return _Importer(conn, directory).run()



class _Importer:
    """One import, inside one transaction.

    The directory tables are read once up front (they are small next to the
    mail tables) instead of one SELECT per entry, which would cost a round
    trip per user on PostgreSQL. Users can be many, since ingestd adds one
    per unknown sender, so only those the file names are read.
    """

    def __init__(self, conn: Connection, directory: DirectoryDocument) -> None:
        self.conn = conn
        self.directory = directory
        self.summary = ImportSummary()
        self.clients = _rows_by(conn, CLIENTS, "name")
        self.client_domains = _rows_by(conn, CLIENT_DOMAINS, "domain")
        self.sites = _rows_by(conn, SITES, "client_id", "name")
        self.users = _users_by_email(conn, _user_emails(directory))
        self.agents = _rows_by(conn, AGENTS, "email")
        self.suppliers = _rows_by(conn, SUPPLIERS, "name")
        self.supplier_addresses = _rows_by(conn, SUPPLIER_ADDRESSES, "kind", "value")

    def run(self) -> ImportSummary:
        for client in self.directory.clients:
            self._client(client)
        for agent in self.directory.agents:
            self._agent(agent)
        for supplier in self.directory.suppliers:
            self._supplier(supplier)
        return self.summary

    # --- clients, their domains, sites and users ---

    def _client(self, entry: ClientEntry) -> None:
        row = self.clients.get(entry.name)
        if row is None:
            client_id = self._insert(CLIENTS, name=entry.name, vip=entry.vip)
            outcome: Outcome = "added"
        else:
            client_id = row.id
            outcome = self._update(CLIENTS, row, vip=entry.vip)
        if self._client_domains(client_id, entry.domains) and outcome == "unchanged":
            outcome = "updated"
        self.summary.record("clients", outcome)
        for site in entry.sites:
            self._site(client_id, site)

    def _client_domains(self, client_id: int, domains: Sequence[str]) -> bool:
        """Give ``domains`` to the client, taking them from any other; True if any moved."""
        changed = False
        for domain in domains:
            row = self.client_domains.get(domain)
            if row is None:
                self._insert(CLIENT_DOMAINS, client_id=client_id, domain=domain)
                changed = True
            elif self._update(CLIENT_DOMAINS, row, client_id=client_id) == "updated":
                changed = True
        return changed

    def _site(self, client_id: int, entry: SiteEntry) -> None:
        row = self.sites.get((client_id, entry.name))
        if row is None:
            site_id = self._insert(SITES, client_id=client_id, name=entry.name)
            self.summary.record("sites", "added")
        else:
            site_id = row.id
            self.summary.record("sites", "unchanged")  # a site has nothing else to change
        for user in entry.users:
            self._user(site_id, user)

    def _user(self, site_id: int, entry: UserEntry) -> None:
        row = self.users.get(entry.email)
        if row is None:
            self._insert(
                USERS, site_id=site_id, name=entry.name, email=entry.email, vip=entry.vip,
                created_by_ingestd=False, created_at=utcnow(),
            )
            self.summary.record("users", "added")
            return
        # created_by_ingestd stays as it is: it records where the row came from.
        outcome = self._update(USERS, row, site_id=site_id, name=entry.name, vip=entry.vip)
        self.summary.record("users", outcome)

    # --- agents ---

    def _agent(self, entry: AgentEntry) -> None:
        values = {"name": entry.name, "team": entry.team, "admin": entry.admin,
                  "active": entry.active}
        row = self.agents.get(entry.email)
        if row is None:
            self._insert(AGENTS, email=entry.email, **values)
            self.summary.record("agents", "added")
        else:
            self.summary.record("agents", self._update(AGENTS, row, **values))

    # --- suppliers and their addresses ---

    def _supplier(self, entry: SupplierEntry) -> None:
        row = self.suppliers.get(entry.name)
        if row is None:
            supplier_id = self._insert(SUPPLIERS, name=entry.name)
            outcome: Outcome = "added"
        else:
            supplier_id = row.id
            outcome = "unchanged"
        addresses = [("email", e) for e in entry.emails] + [("domain", d) for d in entry.domains]
        if self._supplier_addresses(supplier_id, addresses) and outcome == "unchanged":
            outcome = "updated"
        self.summary.record("suppliers", outcome)

    def _supplier_addresses(self, supplier_id: int, addresses: Iterable[tuple[str, str]]) -> bool:
        """Give the addresses to the supplier, taking them from any other; True if any moved."""
        changed = False
        for kind, value in addresses:
            row = self.supplier_addresses.get((kind, value))
            if row is None:
                self._insert(SUPPLIER_ADDRESSES, supplier_id=supplier_id, kind=kind, value=value)
                changed = True
            elif self._update(SUPPLIER_ADDRESSES, row, supplier_id=supplier_id) == "updated":
                changed = True
        return changed

    # --- statements ---

    def _insert(self, table: sa.Table, **values: Any) -> int:
        result = self.conn.execute(sa.insert(table).values(**values))
        key = result.inserted_primary_key
        assert key is not None
        return int(key[0])

    def _update(self, table: sa.Table, row: DbRow, **values: Any) -> Outcome:
        """Write only the columns that differ, so "unchanged" means no write at all."""
        changes = {name: v for name, v in values.items() if getattr(row, name) != v}
        if not changes:
            return "unchanged"
        self.conn.execute(sa.update(table).where(table.c.id == row.id).values(**changes))
        return "updated"


def _rows_by(conn: Connection, table: sa.Table, *key: str) -> dict[Any, DbRow]:
    """Every row of ``table``, by the value (or tuple of values) of the ``key`` columns."""
    rows = conn.execute(sa.select(table)).all()
    if len(key) == 1:
        return {getattr(row, key[0]): row for row in rows}
    return {tuple(getattr(row, k) for k in key): row for row in rows}


def _user_emails(directory: DirectoryDocument) -> list[str]:
    return [
        user.email for client in directory.clients for site in client.sites for user in site.users
    ]


def _users_by_email(conn: Connection, emails: Sequence[str]) -> dict[str, DbRow]:
    columns = (USERS.c.id, USERS.c.email, USERS.c.site_id, USERS.c.name, USERS.c.vip)
    found: dict[str, DbRow] = {}
    for start in range(0, len(emails), _IN_CHUNK):
        chunk = emails[start:start + _IN_CHUNK]
        for row in conn.execute(sa.select(*columns).where(USERS.c.email.in_(chunk))):
            found[row.email] = row
    return found
