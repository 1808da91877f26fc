"""actions: delivery failures (bounces) and the sender authentication verdict

Revision: 0010
Parent: 0009
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("actions") as batch:
        batch.add_column(sa.Column("failed_recipient", sa.Text(), nullable=True))
        batch.add_column(sa.Column("delivery_status", sa.String(32), nullable=True))
        batch.add_column(sa.Column("hard_bounce", sa.Boolean(), nullable=True))
        batch.add_column(sa.Column("sender_verified", sa.Boolean(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("actions") as batch:
        batch.drop_column("sender_verified")
        batch.drop_column("hard_bounce")
        batch.drop_column("delivery_status")
        batch.drop_column("failed_recipient")
