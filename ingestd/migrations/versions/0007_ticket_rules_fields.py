"""tickets: priority, category, team, tags, custom fields and VIP, set by rules

Revision: 0007
Parent: 0006

Only columns are added (SQLite does that in place, without copying a table).
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("tickets") as batch:
        batch.add_column(sa.Column("priority", sa.String(length=32), nullable=True))
        batch.add_column(sa.Column("category", sa.String(length=255), nullable=True))
        batch.add_column(sa.Column("team", sa.String(length=255), nullable=True))
        batch.add_column(sa.Column("tags", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("fields", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("vip", sa.Boolean(), nullable=False,
                                   server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("tickets") as batch:
        for name in ("vip", "fields", "tags", "team", "category", "priority"):
            batch.drop_column(name)
