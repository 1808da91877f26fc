"""Column shapes the tables share."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlmodel import Field


def timestamp(nullable: bool = False, index: bool = False) -> Any:
    """A timezone-aware timestamp column (None until set)."""
    return Field(
        default=None,
        sa_column=sa.Column(sa.DateTime(timezone=True), nullable=nullable, index=index),
    )
