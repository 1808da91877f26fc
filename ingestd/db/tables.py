"""The Core ``Table`` of each model, for queries that need no ORM objects.

One place for these, so modules import ``TICKETS`` rather than each reaching
into ``Ticket.__table__`` (which type checkers cannot see through).
"""

from __future__ import annotations

import sqlalchemy as sa

from ingestd.db import inbound, models


def _table(model: type) -> sa.Table:
    table = model.__table__  # type: ignore[attr-defined]
    assert isinstance(table, sa.Table)
    return table


CLIENTS = _table(models.Client)
CLIENT_DOMAINS = _table(models.ClientDomain)
SITES = _table(models.Site)
USERS = _table(models.User)
AGENTS = _table(models.Agent)
SUPPLIERS = _table(models.Supplier)
SUPPLIER_ADDRESSES = _table(models.SupplierAddress)
TICKETS = _table(models.Ticket)
ACTIONS = _table(models.Action)
ATTACHMENTS = _table(models.Attachment)
INBOUND = inbound.INBOUND
INBOX_ITEMS = _table(models.InboxItem)
CRM_NOTES = _table(models.CrmNote)
API_TOKENS = _table(models.ApiToken)
DEDUPE_KEYS = _table(models.DedupeKey)
MAILBOX_STATES = _table(models.MailboxState)
MAILBOX_CHECKPOINTS = _table(models.MailboxCheckpoint)
