"""The one place where database driver errors become ingestd errors.

Callers outside ``ingestd/db/`` never see SQLAlchemy, sqlite3 or psycopg
exceptions: they see ``StorageUnavailable`` (try again later: locked, down,
full, timed out), ``StorageConflict`` (a unique key raced with another writer:
retry the unit of work) or ``StorageRejected`` (this one message's values were
refused: retrying it alone will not help). The distinction drives intake's
replies (a rejected value costs one sender a 451; an unavailable database
costs every waiting sender one at once, without retrying each message alone)
and the workers' retries.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa

from ingestd.errors import (
    IngestdError,
    StorageConflict,
    StorageRejected,
    StorageUnavailable,
    first_line,
)


def storage_error(exc: BaseException, doing: str = "database") -> IngestdError:
    """The ingestd error for a driver (or value) error raised while ``doing``."""
    if isinstance(exc, IngestdError):
        return exc
    text = f"{doing}: {first_line(exc)}"
    if isinstance(exc, sa.exc.IntegrityError):
        return StorageConflict(text)
    # DataError: a value out of range or too long; ValueError and kin: a driver
    # refusing to encode a value (NUL in PostgreSQL text, lone surrogates).
    if isinstance(exc, sa.exc.DataError | ValueError):
        return StorageRejected(text)
    if isinstance(exc, sa.exc.StatementError) and not isinstance(exc, sa.exc.DBAPIError):
        # Raised before the driver saw the statement: a value that could not be
        # bound (JSON that does not serialise, a type the column refuses).
        return StorageRejected(text)
    return StorageUnavailable(text)


def is_storage_failure(exc: BaseException) -> bool:
    """True for the errors ``storage_error`` translates (drivers, refused values)."""
    return isinstance(exc, sa.exc.SQLAlchemyError | ValueError)


@contextmanager
def translated(doing: str = "database") -> Iterator[None]:
    """Run a block, re-raising driver errors as ingestd storage errors."""
    try:
        yield
    except IngestdError:
        raise
    except (sa.exc.SQLAlchemyError, ValueError) as exc:
        raise storage_error(exc, doing) from exc
