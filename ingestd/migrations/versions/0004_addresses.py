"""actions: cc and reply-to addresses; attachments: Content-ID and inline

Revision: 0004
Parent: 0003

Only columns are added (SQLite does that in place, without copying a table).
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("actions") as batch:
        batch.add_column(sa.Column("cc_address", sa.Text(), nullable=True))
        batch.add_column(sa.Column("reply_to_address", sa.Text(), nullable=True))
    with op.batch_alter_table("attachments") as batch:
        batch.add_column(sa.Column("content_id", sa.String(length=255), nullable=True))
        batch.add_column(sa.Column("inline", sa.Boolean(), nullable=False,
                                   server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("attachments") as batch:
        batch.drop_column("inline")
        batch.drop_column("content_id")
    with op.batch_alter_table("actions") as batch:
        batch.drop_column("reply_to_address")
        batch.drop_column("cc_address")
