"""Bounces: delivery failure reports, read into the recipients that failed and why.

``read_bounce`` is the entry point (``detect.py``); ``report.py`` holds what it
returns; ``dsn.py`` reads RFC 3464 delivery-status fields; ``text.py`` reads
the human-readable reports that vendors write instead.
"""

from ingestd.bounces.detect import read_bounce
from ingestd.bounces.report import Bounce, FailedRecipient

__all__ = ["Bounce", "FailedRecipient", "read_bounce"]
