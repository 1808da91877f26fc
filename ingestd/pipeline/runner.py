"""The stage runner: a plain loop over a stage list it is given.

A stage returns ``None`` to let the next one run, or an ``Outcome`` that
ends processing; exceptions are failures, not decisions. Every outcome is
honoured wherever the stage sits, the first phase's included. Tests and
tools pass their own ``Pipeline`` instead of patching module globals.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from ingestd.pipeline.context import MessageContext, Outcome

Stage = Callable[[MessageContext], Outcome | None]
NamedStage = tuple[str, Stage]


@dataclass(frozen=True)
class Pipeline:
    """The stages of processing, in order.

    ``prepare`` runs without the database (parsing is CPU work and must not
    hold SQLite's write lock); ``decide`` runs inside the message's one
    transaction, and its last stage always returns an outcome.
    """

    prepare: tuple[NamedStage, ...]
    decide: tuple[NamedStage, ...]

    def replacing(self, name: str, stage: Stage) -> Pipeline:
        """The same pipeline with the stage called ``name`` replaced (tests, tools)."""

        def swap(stages: tuple[NamedStage, ...]) -> tuple[NamedStage, ...]:
            return tuple((n, stage if n == name else s) for n, s in stages)

        if not any(n == name for n, _ in (*self.prepare, *self.decide)):
            raise KeyError(f"no stage called {name!r}")
        return Pipeline(swap(self.prepare), swap(self.decide))


def run_stages(ctx: MessageContext, stages: tuple[NamedStage, ...]) -> Outcome | None:
    """Run ``stages`` in order until one decides; record each one's time on ``ctx``."""
    for name, stage in stages:
        ctx.stage = name
        started = time.perf_counter()
        try:
            outcome = stage(ctx)
        finally:
            ctx.timings[name] = round(time.perf_counter() - started, 6)
        if outcome is not None:
            return outcome
    return None
