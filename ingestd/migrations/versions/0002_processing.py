"""processing: last_error and skip_dedupe on inbound_messages; dedupe_keys

Revision: 0002
Parent: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("inbound_messages") as batch:
        batch.add_column(sa.Column("last_error", sa.Text(), nullable=True))
        batch.add_column(
            sa.Column("skip_dedupe", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    op.create_table(
        "dedupe_keys",
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("inbound_message_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["inbound_message_id"], ["inbound_messages.id"]),
        sa.PrimaryKeyConstraint("key"),
    )


def downgrade() -> None:
    op.drop_table("dedupe_keys")
    with op.batch_alter_table("inbound_messages") as batch:
        batch.drop_column("skip_dedupe")
        batch.drop_column("last_error")
