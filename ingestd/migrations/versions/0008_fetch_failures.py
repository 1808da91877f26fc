"""mailbox_checkpoints: failed fetches per message, so one unfetchable message cannot
hold up its folder for ever

Revision: 0008
Parent: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("mailbox_checkpoints") as batch:
        batch.add_column(sa.Column("fetch_failures", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("mailbox_checkpoints") as batch:
        batch.drop_column("fetch_failures")
