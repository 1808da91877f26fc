"""Find, read and validate the configuration file."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from ingestd.config.settings import IngestdSettings, Mailbox
from ingestd.config.yamlfile import KeyPath, LocatedDocument, load_located
from ingestd.errors import ConfigError, Problem, ProblemsError, YamlSyntaxError

# Words a validation error is reported in; each file kind speaks its own vocabulary.
ReasonFor = Callable[[KeyPath, ErrorDetails], str]

DEFAULT_CONFIG = Path("config/ingestd.yaml")
CONFIG_ENV = "INGESTD_CONFIG"


def config_path(explicit: str | os.PathLike[str] | None) -> Path:
    """``--config PATH``, else ``$INGESTD_CONFIG``, else ``config/ingestd.yaml``."""
    if explicit:
        return Path(explicit)
    env = os.environ.get(CONFIG_ENV)
    if env:
        return Path(env)
    return DEFAULT_CONFIG


def load_settings(path: Path) -> IngestdSettings:
    """Load and validate ``path``; raise ``ConfigError`` listing every problem."""
    return validate_document(read_located(path, ConfigError))


def read_located(path: Path, error: type[ProblemsError]) -> LocatedDocument:
    """Read ``path`` as located YAML; raise ``error`` with one problem if that fails."""
    try:
        return load_located(path)
    except FileNotFoundError as exc:
        raise error([Problem(str(path), None, "", "file not found")]) from exc
    except OSError as exc:
        raise error([Problem(str(path), None, "", f"cannot read: {exc.strerror}")]) from exc
    except UnicodeDecodeError as exc:
        raise error([Problem(str(path), None, "", "not UTF-8 text")]) from exc
    except YamlSyntaxError as exc:
        raise error([exc.problem]) from exc


def validate_document(doc: LocatedDocument) -> IngestdSettings:
    """Settings from ``doc``, or ``ConfigError`` with every problem, in file order.

    The rules across mailboxes look at the file's values, so their problems
    are reported together with those of single settings, not only once those
    are fixed.
    """
    if not isinstance(doc.data, dict):
        raise ConfigError([doc.problem((), "the top level must be a mapping of settings")])
    across = _cross_checks(doc, doc.data)
    if "rules" in doc.data:
        across.append(doc.problem(("rules",), "rules live in the files of rules_dir, "
                                              "not in this file"))
    try:
        # Relative secret files are relative to the configuration file.
        settings = IngestdSettings.model_validate(
            doc.data, context={"config_dir": Path(doc.file).resolve().parent})
    except ValidationError as exc:
        single = problems_from_validation(doc, exc, _setting_reason)
        if _NO_MAILBOX in (p.reason for p in across):
            # `mailboxes:` with no value: one clear reason, not also "not a valid tuple".
            single = [p for p in single if p.path != "mailboxes"]
        raise ConfigError(_in_file_order([*single, *across])) from exc
    if across:
        raise ConfigError(_in_file_order(across))
    if settings.rules_dir is not None:
        from ingestd.rules.load import load_rules

        rules = load_rules(settings.rules_dir, (m.name for m in settings.mailboxes))
        settings = settings.model_copy(update={"rules": rules})
    return settings


def _in_file_order(problems: list[Problem]) -> list[Problem]:
    """Sorted by line, then key; problems at the same place keep their order."""
    return sorted(problems, key=lambda p: (p.line or 0, p.path))


def problems_from_validation(
    doc: LocatedDocument, exc: ValidationError, reason_for: ReasonFor
) -> list[Problem]:
    """One located problem per pydantic error, worded by ``reason_for``."""
    problems = []
    for error in exc.errors(include_url=False):
        path: KeyPath = tuple(p for p in error["loc"] if isinstance(p, str | int))
        problems.append(doc.problem(path, reason_for(path, error)))
    return problems


def plain_message(error: ErrorDetails) -> str:
    """pydantic's message, without the prefix it puts on our validators' own words."""
    message = error["msg"]
    if message.startswith("Value error, "):
        message = message[len("Value error, "):]
    return message


def _setting_reason(_path: KeyPath, error: ErrorDetails) -> str:
    if error["type"] == "extra_forbidden":
        return "unknown setting (check the spelling; see README 'Configuration')"
    if error["type"] == "missing":
        return "required setting is missing"
    return plain_message(error)


_NO_MAILBOX = "no mailbox configured; every recipient would be refused"


def _cross_checks(doc: LocatedDocument, data: dict[Any, Any]) -> list[Problem]:
    """Rules that span several mailboxes, on the file's values.

    They run whether or not the rest validates; values that are not a mailbox,
    a name or an address (reported by validation) are skipped here.
    """
    mailboxes = data.get("mailboxes")
    if mailboxes is None or mailboxes == []:
        return [doc.problem(("mailboxes",), _NO_MAILBOX)]
    if not isinstance(mailboxes, list):
        return []
    problems = []
    names: dict[str, int] = {}
    owners: dict[str, str] = {}
    for i, mailbox in enumerate(mailboxes):
        if not isinstance(mailbox, dict):
            continue
        name = mailbox.get("name")
        if isinstance(name, str):
            if name in names:
                problems.append(doc.problem(
                    ("mailboxes", i, "name"),
                    f"mailbox name {name!r} is already used by mailboxes[{names[name]}]",
                ))
            names.setdefault(name, i)
        owner = f"mailbox {name!r}" if isinstance(name, str) else f"mailboxes[{i}]"
        addresses = mailbox.get("addresses")
        for j, value in enumerate(addresses if isinstance(addresses, list) else []):
            address = _address(value)
            if address is None:
                continue
            if "+" in address.partition("@")[0]:
                problems.append(doc.problem(
                    ("mailboxes", i, "addresses", j),
                    f"{address!r}: list the base address; +detail forms are accepted automatically",
                ))
            if address in owners and owners[address] != owner:
                problems.append(doc.problem(
                    ("mailboxes", i, "addresses", j),
                    f"{address} is already claimed by {owners[address]}; "
                    "an address can belong to one mailbox only",
                ))
            owners.setdefault(address, owner)
    return problems


def _address(value: object) -> str | None:
    """``value`` as a mailbox stores it (normalised), or None if a mailbox refuses it."""
    try:
        return Mailbox.model_validate({"name": "x", "addresses": [value]}).addresses[0]
    except ValidationError:
        return None
