"""A page of a listing: the records shown, and how many rows the filter matched."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa


@dataclass(frozen=True)
class Page:
    """``records`` (at most the limit asked for) of ``total`` rows matching the filter."""

    records: list[dict[str, Any]]
    total: int

    @property
    def truncated(self) -> bool:
        """The listing stopped at its limit: more rows matched than it holds."""
        return self.total > len(self.records)


def count_where(conn: sa.Connection, table: sa.Table, *conditions: sa.ColumnElement[bool]) -> int:
    """How many rows of ``table`` satisfy every condition."""
    query = sa.select(sa.func.count()).select_from(table).where(*conditions)
    return int(conn.execute(query).scalar_one())
