"""The one error tree of ingestd.

Every failure the daemon knows about is an ``IngestdError``. The split that
matters to callers is whether trying again later can succeed:

    IngestdError
    ├── CommandFailed             a CLI command ends with this exit code and message
    ├── TemporaryError            retry later; SMTP answers 4xx, `ingest` exits 75
    │   ├── StorageUnavailable    the database is unreachable, locked, full or timed out
    │   ├── StorageConflict       a unique key raced with another writer; retry the unit
    │   ├── LeaseLost             another worker took a message over; this result is void
    │   ├── ListenFailed          the SMTP port cannot be bound (taken, not ours)
    │   ├── SourceUnavailable     a mailbox server is unreachable, slow, failing or throttling
    │   └── DnsUnavailable        a DNS lookup (a DKIM key) timed out or failed for now
    └── PermanentError            retrying the same input cannot succeed
        ├── StorageRejected       the database refused a value of this one message
        ├── ProblemsError         a YAML file is wrong (carries every problem found)
        │   ├── ConfigError       ... the configuration file
        │   └── DirectoryFileError ... a directory import file
        ├── YamlSyntaxError       a YAML file does not parse (one located problem)
        ├── LimitExceeded         a message breaks a processing limit (quarantined)
        ├── SchemaOutdated        the database needs `ingestd db upgrade`
        ├── CredentialsRejected   a mailbox refused our credentials (status needs_reauth)
        ├── CursorLost            a mailbox no longer knows our checkpoint (resync)
        ├── SourceRefused         a mailbox server refused what retrying cannot fix (a folder)
        └── InvalidRequest        a command asked for what the data does not allow
            ├── NotFound          a command named a row that does not exist (or not for you)
            ├── Forbidden         not allowed to the caller (HTTP 403)
            └── AlreadyActed      a My Inbox item was already acted on (HTTP 409)

``StorageError`` is mixed into the three storage errors, for callers that
handle any database failure alike and read ``temporary`` for the exit code.

Database driver errors never travel past ``ingestd/db/``: ``db.errors.storage_error``
turns them into the storage errors above, once. Anything else that escapes a
unit of work is a bug; the unit-of-work boundaries (an SMTP transaction, an
ingest run, a worker's attempt) treat it as temporary so that no mail is
refused permanently because of our own defect.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


def first_line(exc: BaseException) -> str:
    """The first line of an error (a driver's own message when wrapped), without NUL.

    Database errors run to several lines with SQL and parameters; logs,
    replies and stored reasons want the first, and error texts can quote
    message content, so NUL (which PostgreSQL text refuses) is dropped.
    """
    text = str(getattr(exc, "orig", None) or exc).replace("\x00", "").strip().splitlines()
    return text[0] if text else type(exc).__name__


class IngestdError(Exception):
    """Base of every error ingestd raises on purpose."""

    temporary: bool = False


class TemporaryError(IngestdError):
    """The same input may succeed later (database busy or down, disk full)."""

    temporary = True


class StorageError(IngestdError):
    """Any failure of the database; ``temporary`` tells whether trying again may help."""


class StorageUnavailable(StorageError, TemporaryError):
    """The database did not accept a write; nothing from that write is stored."""


class StorageConflict(StorageError, TemporaryError):
    """A unique key was taken by a concurrent writer; the whole unit may be retried."""


class LeaseLost(TemporaryError):
    """Another worker took the message over; this worker's result is discarded."""


class ListenFailed(TemporaryError):
    """The SMTP listening socket cannot be bound (address in use, port not ours)."""


class SourceUnavailable(TemporaryError):
    """A mailbox server did not answer, failed, or asked us to slow down.

    ``retry_after``: the seconds the server asked for (Retry-After), if it did.
    """

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        self.retry_after = retry_after
        super().__init__(message)


class DnsUnavailable(TemporaryError):
    """A DNS lookup (a DKIM key) timed out or no server answered: the answer may come later."""


class PermanentError(IngestdError):
    """Retrying the same input cannot succeed."""


class StorageRejected(StorageError, PermanentError):
    """The database refused a value of one message (too long, not encodable)."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong in a YAML file, with where it is."""

    file: str
    line: int | None
    path: str
    reason: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        key = f" {self.path}:" if self.path else ""
        return f"{where}:{key} {self.reason}"


class CertificateUnusable(PermanentError):
    """The STARTTLS certificate or key is missing, unreadable, malformed, encrypted or
    the two do not match."""


class ProblemsError(PermanentError):
    """A file with one or more problems; ``problems`` lists them all."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class ConfigError(ProblemsError):
    """The configuration file is invalid."""


class DirectoryFileError(ProblemsError):
    """A directory import file is invalid; nothing from it was imported."""


class LimitExceeded(PermanentError):
    """A message breaks a processing limit; ``which`` names it (parts, depth, ...)."""

    def __init__(self, which: str) -> None:
        self.which = which
        super().__init__(f"limit: {which}")


class SchemaOutdated(PermanentError):
    """The database schema is older than this version of ingestd."""


class CredentialsRejected(PermanentError):
    """A mailbox refused the password, token or grant: a person must renew it.

    Permanent for this credential only: the mailbox is polled again and
    recovers by itself once the credential works.
    """


class CursorLost(PermanentError):
    """The mailbox no longer honours the stored checkpoint (UIDVALIDITY changed,
    an expired history id or delta token): list recent mail again instead."""


class SourceRefused(PermanentError):
    """The mailbox server refused something a retry cannot fix: a configured
    folder that does not exist, a CA file that cannot be read."""


class InvalidRequest(PermanentError):
    """A command asked for something the data does not allow (the CLI exits 65)."""


class NotFound(InvalidRequest):
    """A command named a row that does not exist (or one the caller may not see)."""


class Forbidden(InvalidRequest):
    """The caller may see the row but not do this to it (a non-administrator's delete)."""


class RawPurged(InvalidRequest):
    """The message's raw bytes were purged by retention (``messages purge``); the HTTP
    API answers 410."""


class AlreadyActed(InvalidRequest):
    """A My Inbox item was already attached, converted, noted or deleted.

    ``current`` is the item's record as it is now (the HTTP API answers 409 with it).
    """

    def __init__(self, message: str, current: dict[str, Any]) -> None:
        self.current = current
        super().__init__(message)


class YamlSyntaxError(PermanentError):
    """A YAML file is not valid YAML; ``problem`` says where."""

    def __init__(self, problem: Problem) -> None:
        self.problem = problem
        super().__init__(str(problem))


class CommandFailed(IngestdError):
    """Stop a CLI command with an exit code and a message for stderr."""

    def __init__(self, code: int, message: str) -> None:
        self.code = code
        super().__init__(message)
