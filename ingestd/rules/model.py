"""The shape of a rule file. Unknown keys are errors; regexes compile at load.

A file is a list of rules::

    - name: asset-from-subject
      mailboxes: [support]                 # optional scope
      when: new_ticket                     # new_ticket | update | any
      match: {subject: {matches: "(?P<asset>PC-[0-9]+)"}}
      actions:
        - set_field: {name: asset, value: "{asset}"}
        - assign: {team: Support, strategy: fewest_open}
      stop: true
"""

from __future__ import annotations

from typing import Any, Literal

import regex
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

_SENDER_KINDS = {"agent", "user", "supplier", "unknown"}
_OPERATORS = ("equals", "contains", "starts_with", "ends_with", "any_of", "matches")


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class Test(_Frozen):
    """One operator on a text value; ``not_<operator>`` negates it. Text comparisons
    ignore case; a regex is as written (add ``(?i)`` to ignore case)."""

    equals: str | None = None
    contains: str | None = None
    starts_with: str | None = None
    ends_with: str | None = None
    any_of: tuple[str, ...] | None = None
    matches: str | None = None
    not_equals: str | None = None
    not_contains: str | None = None
    not_starts_with: str | None = None
    not_ends_with: str | None = None
    not_any_of: tuple[str, ...] | None = None
    not_matches: str | None = None
    # The compiled `matches` / `not_matches`: the `regex` module, whose searches take a
    # timeout (an admin's pattern must not let a hostile body stall processing).
    _pattern: Any = PrivateAttr(default=None)

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        # `subject: Invoice` means `subject: {equals: Invoice}`.
        if isinstance(value, str):
            return {"equals": value}
        return value

    @field_validator("matches", "not_matches")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                regex.compile(value)
            except regex.error as exc:
                raise ValueError(f"not a valid regular expression: {exc}") from exc
        return value

    def model_post_init(self, context: Any, /) -> None:
        source = self.matches if self.matches is not None else self.not_matches
        if source is not None:
            self._pattern = regex.compile(source)

    @property
    def pattern(self) -> Any:
        return self._pattern

    @model_validator(mode="after")
    def _one_operator(self) -> Test:
        given = [name for name in type(self).model_fields if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one operator: " + ", ".join(
                [*_OPERATORS, *(f"not_{o}" for o in _OPERATORS)]))
        return self

    @property
    def operator(self) -> tuple[str, bool, Any]:
        """(operator, negated, operand)."""
        for name in type(self).model_fields:
            value = getattr(self, name)
            if value is not None:
                negated = name.startswith("not_")
                return name.removeprefix("not_"), negated, value
        raise AssertionError("validated to hold one operator")


class Condition(_Frozen):
    """Every key given must hold. ``all`` / ``any`` / ``not`` combine conditions."""

    mailbox: Test | None = None
    from_address: Test | None = Field(default=None, alias="from")
    from_domain: Test | None = None
    to: Test | None = None
    cc: Test | None = None
    to_or_cc: Test | None = None
    subject: Test | None = None
    body: Test | None = None
    attachment_name: Test | None = None
    sender_kind: Test | None = None  # agent | user | supplier | unknown
    headers: dict[str, Test] | None = None
    vip: bool | None = None
    has_attachment: bool | None = None
    all: tuple[Condition, ...] | None = Field(default=None, min_length=1)
    any: tuple[Condition, ...] | None = Field(default=None, min_length=1)
    not_: Condition | None = Field(default=None, alias="not")

    @field_validator("sender_kind")
    @classmethod
    def _kinds(cls, test: Test | None) -> Test | None:
        if test is None:
            return None
        _, _, operand = test.operator
        values = operand if isinstance(operand, tuple) else (operand,)
        if test.pattern is None:
            unknown = [v for v in values if str(v).lower() not in _SENDER_KINDS]
            if unknown:
                raise ValueError(f"{unknown[0]!r} is not a sender kind "
                                 f"({', '.join(sorted(_SENDER_KINDS))})")
        return test


class Assign(_Frozen):
    agent: str | None = None
    team: str | None = None
    strategy: Literal["fewest_open"] | None = None

    @model_validator(mode="after")
    def _who(self) -> Assign:
        if (self.agent is None) == (self.team is None):
            raise ValueError("assign an agent (agent: address) or a team "
                             "(team: NAME, strategy: fewest_open)")
        if self.team is not None and self.strategy is None:
            raise ValueError("a team assignment needs strategy: fewest_open")
        return self


class SetField(_Frozen):
    name: str = Field(min_length=1, max_length=100)
    # A fixed value, or one with {placeholders} filled from the match's named captures.
    value: str | None = None
    # Or the body text between these two markers (Halo's field mapping).
    start: str | None = None
    end: str | None = None

    @model_validator(mode="after")
    def _source(self) -> SetField:
        by_value = self.value is not None
        by_markers = self.start is not None or self.end is not None
        if by_value == by_markers:
            raise ValueError("give value, or start and end markers, not both")
        if by_markers and (not self.start or not self.end):
            raise ValueError("start and end markers go together and must not be empty")
        return self


class Action(_Frozen):
    """Exactly one key per action."""

    ignore: bool | None = None
    set_type: str | None = Field(default=None, min_length=1, max_length=64)
    set_priority: str | None = Field(default=None, min_length=1, max_length=32)
    set_status: Literal["open", "closed"] | None = None
    set_category: str | None = Field(default=None, min_length=1, max_length=255)
    set_team: str | None = Field(default=None, min_length=1, max_length=255)
    add_tags: tuple[str, ...] | None = None

    @field_validator("add_tags", mode="before")
    @classmethod
    def _one_tag(cls, value: Any) -> Any:
        return (value,) if isinstance(value, str) else value
    set_field: SetField | None = None
    assign: Assign | None = None
    updates_only: bool | None = None
    route: str | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _one(self) -> Action:
        given = [n for n in type(self).model_fields if getattr(self, n) is not None]
        if len(given) != 1:
            raise ValueError("each action is one of: " + ", ".join(type(self).model_fields))
        return self

    @property
    def kind(self) -> str:
        return next(n for n in type(self).model_fields if getattr(self, n) is not None)


class Rule(_Frozen):
    name: str = Field(min_length=1, max_length=200)
    mailboxes: tuple[str, ...] | None = None
    when: Literal["new_ticket", "update", "any"] = "any"
    match: Condition = Condition()
    actions: tuple[Action, ...] = Field(min_length=1)
    stop: bool = False
    # Where it was written, for reasons and explain: "rules/10-support.yaml:3".
    source: str = ""


class RuleFile(_Frozen):
    rules: tuple[Rule, ...]
