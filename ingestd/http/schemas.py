"""The JSON shapes of the API, as published in ``/openapi.json``.

The item keys are the ``ingestd inbox show --json`` record's (``ITEM_KEYS``);
``from`` is a Python keyword, hence the alias.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from ingestd.services.vocabulary import INBOX_STATUSES

InboxStatus = Literal["open", "attached", "converted", "noted", "deleted"]
assert set(InboxStatus.__args__) == set(INBOX_STATUSES)  # type: ignore[attr-defined]


# At least one character that no one's idea of white space covers: Python's strip()
# (which the services use) also strips \x1c-\x1f and \x85, JSON Schema's \s does not.
_VISIBLE = r"[^\s\x1c-\x1f\x85]"


class InboxItem(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    id: int
    agent_email: str | None
    status: InboxStatus
    from_: str | None = Field(alias="from")
    subject: str | None
    received_at: str | None = Field(description="ISO 8601, UTC")
    preview: str | None
    message_id: str | None
    inbound_id: int | None
    acted_by: str | None
    acted_at: str | None
    ticket_id: int | None
    crm_note_id: int | None


class InboxPage(BaseModel):
    items: list[InboxItem]
    total: int = Field(description="items matching the filter, counting those past the limit")
    truncated: bool


class AttachRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ticket_id: int = Field(ge=1, le=2**31 - 1)  # a 32-bit id column


class NewRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    summary: str | None = Field(default=None, max_length=1000, pattern=_VISIBLE,
                                description="default: the subject, reply prefixes removed")


class NoteRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    client: str | None = Field(default=None, max_length=255, pattern=_VISIBLE,
                               description="default: the client owning the sender's domain")


class Problem(BaseModel):
    detail: str


class Conflict(BaseModel):
    detail: str
    current: InboxItem


class Health(BaseModel):
    status: Literal["ok"]


class Check(BaseModel):
    ok: bool
    detail: str


class Readiness(BaseModel):
    ready: bool
    checks: dict[str, Check]
