"""queue: not_before (retry back-off); wider source, source_key and dedupe keys

Revision: 0003
Parent: 0002

On SQLite the batch mode copies inbound_messages (raw bytes included): on a
large database this takes a while and needs free disk space of about the
table's size.
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("inbound_messages") as batch:
        batch.add_column(sa.Column("not_before", sa.DateTime(timezone=True), nullable=True))
        batch.alter_column("source", existing_type=sa.String(length=16),
                           type_=sa.String(length=64), existing_nullable=False)
        batch.alter_column("source_key", existing_type=sa.String(length=255),
                           type_=sa.Text(), existing_nullable=False)
    with op.batch_alter_table("dedupe_keys") as batch:
        batch.alter_column("key", existing_type=sa.String(length=255), type_=sa.Text(),
                           existing_nullable=False)


def downgrade() -> None:
    with op.batch_alter_table("dedupe_keys") as batch:
        batch.alter_column("key", existing_type=sa.Text(), type_=sa.String(length=255),
                           existing_nullable=False)
    with op.batch_alter_table("inbound_messages") as batch:
        batch.alter_column("source_key", existing_type=sa.Text(),
                           type_=sa.String(length=255), existing_nullable=False)
        batch.alter_column("source", existing_type=sa.String(length=64),
                           type_=sa.String(length=16), existing_nullable=False)
        batch.drop_column("not_before")
