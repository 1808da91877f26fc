"""The keys that say two deliveries are one message (intake and dedupe share them).

* a **source key** is chosen by the source: ``sha256:<hex>`` of the raw bytes
  for SMTP and files (the same bytes delivered twice), or
  ``<source>:<mailbox>:<provider id>`` for a pull (the same provider message
  fetched twice, whatever its bytes);
* a **Message-ID key** is ``mid:<sha256 of Message-ID and From>``: the same
  Message-ID from another sender is another message (a forged id must not
  suppress someone else's mail).
"""

from __future__ import annotations

import hashlib

CONTENT_PREFIX = "sha256:"


def content_key(raw: bytes) -> str:
    return CONTENT_PREFIX + hashlib.sha256(raw).hexdigest()


def provider_key(source: str, mailbox: str, provider_id: str) -> str:
    return f"{source}:{mailbox}:{provider_id}"


def message_id_key(message_id: str, from_address: str) -> str:
    digest = hashlib.sha256(f"{message_id}\0{from_address.lower()}".encode()).hexdigest()
    return f"mid:{digest}"


def describe(source_key: str) -> str:
    """How a duplicate by ``source_key`` reads in its reason."""
    return "same bytes" if source_key.startswith(CONTENT_PREFIX) else "same source id"
