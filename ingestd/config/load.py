"""Find, read and validate the configuration file."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from ingestd.config.settings import IngestdSettings
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
    if not isinstance(doc.data, dict):
        raise ConfigError([doc.problem((), "the top level must be a mapping of settings")])
    try:
        settings = IngestdSettings.model_validate(doc.data)
    except ValidationError as exc:
        raise ConfigError(problems_from_validation(doc, exc, _setting_reason)) from exc
    problems = _cross_checks(doc, settings)
    if problems:
        raise ConfigError(problems)
    return settings


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


def _cross_checks(doc: LocatedDocument, settings: IngestdSettings) -> list[Problem]:
    """Rules that span several mailboxes."""
    problems = []
    names: dict[str, int] = {}
    owners: dict[str, str] = {}
    for i, mailbox in enumerate(settings.mailboxes):
        if mailbox.name in names:
            problems.append(doc.problem(
                ("mailboxes", i, "name"),
                f"mailbox name {mailbox.name!r} is already used by "
                f"mailboxes[{names[mailbox.name]}]",
            ))
        names.setdefault(mailbox.name, i)
        for j, address in enumerate(mailbox.addresses):
            if "+" in address.partition("@")[0]:
                problems.append(doc.problem(
                    ("mailboxes", i, "addresses", j),
                    f"{address!r}: list the base address; +detail forms are accepted automatically",
                ))
            if address in owners and owners[address] != mailbox.name:
                problems.append(doc.problem(
                    ("mailboxes", i, "addresses", j),
                    f"{address} is already claimed by mailbox {owners[address]!r}; "
                    "an address can belong to one mailbox only",
                ))
            owners.setdefault(address, mailbox.name)
    return problems
