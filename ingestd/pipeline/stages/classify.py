"""classify: who wrote this — an agent, an end-user, a supplier, or someone unknown.

Looked up by the From address, case-insensitively, in that order: agents,
users, suppliers by exact address, suppliers by domain. An unknown sender is
handled by ``unknown_senders``: create a user (under the client owning the
domain, else the default client/site), or record no user.
"""

from __future__ import annotations

import sqlalchemy as sa

from ingestd.addresses import domain_of
from ingestd.config.settings import IngestdSettings, UnknownSenders
from ingestd.db.models import utcnow
from ingestd.db.tables import AGENTS, CLIENT_DOMAINS, CLIENTS, SITES, SUPPLIER_ADDRESSES, USERS
from ingestd.pipeline.context import MessageContext, Outcome, Sender
from ingestd.pipeline.parsed import ParsedMessage


def classify_sender(ctx: MessageContext) -> Outcome | None:
    ctx.sender, note = identify_sender(ctx.db, ctx.settings, ctx.message)
    if note:
        ctx.notes.append(note)
    return None


def identify_sender(db: sa.Connection, settings: IngestdSettings,
                    message: ParsedMessage) -> tuple[Sender, str | None]:
    """Who wrote ``message`` (an unknown sender's user created as policy says), and a note.

    Shared with My Inbox, whose attach and convert classify the stored
    message later exactly as processing would have.
    """
    address = message.from_address
    if message.sender_doubtful:
        # Several From headers are a way to borrow someone's identity: the
        # message is kept, but it speaks for no agent and no user.
        return Sender("unknown", address), "sender unknown: several From headers"
    note = None
    if message.sender_header != "From":
        note = f"sender from {message.sender_header} (no usable From)"
    sender = _lookup(db, address) if address else None
    if sender is None:
        sender = _unknown(db, settings, message)
    return sender, note


# One round trip for every way an address can be known, ranked so the first
# row decides: agent, then user, then supplier by address, then by domain.
_KNOWN = sa.union_all(
    sa.select(sa.literal(0).label("rank"), AGENTS.c.id, sa.null(), sa.null())
    .where(AGENTS.c.email == sa.bindparam("b_address")),
    sa.select(sa.literal(1), USERS.c.id, USERS.c.site_id, SITES.c.client_id)
    .join(SITES, SITES.c.id == USERS.c.site_id)
    .where(USERS.c.email == sa.bindparam("b_address")),
    sa.select(sa.literal(2), SUPPLIER_ADDRESSES.c.supplier_id, sa.null(), sa.null())
    .where(SUPPLIER_ADDRESSES.c.kind == "email",
           SUPPLIER_ADDRESSES.c.value == sa.bindparam("b_address")),
    sa.select(sa.literal(3), SUPPLIER_ADDRESSES.c.supplier_id, sa.null(), sa.null())
    .where(SUPPLIER_ADDRESSES.c.kind == "domain",
           SUPPLIER_ADDRESSES.c.value == sa.bindparam("b_domain")),
)


def _lookup(db: sa.Connection, address: str) -> Sender | None:
    rows = db.execute(_KNOWN, {"b_address": address, "b_domain": domain_of(address)}).all()
    if not rows:
        return None
    rank, row_id, site_id, client_id = min(rows, key=lambda r: r[0])
    if rank == 0:
        return Sender("agent", address, agent_id=row_id)
    if rank == 1:
        return Sender("user", address, user_id=row_id, site_id=site_id, client_id=client_id)
    return Sender("supplier", address, supplier_id=row_id)


def _unknown(db: sa.Connection, settings: IngestdSettings, message: ParsedMessage) -> Sender:
    address, policy = message.from_address, settings.unknown_senders
    if policy.action == "no_user" or not address or "@" not in address:
        return Sender("unknown", address)
    client_id, site_id = _home_for(db, policy, domain_of(address))
    name = message.from_name or address.split("@", 1)[0]
    user_id = db.execute(
        sa.insert(USERS).values(
            site_id=site_id, name=name[:255], email=address, vip=False,
            created_by_ingestd=True, created_at=utcnow(),
        ).returning(USERS.c.id)
    ).scalar_one()
    return Sender("user", address, user_id=user_id, site_id=site_id, client_id=client_id,
                  user_created=True)


def _home_for(db: sa.Connection, policy: UnknownSenders, domain: str) -> tuple[int, int]:
    """(client, site) for a new user: the domain's client and its first site, else defaults."""
    client_id = db.execute(
        sa.select(CLIENT_DOMAINS.c.client_id).where(CLIENT_DOMAINS.c.domain == domain)
    ).scalar()
    if client_id is None:
        client_id = _get_or_create(db, CLIENTS, {"name": policy.default_client}, {"vip": False})
    site_id = db.execute(
        sa.select(SITES.c.id).where(SITES.c.client_id == client_id).order_by(SITES.c.id)
    ).scalar()
    if site_id is None:
        site_id = _get_or_create(db, SITES, {"client_id": client_id,
                                               "name": policy.default_site}, {})
    return int(client_id), int(site_id)


def _get_or_create(db: sa.Connection, table: sa.Table, keys: dict[str, object],
                   extra: dict[str, object]) -> int:
    # A concurrent worker creating the same row makes this transaction fail
    # on the unique constraint; the worker retries the whole message.
    where = [table.c[k] == v for k, v in keys.items()]
    found = db.execute(sa.select(table.c.id).where(*where)).scalar()
    if found is not None:
        return int(found)
    return int(db.execute(
        sa.insert(table).values(**keys, **extra).returning(table.c.id)
    ).scalar_one())
