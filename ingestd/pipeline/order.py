"""The pipeline, in order. Reading these tuples tells what happens to a message.

``prepare`` runs without the database; ``decide`` runs inside the message's
one transaction, and its last stage always returns an outcome (see
``pipeline/runner.py``).
"""

from __future__ import annotations

from ingestd.pipeline.runner import Pipeline
from ingestd.pipeline.stages.apply import apply_to_ticket
from ingestd.pipeline.stages.authenticate import authenticate
from ingestd.pipeline.stages.bounce import record_bounce
from ingestd.pipeline.stages.classify import classify_sender
from ingestd.pipeline.stages.dedupe import dedupe
from ingestd.pipeline.stages.guard import guard_ticket
from ingestd.pipeline.stages.match import match_opportunity
from ingestd.pipeline.stages.parse import parse
from ingestd.pipeline.stages.protect import protect
from ingestd.pipeline.stages.rules import apply_rules
from ingestd.pipeline.stages.tag import find_tag
from ingestd.pipeline.stages.thread import find_tagged_ticket, thread_by_references

PIPELINE = Pipeline(
    prepare=(
        ("parse", parse),
        ("protect", protect),
        ("authenticate", authenticate),
        ("tag", find_tag),
    ),
    decide=(
        ("dedupe", dedupe),
        ("find_ticket", find_tagged_ticket),
        ("thread", thread_by_references),
        ("bounce", record_bounce),
        ("classify", classify_sender),
        ("guard", guard_ticket),
        ("match", match_opportunity),
        ("rules", apply_rules),
        ("apply", apply_to_ticket),
    ),
)
