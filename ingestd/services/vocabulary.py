"""The status words of the contract (see DESIGN.md), importable without SQLAlchemy."""

INBOUND_STATUSES = ("pending", "processed", "duplicate", "ignored", "quarantined")
TICKET_STATUSES = ("open", "closed")
# A My Inbox item: waiting, or what an agent made of it (docs/database.md).
INBOX_STATUSES = ("open", "attached", "converted", "noted", "deleted")
