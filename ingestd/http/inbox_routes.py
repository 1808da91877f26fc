"""``/api/inbox``: an agent's My Inbox (administrators: everyone's), and acting on items."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import APIRouter, HTTPException, Path, Query, Response

from ingestd.db.engine import read_only
from ingestd.db.errors import translated
from ingestd.http.auth import Caller, Context
from ingestd.http.raw_message import RAW_DOWNLOADS, RawMessage
from ingestd.http.schemas import (
    AttachRequest,
    Conflict,
    InboxItem,
    InboxPage,
    InboxStatus,
    NewRequest,
    NoteRequest,
    Problem,
)
from ingestd.services import inbox

router = APIRouter(prefix="/api/inbox", tags=["inbox"])

# Ids are 32-bit integer columns: larger values cannot name a row.
ItemId = Annotated[int, Path(ge=1, le=2**31 - 1)]

_READ_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": Problem, "description": "no bearer token, or not a valid one"},
    404: {"model": Problem, "description": "no such item, or another agent's"},
    503: {"model": Problem, "description": "the database is unavailable; try again"},
}
_ACTION_ERRORS: dict[int | str, dict[str, Any]] = {
    **_READ_ERRORS,
    400: {"model": Problem, "description": "the request cannot be done with this data"},
    409: {"model": Conflict, "description": "the item was already acted on; its state now"},
}


@router.get("", response_model=InboxPage, responses={**_READ_ERRORS, 400: _ACTION_ERRORS[400]})
def list_inbox(context: Context, caller: Caller, status: InboxStatus | None = None,
               limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> dict[str, Any]:
    """Items, newest first; deleted items only when ``status=deleted`` asks for them."""
    with translated("list inbox items"), read_only(context.engine) as conn:
        page = inbox.list_items(conn, visible_to=caller, status=status, limit=limit)
    return {"items": page.records, "total": page.total, "truncated": page.truncated}


@router.get("/{item_id}", response_model=InboxItem, responses=_READ_ERRORS)
def show_item(item_id: ItemId, context: Context, caller: Caller) -> dict[str, Any]:
    with translated("show an inbox item"), read_only(context.engine) as conn:
        return inbox.show_item(conn, item_id, visible_to=caller)


@router.get("/{item_id}/raw", response_class=Response, responses={
    **_READ_ERRORS,
    410: {"model": Problem, "description": "the message's raw bytes were purged (retention)"},
    503: {"model": Problem, "description": "the database is unavailable, or too many "
          "downloads are under way; try again"},
    200: {"description": "the stored message, byte for byte as received",
          "content": {"message/rfc822": {"schema": {"type": "string", "format": "binary"}}}},
})
def raw_message(item_id: ItemId, context: Context, caller: Caller) -> Response:
    """At most a few at once (each may hold tens of megabytes): beyond them, 503."""
    if not RAW_DOWNLOADS.acquire(blocking=False):
        raise HTTPException(status_code=503, headers={"Retry-After": "1"},
                            detail="too many message downloads at once; try again shortly")
    try:
        with translated("read a stored message"), read_only(context.engine) as conn:
            content = inbox.item_message(conn, item_id, visible_to=caller)
    except BaseException:
        RAW_DOWNLOADS.release()
        raise
    # The slot is held until the last byte is sent: that is when the memory is let go.
    return RawMessage(content, on_sent=RAW_DOWNLOADS.release)


@router.post("/{item_id}/attach", response_model=InboxItem, responses=_ACTION_ERRORS)
def attach(item_id: ItemId, request: AttachRequest, context: Context, caller: Caller
           ) -> dict[str, Any]:
    """Add the mail to a ticket as an email action, with its attachments."""
    return _act(context, "attach", lambda conn: inbox.attach(
        conn, context.settings, item_id, request.ticket_id, caller))


@router.post("/{item_id}/new", response_model=InboxItem, responses=_ACTION_ERRORS)
def new_ticket(item_id: ItemId, context: Context, caller: Caller,
               request: NewRequest | None = None) -> dict[str, Any]:
    """A new ticket of the mailbox's match type: details = the body, contact = the sender."""
    summary = request.summary if request is not None else None
    return _act(context, "new", lambda conn: inbox.convert(
        conn, context.settings, item_id, caller, summary))


@router.post("/{item_id}/note", response_model=InboxItem, responses=_ACTION_ERRORS)
def crm_note(item_id: ItemId, context: Context, caller: Caller,
             request: NoteRequest | None = None) -> dict[str, Any]:
    """A CRM note with the mail's text, on the named client or the sender domain's."""
    client = request.client if request is not None else None
    return _act(context, "note", lambda conn: inbox.note(
        conn, context.settings, item_id, caller, client))


@router.delete("/{item_id}", response_model=InboxItem, responses={
    **_ACTION_ERRORS, 403: {"model": Problem, "description": "only administrators delete"}})
def delete(item_id: ItemId, context: Context, caller: Caller) -> dict[str, Any]:
    """Hide the item; the stored message stays."""
    return _act(context, "delete", lambda conn: inbox.delete(conn, item_id, caller))


def _act(context: Context, verb: str, action: Callable[[sa.Connection], dict[str, Any]]
         ) -> dict[str, Any]:
    """One action, one transaction: any refusal rolls back everything it did."""
    with translated(f"inbox {verb}"), context.engine.begin() as conn:
        return action(conn)
