"""The database tables: the product's contract with the helpdesk.

Other programs read these tables, so names and meanings change only with a
migration (``ingestd/migrations``). docs/database.md documents every column
and status value.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from ingestd.db.columns import timestamp
from ingestd.db.inbound import INBOUND, utcnow
from ingestd.db.pull_models import MailboxCheckpoint, MailboxState

# Re-exported: the clock every table's timestamps use, and the pulled mailboxes'
# tables (defined in pull_models.py; importing this module registers every table).
__all__ = ["MailboxCheckpoint", "MailboxState", "utcnow"]


_ts = timestamp


# --- the directory: who is who ------------------------------------------------


class Client(SQLModel, table=True):
    __tablename__ = "clients"
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(sa_column=sa.Column(sa.String(255), nullable=False, unique=True))
    vip: bool = False


class ClientDomain(SQLModel, table=True):
    """A mail domain owned by a client (unknown senders from it join that client)."""

    __tablename__ = "client_domains"
    id: int | None = Field(default=None, primary_key=True)
    client_id: int = Field(foreign_key="clients.id", index=True)
    domain: str = Field(sa_column=sa.Column(sa.String(255), nullable=False, unique=True))


class Site(SQLModel, table=True):
    __tablename__ = "sites"
    __table_args__ = (sa.UniqueConstraint("client_id", "name", name="uq_sites_client_name"),)
    id: int | None = Field(default=None, primary_key=True)
    client_id: int = Field(foreign_key="clients.id", index=True)
    name: str = Field(max_length=255)


class User(SQLModel, table=True):
    """An end-user of a client, at one of its sites."""

    __tablename__ = "users"
    id: int | None = Field(default=None, primary_key=True)
    site_id: int = Field(foreign_key="sites.id", index=True)
    name: str = Field(max_length=255)
    email: str = Field(sa_column=sa.Column(sa.String(320), nullable=False, unique=True))
    vip: bool = False
    # True when ingestd created the user for an unknown sender.
    created_by_ingestd: bool = False
    created_at: datetime | None = _ts(nullable=True)


class Agent(SQLModel, table=True):
    """A helpdesk staff member."""

    __tablename__ = "agents"
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=255)
    email: str = Field(sa_column=sa.Column(sa.String(320), nullable=False, unique=True))
    team: str | None = Field(default=None, max_length=255)
    admin: bool = False
    active: bool = True


class Supplier(SQLModel, table=True):
    __tablename__ = "suppliers"
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(sa_column=sa.Column(sa.String(255), nullable=False, unique=True))


class SupplierAddress(SQLModel, table=True):
    """An address (kind ``email``) or a whole domain (kind ``domain``) of a supplier."""

    __tablename__ = "supplier_addresses"
    __table_args__ = (sa.UniqueConstraint("kind", "value", name="uq_supplier_addresses"),)
    id: int | None = Field(default=None, primary_key=True)
    supplier_id: int = Field(foreign_key="suppliers.id", index=True)
    kind: str = Field(max_length=16)
    value: str = Field(max_length=320)


# --- what ingestd makes ------------------------------------------------------------


class Ticket(SQLModel, table=True):
    __tablename__ = "tickets"
    id: int | None = Field(default=None, primary_key=True)
    type: str = Field(max_length=64)
    status: str = Field(default="open", max_length=16, index=True)
    summary: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    mailbox: str | None = Field(default=None, max_length=255, index=True)
    user_id: int | None = Field(default=None, foreign_key="users.id")
    client_id: int | None = Field(default=None, foreign_key="clients.id")
    site_id: int | None = Field(default=None, foreign_key="sites.id")
    agent_id: int | None = Field(default=None, foreign_key="agents.id")
    created_at: datetime | None = _ts()
    updated_at: datetime | None = _ts()
    # The request as first written (a new opportunity from My Inbox copies the mail's body here).
    details: str | None = Field(default=None, sa_column=sa.Column(sa.Text, nullable=True))
    # Set by rules (migration 0007): free-text values the helpdesk defines.
    priority: str | None = Field(default=None, max_length=32)
    category: str | None = Field(default=None, max_length=255)
    team: str | None = Field(default=None, max_length=255)
    tags: list[str] | None = Field(default=None, sa_column=sa.Column(sa.JSON, nullable=True))
    # Custom fields: name -> text (from rules' set_field).
    fields: dict[str, str] | None = Field(default=None,
                                          sa_column=sa.Column(sa.JSON, nullable=True))
    # The closed ticket this one continues (the `new_ticket` closed-ticket policy; 0009).
    linked_ticket_id: int | None = None
    # The contact, or the contact's client, is marked important.
    vip: bool = Field(default=False, sa_column=sa.Column(sa.Boolean, nullable=False,
                                                         server_default=sa.false()))


class Action(SQLModel, table=True):
    """One entry in a ticket's history: an inbound mail, or outgoing mail recorded."""

    __tablename__ = "actions"
    id: int | None = Field(default=None, primary_key=True)
    ticket_id: int = Field(foreign_key="tickets.id", index=True)
    kind: str = Field(max_length=32)
    sender_kind: str | None = Field(default=None, max_length=16)
    user_created: bool = False
    from_address: str | None = Field(default=None, max_length=320)
    from_name: str | None = Field(default=None, max_length=255)
    # Address lists, each address once, joined with ", " (lower case, as parsed).
    to_address: str | None = Field(default=None, sa_column=sa.Column(sa.Text, nullable=True))
    subject: str | None = Field(default=None, sa_column=sa.Column(sa.Text, nullable=True))
    body_text: str | None = Field(default=None, sa_column=sa.Column(sa.Text, nullable=True))
    body_html: str | None = Field(default=None, sa_column=sa.Column(sa.Text, nullable=True))
    message_id: str | None = Field(
        default=None, sa_column=sa.Column(sa.String(998), nullable=True, index=True)
    )
    inbound_message_id: int | None = Field(default=None, foreign_key="inbound_messages.id")
    created_at: datetime | None = _ts()
    cc_address: str | None = Field(default=None, sa_column=sa.Column(sa.Text, nullable=True))
    reply_to_address: str | None = Field(
        default=None, sa_column=sa.Column(sa.Text, nullable=True))
    # A delivery_failure action (a bounce, migration 0010): the failed
    # addresses (", "-joined), the worst DSN status, and whether any is a
    # hard (5.x.x) failure.
    failed_recipient: str | None = Field(
        default=None, sa_column=sa.Column(sa.Text, nullable=True))
    delivery_status: str | None = Field(default=None, max_length=32)
    hard_bounce: bool | None = None
    # Sender authentication: True / False, or None when not checked.
    sender_verified: bool | None = None


class Attachment(SQLModel, table=True):
    __tablename__ = "attachments"
    id: int | None = Field(default=None, primary_key=True)
    action_id: int = Field(foreign_key="actions.id", index=True)
    # A display name only: sanitised, never used as a filesystem path.
    filename: str = Field(max_length=255)
    content_type: str = Field(max_length=255)
    size: int
    sha256: str = Field(max_length=64)
    content: bytes = Field(sa_column=sa.Column(sa.LargeBinary, nullable=False))
    # The part's Content-ID without <>, so the helpdesk can resolve <img src="cid:...">.
    content_id: str | None = Field(default=None, max_length=255)
    inline: bool = Field(default=False, sa_column=sa.Column(
        sa.Boolean, nullable=False, server_default=sa.false()))


# inbound_messages is defined in Core (ingestd/db/inbound.py), so that intake
# can store mail without loading sqlmodel; here it joins the metadata that the
# migrations and the other tables' foreign keys refer to.
INBOUND_MESSAGES = INBOUND.to_metadata(SQLModel.metadata)


class DedupeKey(SQLModel, table=True):
    """The serialising point of dedupe: the first message to insert a key owns it.

    Keys: ``sha256:<raw>`` (or a pull's provider key) and ``mid:<sha256 of
    Message-ID and From>``. Inserted in the processing transaction, so a key
    exists only once its message's outcome is committed.
    """

    __tablename__ = "dedupe_keys"
    key: str = Field(sa_column=sa.Column(sa.Text, primary_key=True))
    inbound_message_id: int = Field(foreign_key="inbound_messages.id")


class InboxItem(SQLModel, table=True):
    """Sales mail waiting in an agent's My Inbox.

    status: open | attached | converted | noted | deleted
    """

    __tablename__ = "inbox_items"
    id: int | None = Field(default=None, primary_key=True)
    agent_id: int | None = Field(default=None, foreign_key="agents.id", index=True)
    mailbox: str = Field(max_length=255)
    inbound_message_id: int | None = Field(default=None, foreign_key="inbound_messages.id")
    status: str = Field(default="open", max_length=16, index=True)
    from_address: str | None = Field(default=None, max_length=320)
    subject: str | None = Field(default=None, sa_column=sa.Column(sa.Text, nullable=True))
    ticket_id: int | None = Field(default=None, foreign_key="tickets.id")
    created_at: datetime | None = _ts()
    updated_at: datetime | None = _ts()
    from_name: str | None = Field(default=None, max_length=255)
    message_id: str | None = Field(default=None, max_length=998)
    # The first words of the body, so the agent can triage without opening it.
    preview: str | None = Field(default=None, sa_column=sa.Column(sa.Text, nullable=True))
    received_at: datetime | None = _ts(nullable=True)
    # Plain ids (added by migration 0005 without a table copy): the agent who
    # attached, converted, noted or deleted the item, and the note it became.
    acted_by_id: int | None = None
    acted_at: datetime | None = _ts(nullable=True)
    crm_note_id: int | None = None


class CrmNote(SQLModel, table=True):
    __tablename__ = "crm_notes"
    id: int | None = Field(default=None, primary_key=True)
    client_id: int = Field(foreign_key="clients.id", index=True)
    agent_id: int | None = Field(default=None, foreign_key="agents.id")
    inbox_item_id: int | None = Field(default=None, foreign_key="inbox_items.id")
    body: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    created_at: datetime | None = _ts()


class ApiToken(SQLModel, table=True):
    """A bearer token for the HTTP API; only its sha256 is stored."""

    __tablename__ = "api_tokens"
    id: int | None = Field(default=None, primary_key=True)
    agent_id: int = Field(foreign_key="agents.id", index=True)
    name: str = Field(max_length=255)
    token_sha256: str = Field(sa_column=sa.Column(sa.String(64), nullable=False, unique=True))
    created_at: datetime | None = _ts()
    expires_at: datetime | None = _ts(nullable=True)
    revoked_at: datetime | None = _ts(nullable=True)


metadata = SQLModel.metadata
