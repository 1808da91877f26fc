"""ingestd: email-ingestion daemon for helpdesk / PSA software."""

__version__ = "0.1.0"
