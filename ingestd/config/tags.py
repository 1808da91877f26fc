"""Settings of ticket ID tags: the start and end markers, and the rules that refuse
markers which could occur by accident."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, field_validator, model_validator


class Settings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def start_tag_problems(start: str) -> list[str]:
    """Why a start tag could match text that was never a ticket tag."""
    problems = []
    if len(start) < 2:
        problems.append(
            f"start tag {start!r} is shorter than 2 characters, so it could occur by accident"
        )
    if not any(ch.isalnum() for ch in start):
        problems.append(
            f"start tag {start!r} has no letter or digit, so ordinary punctuation "
            "(like '!' or '?') would be read as a ticket tag"
        )
    return problems


class _TagPairRules(Settings):
    start: str
    end: str

    @field_validator("start")
    @classmethod
    def _start_not_accidental(cls, start: str) -> str:
        problems = start_tag_problems(start)
        if problems:
            raise ValueError("; ".join(problems))
        return start

    @field_validator("end")
    @classmethod
    def _end_not_empty(cls, end: str) -> str:
        if not end:
            raise ValueError("end tag must not be empty")
        return end

    @model_validator(mode="after")
    def _start_differs_from_end(self) -> _TagPairRules:
        if self.start == self.end:
            raise ValueError(
                f"start and end tags are both {self.start!r}; they must differ, "
                "or the end of one tag could be read as the start of the next"
            )
        return self


class TagPair(_TagPairRules):
    """A legacy start/end pair also recognised on a mailbox."""


class TicketIdTags(_TagPairRules):
    start: str = "[ID:"
    end: str = "]"
    extra: tuple[TagPair, ...] = ()
    search_body: bool = False
