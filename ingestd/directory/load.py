"""Read and validate a directory file, reporting every problem with file, line and key.

Shape problems come from pydantic; clashes between entries (the same email
twice, a domain claimed by two clients) are found on the raw YAML values, so
that one run reports both kinds even when some entries are malformed.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_args, get_origin

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from ingestd.config.load import plain_message, problems_from_validation, read_located
from ingestd.config.yamlfile import KeyPath, LocatedDocument, format_path
from ingestd.directory.document import DirectoryDocument
from ingestd.errors import DirectoryFileError, Problem


def load_directory(path: Path) -> DirectoryDocument:
    """Read and validate ``path``; raise ``DirectoryFileError`` listing every problem."""
    return validate_directory(read_located(path, DirectoryFileError))


def validate_directory(doc: LocatedDocument) -> DirectoryDocument:
    if not isinstance(doc.data, dict):
        raise DirectoryFileError([doc.problem(
            (), "the top level must be a mapping with clients, agents and/or suppliers"
        )])
    clashes = find_clashes(doc)
    try:
        directory = DirectoryDocument.model_validate(doc.data)
    except ValidationError as exc:
        shape = problems_from_validation(doc, exc, _reason)
        raise DirectoryFileError(_in_file_order(shape + clashes)) from exc
    if clashes:
        raise DirectoryFileError(_in_file_order(clashes))
    return directory


def _in_file_order(problems: list[Problem]) -> list[Problem]:
    # So that an admin can fix them top to bottom.
    return sorted(problems, key=lambda p: p.line or 0)


# --- wording of shape problems ---------------------------------------------------


def _reason(path: KeyPath, error: ErrorDetails) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        return f"unknown key (allowed here: {_allowed_keys(path[:-1])})"
    if kind == "missing":
        return "required key is missing"
    if kind == "tuple_type":
        return "must be a list"
    if kind == "model_type":
        return f"must be a mapping with the keys {_allowed_keys(path)}"
    return plain_message(error)


def _allowed_keys(path: KeyPath) -> str:
    model = _model_at(path)
    return ", ".join(model.model_fields) if model is not None else "?"


def _model_at(path: KeyPath) -> type[BaseModel] | None:
    """The document model that validates the mapping at ``path``."""
    model: type[BaseModel] = DirectoryDocument
    for part in path:
        if isinstance(part, int):
            continue
        info = model.model_fields.get(part)
        if info is None:
            return None
        inner = info.annotation
        if get_origin(inner) is tuple:
            inner = get_args(inner)[0]
        if not (isinstance(inner, type) and issubclass(inner, BaseModel)):
            return None
        model = inner
    return model


# --- clashes between entries -------------------------------------------------------


@dataclass(frozen=True)
class Space:
    """A set of values in which each may appear once, and how to explain a repeat."""

    noun: str
    fold_case: bool
    # Set when values belong to an owning entry (clients[i], suppliers[i]).
    owner_kind: str | None = None
    hint: str = ""


CLIENT_NAME = Space("client", False, hint="; list each client once")
SITE_NAME = Space("site", False, hint="; list each site of a client once")
USER_EMAIL = Space("user", True, hint="; a user belongs to one site")
CLIENT_DOMAIN = Space("domain", True, "client", "; a domain belongs to one client")
AGENT_EMAIL = Space("agent", True, hint="; list each agent once")
SUPPLIER_NAME = Space("supplier", False, hint="; list each supplier once")
SUPPLIER_EMAIL = Space("address", True, "supplier", "; an address belongs to one supplier")
SUPPLIER_DOMAIN = Space("domain", True, "supplier", "; a domain belongs to one supplier")


@dataclass(frozen=True)
class Claim:
    path: KeyPath
    owner: str


@dataclass
class Claims:
    """The first claim on each value; every later claim becomes a problem."""

    doc: LocatedDocument
    first: dict[tuple[str, object, str], Claim] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)

    def claim(
        self, space: Space, value: Any, path: KeyPath, owner: str = "", scope: object = None
    ) -> None:
        if not isinstance(value, str):
            return  # validation reports the wrong type
        value = value.strip().lower() if space.fold_case else value.strip()
        first = self.first.setdefault((space.noun, scope, value), Claim(path, owner))
        if first.path != path:
            self.problems.append(self.doc.problem(path, self._clash(space, value, first, path)))

    def _clash(self, space: Space, value: str, first: Claim, path: KeyPath) -> str:
        where = format_path(first.path)
        line = self.doc.line_of(first.path)
        if line is not None:
            where += f", line {line}"
        # path[:2] is the owning entry, e.g. ("clients", 3).
        if space.owner_kind and first.path[:2] != path[:2]:
            clash = f"is already claimed by {space.owner_kind} {first.owner!r} ({where})"
        else:
            clash = f"is listed twice (first at {where})"
        return f"{space.noun} {value!r} {clash}{space.hint}"


def find_clashes(doc: LocatedDocument) -> list[Problem]:
    claims = Claims(doc)
    for i, client in _mappings(doc.data, "clients"):
        _claim_client(claims, i, client)
    for i, agent in _mappings(doc.data, "agents"):
        claims.claim(AGENT_EMAIL, agent.get("email"), ("agents", i, "email"))
    for i, supplier in _mappings(doc.data, "suppliers"):
        _claim_supplier(claims, i, supplier)
    return claims.problems


def _claim_client(claims: Claims, i: int, client: dict[str, Any]) -> None:
    here: KeyPath = ("clients", i)
    claims.claim(CLIENT_NAME, client.get("name"), (*here, "name"))
    owner = _display_name(client, here)
    for j, domain in _listed(client, "domains"):
        claims.claim(CLIENT_DOMAIN, domain, (*here, "domains", j), owner)
    for j, site in _mappings(client, "sites"):
        claims.claim(SITE_NAME, site.get("name"), (*here, "sites", j, "name"), scope=i)
        for k, user in _mappings(site, "users"):
            claims.claim(USER_EMAIL, user.get("email"), (*here, "sites", j, "users", k, "email"))


def _claim_supplier(claims: Claims, i: int, supplier: dict[str, Any]) -> None:
    here: KeyPath = ("suppliers", i)
    claims.claim(SUPPLIER_NAME, supplier.get("name"), (*here, "name"))
    owner = _display_name(supplier, here)
    for j, email in _listed(supplier, "emails"):
        claims.claim(SUPPLIER_EMAIL, email, (*here, "emails", j), owner)
    for j, domain in _listed(supplier, "domains"):
        claims.claim(SUPPLIER_DOMAIN, domain, (*here, "domains", j), owner)


def _display_name(entry: dict[str, Any], path: KeyPath) -> str:
    name = entry.get("name")
    return name.strip() if isinstance(name, str) else format_path(path)


def _listed(mapping: Any, key: str) -> Iterator[tuple[int, Any]]:
    """The items of the list under ``key``; anything else is left to validation."""
    value = mapping.get(key) if isinstance(mapping, dict) else None
    if isinstance(value, list):
        yield from enumerate(value)


def _mappings(mapping: Any, key: str) -> Iterator[tuple[int, dict[str, Any]]]:
    for i, item in _listed(mapping, key):
        if isinstance(item, dict):
            yield i, item
