"""Pulled mailboxes: their state and lease, and a checkpoint per folder

Revision: 0006
Parent: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def _ts(name: str, nullable: bool = True) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "mailbox_states",
        sa.Column("mailbox", sa.String(length=255), primary_key=True),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("held_by", sa.String(length=255), nullable=True),
        _ts("held_until"),
        _ts("last_poll_at"),
        _ts("last_success_at"),
        sa.Column("last_error", sa.Text(), nullable=True),
        _ts("last_error_at"),
        sa.Column("imported", sa.Integer(), nullable=False, server_default="0"),
    )
    op.create_table(
        "mailbox_checkpoints",
        sa.Column("mailbox", sa.String(length=255), primary_key=True),
        sa.Column("folder", sa.String(length=512), primary_key=True),
        sa.Column("cursor", sa.Text(), nullable=False),
        _ts("since", nullable=False),
        _ts("updated_at", nullable=False),
        _ts("checked_at", nullable=False),
    )


def downgrade() -> None:
    op.drop_table("mailbox_checkpoints")
    op.drop_table("mailbox_states")
