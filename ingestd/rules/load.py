"""Load ``rules_dir/*.yaml`` in file-name order; refuse them with every problem located.

Rules are validated with the configuration (``ingestd check``, start-up):
unknown keys, bad regexes, unknown mailboxes, a rule name used twice — each a
problem with file, line and key. Teams and agents live in the database,
which may still be empty, so they are not checked here.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from ingestd.config.yamlfile import KeyPath, LocatedDocument
from ingestd.errors import ConfigError, Problem
from ingestd.rules.model import Rule


def load_rules(directory: Path, mailboxes: Iterable[str]) -> tuple[Rule, ...]:
    """Every rule of ``directory``'s ``*.yaml`` files, in order; ``ConfigError`` if any is wrong."""
    from ingestd.config.load import read_located  # config.load imports this module

    known = set(mailboxes)
    if not directory.is_dir():
        raise ConfigError([Problem(str(directory), None, "rules_dir",
                                   "is not a directory (the rule files go there)")])
    rules: list[Rule] = []
    problems: list[Problem] = []
    seen: dict[str, str] = {}
    for path in sorted(directory.glob("*.yaml")):
        doc = read_located(path, ConfigError)
        if not doc.data:
            continue  # an empty file (or only comments): no rules
        if not isinstance(doc.data, list):
            problems.append(doc.problem((), "a rule file is a list of rules (- name: ...)"))
            continue
        for i, data in enumerate(doc.data):
            rule, found = _rule(doc, i, data, known)
            problems.extend(found)
            if rule is None:
                continue
            if rule.name in seen:
                problems.append(doc.problem((i, "name"), f"rule name {rule.name!r} is already "
                                            f"used at {seen[rule.name]}"))
                continue
            seen[rule.name] = rule.source
            rules.append(rule)
    if problems:
        raise ConfigError(problems)
    return tuple(rules)


def _rule(doc: LocatedDocument, index: int, data: Any, known: set[str]
          ) -> tuple[Rule | None, list[Problem]]:
    where = f"{doc.file}:{doc.line_of((index,)) or 1}"
    if not isinstance(data, dict):
        return None, [doc.problem((index,), "a rule is a mapping (name, match, actions ...)")]
    if "source" in data:
        return None, [doc.problem((index, "source"), "unknown key (see README 'Rules')")]
    try:
        rule = Rule.model_validate({**data, "source": where})
    except ValidationError as exc:
        return None, [doc.problem((index, *_path(e)), _reason(e))
                      for e in exc.errors(include_url=False)]
    problems = []
    for j, name in enumerate(rule.mailboxes or ()):
        if name not in known:
            problems.append(doc.problem((index, "mailboxes", j), f"no mailbox named {name!r}"))
    for j, action in enumerate(rule.actions):
        if action.route is not None and action.route not in known:
            problems.append(doc.problem((index, "actions", j, "route"),
                                        f"no mailbox named {action.route!r} to route to"))
    return (None if problems else rule), problems


def _path(error: ErrorDetails) -> KeyPath:
    return tuple(p for p in error["loc"] if isinstance(p, str | int))


def _reason(error: ErrorDetails) -> str:
    if error["type"] == "extra_forbidden":
        return "unknown key (see README 'Rules')"
    if error["type"] == "missing":
        return "required key is missing"
    message = error["msg"]
    return message.removeprefix("Value error, ")
