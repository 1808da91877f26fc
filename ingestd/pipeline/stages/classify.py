"""classify: who wrote this — an agent, an end-user, a supplier, or someone unknown.

Looked up by the From address, case-insensitively, in that order: agents,
users, suppliers by exact address, suppliers by domain. An unknown sender is
handled by ``unknown_senders``: create a user (under the client owning the
domain, else the default client/site), or record no user.

With ``sender_authentication.require_for``, an address of a listed kind (a new
user counts as ``user``) speaks for it only when ``authenticate`` proved it;
otherwise ``on_fail`` says: an unknown sender (and no user is made for the
address), or held (quarantined, ``unauthenticated-sender``). When the proof
could not be had only because DNS did not answer, the message is tried again
later rather than demoted for good.
"""

from __future__ import annotations

from dataclasses import replace

import sqlalchemy as sa

from ingestd.addresses import domain_of
from ingestd.config.settings import IngestdSettings, UnknownSenders
from ingestd.db.models import utcnow
from ingestd.db.tables import AGENTS, CLIENT_DOMAINS, CLIENTS, SITES, SUPPLIER_ADDRESSES, USERS
from ingestd.errors import DnsUnavailable
from ingestd.pipeline.context import MessageContext, Outcome, Sender, SenderKind
from ingestd.pipeline.parsed import ParsedMessage


def classify_sender(ctx: MessageContext) -> Outcome | None:
    sender, note, refused = judge_sender(ctx.db, ctx.settings, ctx.message, ctx.sender_verified)
    if refused is not None:
        if ctx.sender_check_deferred:
            raise DnsUnavailable(f"cannot verify the {refused} {sender.address} now: DNS did "
                                 "not answer")
        if ctx.settings.sender_authentication.on_fail == "quarantine":
            return Outcome("quarantined", "quarantined", "unauthenticated-sender")
    ctx.sender = sender
    if ctx.sender_check:
        ctx.notes.append(ctx.sender_check)
    if note:
        ctx.notes.append(note)
    return None


def identify_sender(db: sa.Connection, settings: IngestdSettings, message: ParsedMessage,
                    verified: bool | None = None) -> tuple[Sender, str | None]:
    """Who wrote ``message`` (an unknown sender's user created as policy says), and a note.

    Shared with My Inbox, whose attach and convert classify the stored
    message later exactly as processing would have. ``verified``: whether
    the From address was proven (``ingestd.authentication``).
    """
    sender, note, _ = judge_sender(db, settings, message, verified)
    return sender, note


def judge_sender(db: sa.Connection, settings: IngestdSettings, message: ParsedMessage,
                 verified: bool | None) -> tuple[Sender, str | None, SenderKind | None]:
    """(sender, note, the kind sender authentication refused the address, if it did)."""
    address = message.from_address
    if message.sender_doubtful and verified is not True:
        # Several From headers are a way to borrow someone's identity: the
        # message is kept, but it speaks for no agent and no user.
        return (Sender("unknown", address, verified=verified),
                "sender unknown: several From headers", None)
    note = None
    if message.sender_header != "From":
        note = f"sender from {message.sender_header} (no usable From)"
    sender = _lookup(db, address) if address else None
    kind: SenderKind = sender.kind if sender is not None else (
        "user" if _would_create_user(settings, address) else "unknown")
    required = settings.sender_authentication.require_for
    if kind != "unknown" and kind in required and verified is not True:
        refusal = f"sender unknown: {kind} address {address} not authenticated"
        return Sender("unknown", address, verified=verified), refusal, kind
    if sender is None:
        sender = _unknown(db, settings, message)
    return replace(sender, verified=verified), note, None


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


def _would_create_user(settings: IngestdSettings, address: str | None) -> bool:
    return settings.unknown_senders.action != "no_user" and bool(address) and "@" in (
        address or "")


def _unknown(db: sa.Connection, settings: IngestdSettings, message: ParsedMessage) -> Sender:
    address, policy = message.from_address, settings.unknown_senders
    if not _would_create_user(settings, address) or address is None:
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
