"""authenticate: is the From address proven? (``sender_authentication``; off by default)

Runs before the database work: it reads the trusted receiving MTA's
``Authentication-Results``, or checks DKIM itself (a DNS lookup) where
configured. It decides nothing; ``classify`` applies the verdict, and the
action records it. See ``ingestd/authentication/verdict.py`` for what counts.
"""

from __future__ import annotations

from ingestd.authentication.verdict import judge
from ingestd.pipeline.context import MessageContext, Outcome


def authenticate(ctx: MessageContext) -> Outcome | None:
    policy = ctx.settings.sender_authentication
    if not policy.enabled:
        return None
    verdict = judge(ctx.raw, ctx.message.from_address, policy, source=ctx.source,
                    peer=ctx.peer)
    ctx.sender_verified = verdict.verified
    ctx.sender_check_deferred = verdict.deferred
    # The note is written by classify: a decision's notes start afresh on each try.
    ctx.sender_check = verdict.why
    return None
