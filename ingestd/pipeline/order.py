"""The pipeline, in order. Reading these tuples tells what happens to a message.

PREPARE runs without the database (parsing is CPU work and must not hold
SQLite's write lock); DECIDE runs inside the message's one transaction, and
its last stage always returns an outcome.
"""

from __future__ import annotations

from collections.abc import Callable

from ingestd.pipeline.context import MessageContext, Outcome
from ingestd.pipeline.stages.apply import apply_to_ticket
from ingestd.pipeline.stages.classify import classify_sender
from ingestd.pipeline.stages.dedupe import dedupe
from ingestd.pipeline.stages.parse import parse
from ingestd.pipeline.stages.tag import find_tag
from ingestd.pipeline.stages.thread import find_tagged_ticket, thread_by_references

Stage = Callable[[MessageContext], Outcome | None]

PREPARE: tuple[tuple[str, Stage], ...] = (
    ("parse", parse),
    ("tag", find_tag),
)

DECIDE: tuple[tuple[str, Stage], ...] = (
    ("dedupe", dedupe),
    ("find_ticket", find_tagged_ticket),
    ("thread", thread_by_references),
    ("classify", classify_sender),
    ("apply", apply_to_ticket),
)
