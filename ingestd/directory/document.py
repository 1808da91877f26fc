"""The shape of a directory file, as ``directory import`` reads it and ``export`` writes it.

Like the settings, every model forbids unknown keys (a misspelt ``emial``
must not silently import a user without an address) and is frozen. Lengths
match the database columns so that PostgreSQL, which enforces them, and
SQLite, which does not, accept exactly the same files.
"""

from __future__ import annotations

from typing import Annotated, Any, TypeVar

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

T = TypeVar("T")


def _email(value: str) -> str:
    if value.count("@") != 1:
        raise ValueError(f"{value!r} is not an email address (it needs exactly one @)")
    if any(ch.isspace() for ch in value):
        raise ValueError(f"{value!r} is not an email address (it contains white space)")
    local, _, domain = value.partition("@")
    if not local or not domain:
        raise ValueError(f"{value!r} is not an email address (nothing before or after the @)")
    return value.lower()


def _domain(value: str) -> str:
    if "@" in value:
        raise ValueError(f"{value!r} is not a domain; give only the part after the @")
    if any(ch.isspace() for ch in value):
        raise ValueError(f"{value!r} is not a domain (it contains white space)")
    return value.lower()


def _none_is_empty(value: Any) -> Any:
    # `users:` with nothing under it is YAML null; an admin means "no users".
    return () if value is None else value


Name = Annotated[str, Field(min_length=1, max_length=255)]
Email = Annotated[str, Field(max_length=320), AfterValidator(_email)]
Domain = Annotated[str, Field(min_length=1, max_length=255), AfterValidator(_domain)]
Items = Annotated[tuple[T, ...], BeforeValidator(_none_is_empty)]


class Entry(BaseModel):
    # Stripping makes "Acme " and "Acme" the same client, as a reader would expect.
    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)


class UserEntry(Entry):
    name: Name
    email: Email
    vip: bool = False


class SiteEntry(Entry):
    name: Name
    users: Items[UserEntry] = ()


class ClientEntry(Entry):
    name: Name
    domains: Items[Domain] = ()
    vip: bool = False
    sites: Items[SiteEntry] = ()


class AgentEntry(Entry):
    name: Name
    email: Email
    team: Name | None = None
    admin: bool = False
    active: bool = True


class SupplierEntry(Entry):
    name: Name
    emails: Items[Email] = ()
    domains: Items[Domain] = ()


class DirectoryDocument(Entry):
    clients: Items[ClientEntry] = ()
    agents: Items[AgentEntry] = ()
    suppliers: Items[SupplierEntry] = ()
