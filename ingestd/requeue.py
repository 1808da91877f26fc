"""Kept for importers of the old location; the queue module owns these now."""

from ingestd.queue import reprocess, retry_quarantined

__all__ = ["reprocess", "retry_quarantined"]
