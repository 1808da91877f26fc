"""The status words of the contract (see DESIGN.md), importable without SQLAlchemy."""

INBOUND_STATUSES = ("pending", "processed", "duplicate", "ignored", "quarantined")
TICKET_STATUSES = ("open", "closed")
